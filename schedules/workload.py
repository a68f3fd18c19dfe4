"""A workload: one kernel to tune, as plain data that any process can rebuild.

A workload is a fused group's sub-graph — its nodes, with the group's inputs turned into leaf nodes: ``input``, or
``constant`` for weights (without values: lowering needs none, but whether a weight is a compile-time constant
matters, since only constants can be re-laid out ahead of time) — serialized as canonical JSON, plus the target.
Its key hashes exactly the things that decide the kernel (each node's op, attributes, shapes and dtype, which
inputs are constants, and the target), so the same conv in another model, or in another candidate architecture,
has the same key and is never measured twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

from ir.graph import CONSTANT, INPUT, Graph, GraphBuilder, Node, TensorType
from schedules.fusion import kernel_graph, kernel_groups
from schedules.lowering import Group


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _subgraph_json(group: Group, input_types: Sequence[TensorType], constants: Sequence[bool]) -> str:
    """Canonical JSON of a group: inputs renamed ``in{k}``, nodes ``n{k}`` (names never affect the key)."""
    names = {name: f"in{k}" for k, name in enumerate(group.inputs)}
    rows = [{"name": f"in{k}", "op": CONSTANT if c else INPUT, "inputs": [], "shape": list(t.shape),
             "dtype": t.dtype, "attrs": []} for k, (t, c) in enumerate(zip(input_types, constants))]
    for k, node in enumerate(group.nodes):
        names[node.name] = f"n{k}"
    for k, node in enumerate(group.nodes):
        rows.append({"name": f"n{k}", "op": node.op, "inputs": [names[i] for i in node.inputs],
                     "shape": list(node.type.shape), "dtype": node.type.dtype,
                     "attrs": [[key, _jsonable(v)] for key, v in node.attrs]})
    return json.dumps({"nodes": rows, "output": names[group.output]}, sort_keys=True, separators=(",", ":"))


def target_key(target: Any = None) -> str:
    """Canonical text of a target (default: this CPU); part of every workload key."""
    from schedules.tvm_env import make_target

    return str(make_target(target))


@dataclass(frozen=True)
class Workload:
    """One kernel to tune: ``graph_json`` (see the module docstring) and ``target`` (canonical target text)."""

    graph_json: str
    target: str

    @cached_property
    def key(self) -> str:
        return hashlib.sha256((self.graph_json + "\n" + self.target).encode()).hexdigest()[:24]

    @cached_property
    def _data(self) -> dict:
        return json.loads(self.graph_json)

    @cached_property
    def graph(self) -> Graph:
        nodes = []
        for row in self._data["nodes"]:
            nodes.append(Node(row["name"], row["op"], tuple(row["inputs"]),
                              TensorType(tuple(row["shape"]), row["dtype"]), tuple((k, v) for k, v in row["attrs"])))
        inputs = tuple(n.name for n in nodes if n.op == INPUT)
        return Graph(tuple(nodes), inputs, (self._data["output"],), {}, self.name)  # constants carry no values

    @cached_property
    def group(self) -> Group:
        g = self.graph
        leaves = tuple(n.name for n in g.nodes if n.op in (INPUT, CONSTANT))
        return Group(g.compute_nodes, leaves, g.outputs[0])

    @property
    def name(self) -> str:
        ops = [r["op"] for r in self._data["nodes"] if r["op"] not in (INPUT, CONSTANT)]
        first = next(r for r in self._data["nodes"] if r["op"] not in (INPUT, CONSTANT))
        shapes = ",".join("x".join(map(str, r["shape"])) for r in self._data["nodes"]
                          if r["name"] in first["inputs"])
        return f"{'_'.join(ops)}[{shapes}]"

    @property
    def anchor(self) -> Node:
        return self.group.nodes[0]

    @cached_property
    def flops(self) -> int:
        from ir.analysis import node_cost

        g = self.graph
        return int(sum(node_cost(g, n).flops for n in g.compute_nodes))

    def input_types(self) -> list[TensorType]:
        """Types of the kernel's arguments before the output: the group's inputs, constants included."""
        nodes = self.graph.node_map
        return [nodes[n].type for n in self.group.inputs]

    def constant_inputs(self) -> tuple[int, ...]:
        nodes = self.graph.node_map
        return tuple(k for k, n in enumerate(self.group.inputs) if nodes[n].op == CONSTANT)

    def output_type(self) -> TensorType:
        return self.graph.output_types()[0]

    def lower(self):
        """(PrimFunc, MainHint | None), exactly as the whole-model compile lowers this group."""
        from schedules.lowering import lower_group

        return lower_group(self.graph, self.group)

    # ---- plain data ----------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"graph": self.graph_json, "target": self.target})

    @staticmethod
    def from_json(text: str) -> "Workload":
        d = json.loads(text)
        return Workload(d["graph"], d["target"])

    def __reduce__(self):  # pickles as its two strings (cached properties are rebuilt on the other side)
        return (Workload, (self.graph_json, self.target))


def workload_from_group(group: Group, input_types: Sequence[TensorType], target: Any = None,
                        constants: Sequence[bool] | None = None) -> Workload:
    tkey = target if isinstance(target, str) and target.startswith("{") else target_key(target)
    flags = list(constants) if constants is not None else [False] * len(input_types)
    return Workload(_subgraph_json(group, input_types, flags), tkey)


def workloads_from_graph(graph: Graph, target: Any = None, layout: str | None = None,
                         chains: bool | None = None) -> list[tuple[Group, Workload]]:
    """Every kernel of ``graph`` (as :func:`nacos.compiler.compile` partitions it, after the same layout
    selection: :func:`schedules.fusion.kernel_graph`; ``chains`` as there) with its workload."""
    graph = kernel_graph(graph, layout)
    nodes = graph.node_map
    tkey = target if isinstance(target, str) and target.startswith("{") else target_key(target)
    return [(g, workload_from_group(g, [nodes[i].type for i in g.inputs], tkey,
                                    [nodes[i].op == CONSTANT for i in g.inputs])) for g in kernel_groups(graph, chains)]


def unique_workloads(graph: Graph, target: Any = None, layout: str | None = None) -> list[tuple[Workload, int]]:
    """Distinct workloads of ``graph`` with how many kernels of the graph share each (first-seen order)."""
    counts: dict[str, list] = {}
    for _, w in workloads_from_graph(graph, target, layout):
        counts.setdefault(w.key, [w, 0])[1] += 1
    return [(w, n) for w, n in counts.values()]


def workload_from_op(op: str, input_shapes: Iterable[Sequence[int]], attrs: dict | None = None,
                     epilogue: Sequence[str] = (), dtype: str = "float32", target: Any = None,
                     constant_weights: bool = True) -> Workload:
    """The workload of a one-op graph (plus optional unary epilogues such as ``("relu",)``): kernel suites.

    With ``constant_weights`` the op's weight inputs (``OpDef.weight_inputs``: conv/dense W and B) are constants,
    as in a deployed model. ``>>> workload_from_op("conv", [(1, 32, 32, 32), (64, 32, 3, 3)], {"pads": (1,)*4})``
    """
    import numpy as np

    from ir.registry import get_op

    weights = set(get_op(op).weight_inputs) if constant_weights else set()
    b = GraphBuilder(op)
    names = [b.constant(np.zeros(tuple(s), dtype), f"w{k}") if k in weights else b.input(f"in{k}", tuple(s), dtype)
             for k, s in enumerate(input_shapes)]
    out = b.op(op, *names, **(attrs or {}))
    for e in epilogue:
        out = b.op(e, out)
    graph = b.build([out])
    found = workloads_from_graph(graph, target, layout="nchw")  # the op as written: one kernel, no conversions
    if len(found) != 1:
        raise ValueError(f"{op} with epilogue {tuple(epilogue)} lowers to {len(found)} kernels, not one")
    return found[0][1]
