"""The graph half of the IR: frozen tensor types, nodes and graphs.

Grammar (checked by :func:`ir.verify.verify`)::

    Graph  := nodes (topologically ordered), inputs (names of "input" nodes), outputs (node names), params
    Node   := name, op, inputs (names of earlier nodes), attrs (sorted (key, value) pairs), type
    Type   := shape (tuple of ints), dtype (numpy dtype name)

Every op but ``input`` and ``constant`` has an :class:`ir.registry.OpDef` that gives its type rule and its
mathematical instruction. The data of ``constant`` nodes lives in ``Graph.params`` (numpy arrays are not
hashable, so they are kept out of equality and of :meth:`Graph.structural_hash`, which names an architecture).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

INPUT = "input"
CONSTANT = "constant"


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


def _freeze(value: Any) -> Any:
    """Attribute values must be hashable: lists become tuples, numpy scalars become Python scalars."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else tuple(_freeze(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        raise TypeError("dict attributes are not supported; flatten them into separate keys")
    return value


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    type: TensorType
    attrs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        attrs = self.attrs.items() if isinstance(self.attrs, Mapping) else self.attrs
        object.__setattr__(self, "attrs", tuple(sorted((str(k), _freeze(v)) for k, v in attrs)))

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def with_(self, **changes: Any) -> "Node":
        return replace(self, **changes)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, hash=False)
    name: str = field(default="graph", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        frozen = {}
        for k, v in dict(self.params).items():
            arr = np.asarray(v)
            if arr.flags.writeable:
                arr = arr.copy()
                arr.flags.writeable = False
            frozen[k] = arr
        object.__setattr__(self, "params", MappingProxyType(frozen))

    # ---- lookups -------------------------------------------------------------------------------------
    @property
    def node_map(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"graph {self.name!r} has no node {name!r}")

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users.setdefault(i, []).append(n)
        return users

    @property
    def compute_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op not in (INPUT, CONSTANT))

    def input_types(self) -> list[TensorType]:
        m = self.node_map
        return [m[i].type for i in self.inputs]

    def output_types(self) -> list[TensorType]:
        m = self.node_map
        return [m[o].type for o in self.outputs]

    def with_nodes(self, nodes: Iterable[Node], params: Mapping[str, np.ndarray] | None = None,
                   outputs: Iterable[str] | None = None) -> "Graph":
        """A new graph with these nodes; params of constants no longer present are dropped."""
        nodes = tuple(nodes)
        source = dict(self.params if params is None else params)
        names = {n.name for n in nodes if n.op == CONSTANT}
        return Graph(nodes, self.inputs, tuple(self.outputs if outputs is None else outputs),
                     {k: v for k, v in source.items() if k in names}, self.name)

    # ---- identity ------------------------------------------------------------------------------------
    def structural_key(self) -> str:
        """Canonical text of the graph's structure, names replaced by positions (weights excluded)."""
        index = {n.name: i for i, n in enumerate(self.nodes)}
        rows = [[n.op, [index.get(i, i) for i in n.inputs], list(n.type.shape), n.type.dtype,
                 [[k, repr(v)] for k, v in n.attrs]] for n in self.nodes]
        return json.dumps({"nodes": rows, "inputs": [index[i] for i in self.inputs],
                           "outputs": [index[o] for o in self.outputs]}, separators=(",", ":"))

    def structural_hash(self) -> str:
        """A short name of the architecture: equal for graphs that differ only in node names or weights."""
        return hashlib.sha256(self.structural_key().encode()).hexdigest()[:16]

    def weights_hash(self) -> str:
        h = hashlib.sha256()
        for n in self.nodes:
            if n.op == CONSTANT:
                h.update(np.ascontiguousarray(self.params[n.name]).tobytes())
        return h.hexdigest()[:16]

    def __str__(self) -> str:
        lines = [f"graph {self.name}({', '.join(self.inputs)}) -> ({', '.join(self.outputs)})"]
        for n in self.nodes:
            attrs = ", ".join(f"{k}={v}" for k, v in n.attrs)
            lines.append(f"  %{n.name}: {n.type} = {n.op}({', '.join('%' + i for i in n.inputs)})"
                         + (f" {{{attrs}}}" if attrs else ""))
        return "\n".join(lines)


class GraphBuilder:
    """Builds a graph node by node, inferring each node's type from the op table.

    >>> b = GraphBuilder("mlp"); x = b.input("x", (1, 8))
    >>> y = b.op("relu", x); g = b.build([y])
    """

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self._nodes: list[Node] = []
        self._inputs: list[str] = []
        self._params: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    def _fresh(self, base: str) -> str:
        base = base or "v"
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def type_of(self, name: str) -> TensorType:
        for n in reversed(self._nodes):
            if n.name == name:
                return n.type
        raise KeyError(name)

    def input(self, name: str, shape: Iterable[int], dtype: str = "float32") -> str:
        name = self._fresh(name)
        self._nodes.append(Node(name, INPUT, (), TensorType(tuple(shape), dtype)))
        self._inputs.append(name)
        return name

    def constant(self, value: Any, name: str = "const", dtype: str | None = None) -> str:
        arr = np.asarray(value, dtype=dtype) if dtype else np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        name = self._fresh(name)
        self._nodes.append(Node(name, CONSTANT, (), TensorType(arr.shape, arr.dtype.name)))
        self._params[name] = arr
        return name

    def op(self, op: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:
        from ir.registry import get_op

        opdef = get_op(op)
        frozen = Node("_", op, inputs, TensorType(()), attrs).attrs
        in_types = tuple(self.type_of(i) for i in inputs)
        out_type = opdef.infer(dict(frozen), in_types)
        node_name = self._fresh(name or op)
        self._nodes.append(Node(node_name, op, tuple(inputs), out_type, frozen))
        return node_name

    def build(self, outputs: Iterable[str]) -> Graph:
        return Graph(tuple(self._nodes), tuple(self._inputs), tuple(outputs), dict(self._params), self.name)
