"""Graph editing for operator rewrites: a uniform view of linear ops, an emitter of new nodes, and the splice.

A rewrite replaces one *anchor* node by a small sub-graph (a :class:`Replacement`). The last node of the
replacement takes the anchor's name and must have the anchor's type, so every consumer of the anchor — and the
graph's outputs — stay valid: shapes are unchanged at the replaced op's boundary by construction, and
:func:`splice` checks it. Nodes that only fed the anchor (its old weights, the scores of a softmax attention) are
dropped by :func:`ir.passes.remove_dead_nodes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from ir.analysis import Cost
from ir.graph import CONSTANT, Graph, GraphBuilder, Node, TensorType
from ir.passes import remove_dead_nodes
from operators.common import spatial_attrs


class RewriteError(ValueError):
    """A rewrite that does not apply to a node (wrong op, shapes, non-constant weights); names the node."""


@dataclass(frozen=True, eq=False)
class Replacement:
    """What takes the anchor's place: new nodes in order (the last is named as the anchor) and their constants."""

    anchor: str
    nodes: tuple[Node, ...]
    params: Mapping[str, np.ndarray]

    @property
    def produced(self) -> tuple[str, ...]:
        """Names of the new compute nodes (what a following rewrite step may target)."""
        return tuple(n.name for n in self.nodes if n.op != CONSTANT)


@dataclass(frozen=True, eq=False)
class LinearView:
    """conv / dense / matmul-with-a-constant seen as one linear reduction

        Y[n, k, o...] = Σ_{c, r...} W[k, c, r...] · X[n, c, o·s + r·d]   (+ B[k])

    ``weight`` is in conv layout [K, C/groups, *kernel]; a dense W [K, C] and a matmul's constant B [C, K] (stored
    transposed here) have no kernel axes.
    """

    node: Node
    kind: str                      # conv | dense | matmul
    x: str
    weight: np.ndarray
    bias: np.ndarray | None
    groups: int = 1
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def kernel_points(self) -> int:
        return int(np.prod(self.kernel, dtype=np.int64)) if self.kernel else 1

    def conv_attrs(self, **override: Any) -> dict:
        attrs = {"strides": self.strides, "pads": self.pads, "dilations": self.dilations, "groups": self.groups}
        attrs.update(override)
        return attrs


def linear_view(graph: Graph, node: Node) -> LinearView | None:
    """The :class:`LinearView` of ``node`` when it is a conv, dense or matmul whose weights are constants."""
    nodes = graph.node_map
    const = lambda i: i < len(node.inputs) and nodes[node.inputs[i]].op == CONSTANT  # noqa: E731
    value = lambda i: np.asarray(graph.params[node.inputs[i]])  # noqa: E731
    if node.op in ("conv", "dense") and const(1) and (len(node.inputs) < 3 or const(2)):
        bias = value(2) if len(node.inputs) == 3 else None
        if node.op == "dense":
            return LinearView(node, "dense", node.inputs[0], value(1), bias)
        w = value(1)
        nd = w.ndim - 2
        strides, pads, dilations = spatial_attrs(node.attr_dict, nd, w.shape[2:])
        return LinearView(node, "conv", node.inputs[0], w, bias, int(node.attr("groups", 1)), tuple(strides),
                          tuple(pads), tuple(dilations))
    if node.op == "matmul" and const(1) and not const(0) and value(1).ndim == 2:
        return LinearView(node, "matmul", node.inputs[0], np.ascontiguousarray(value(1).T), None)
    return None


@lru_cache(maxsize=8192)
def _cost(op: str, attrs: tuple, in_types: tuple, weight_consts: tuple, out_type) -> Cost:
    """node_cost of a node described by value (building its instruction is the slow part: ~2 ms a node)."""
    from ir.analysis import node_cost as _node_cost

    b = GraphBuilder()
    names = [b.constant(np.zeros(t.shape, t.dtype)) if c else b.input("x", t.shape, t.dtype)
             for t, c in zip(in_types, weight_consts)]
    g = b.build([b.op(op, *names, **dict(attrs))])
    return _node_cost(g, g.compute_nodes[0])


def node_cost(graph: Graph, node: Node) -> Cost:
    """:func:`ir.analysis.node_cost`, memoized by the node's op, attrs and input types (not its weights)."""
    nodes = graph.node_map
    ins = tuple(nodes[i] for i in node.inputs)
    return _cost(node.op, node.attrs, tuple(n.type for n in ins), tuple(n.op == CONSTANT for n in ins), node.type)


class Emitter:
    """Builds a :class:`Replacement` for ``anchor``: new nodes named ``<anchor>.<suffix>``, types from the op table."""

    def __init__(self, graph: Graph, anchor: Node) -> None:
        self.graph, self.anchor = graph, anchor
        self._types = {n.name: n.type for n in graph.nodes}
        self._used = set(self._types)
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}

    def _fresh(self, suffix: str) -> str:
        base = f"{self.anchor.name}.{suffix}"
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def type_of(self, name: str) -> TensorType:
        return self._types[name]

    def const(self, value: Any, suffix: str) -> str:
        arr = np.ascontiguousarray(np.asarray(value, dtype=self.anchor.dtype))
        name = self._fresh(suffix)
        self.nodes.append(Node(name, CONSTANT, (), TensorType(arr.shape, arr.dtype.name)))
        self._types[name] = self.nodes[-1].type
        self.params[name] = arr
        return name

    def op(self, op: str, *inputs: str, suffix: str | None = None, _name: str | None = None, **attrs: Any) -> str:
        from ir.registry import get_op

        frozen = Node("_", op, inputs, TensorType(()), attrs).attrs
        out = get_op(op).infer(dict(frozen), tuple(self._types[i] for i in inputs))
        name = _name or self._fresh(suffix or op)
        self.nodes.append(Node(name, op, tuple(inputs), out, frozen))
        self._types[name] = out
        return name

    def output(self, op: str, *inputs: str, **attrs: Any) -> Replacement:
        """The final node: named as the anchor; its type must be the anchor's."""
        self.op(op, *inputs, _name=self.anchor.name, **attrs)
        if self.nodes[-1].type != self.anchor.type:
            raise RewriteError(f"node {self.anchor.name!r}: replacement gives {self.nodes[-1].type}, "
                               f"the op gave {self.anchor.type}")
        return Replacement(self.anchor.name, tuple(self.nodes), MappingProxyType(dict(self.params)))

    # ---- linear ops of the anchor's kind -------------------------------------------------------------------
    def linear(self, view: LinearView, x: str, weight: np.ndarray, bias: np.ndarray | None, suffix: str,
               final: bool = False, **conv_attrs: Any):
        """A conv/dense/matmul like ``view``'s (``conv_attrs`` override its conv attributes) with these weights.

        ``weight`` is in conv layout (see :class:`LinearView`). With ``final`` the node is the replacement's
        output and a :class:`Replacement` is returned; otherwise the new node's name."""
        w = self.const(weight if view.kind != "matmul" else np.asarray(weight).T, suffix + ".w")
        ins = (x, w) if bias is None else (x, w, self.const(bias, suffix + ".b"))
        if view.kind == "matmul" and bias is not None:
            raise RewriteError(f"node {view.node.name!r}: a matmul carries no bias")
        attrs = view.conv_attrs(**conv_attrs) if view.kind == "conv" else {}
        if final:
            return self.output(view.kind, *ins, **attrs)
        return self.op(view.kind, *ins, suffix=suffix, **attrs)


def splice(graph: Graph, rep: Replacement) -> Graph:
    """``graph`` with the anchor replaced by ``rep`` (then dead nodes removed): a pure Graph → Graph step."""
    nodes = list(graph.nodes)
    at = next((k for k, n in enumerate(nodes) if n.name == rep.anchor), None)
    if at is None:
        raise RewriteError(f"graph {graph.name!r} has no node {rep.anchor!r}")
    old = nodes[at]
    if rep.nodes[-1].name != old.name or rep.nodes[-1].type != old.type:
        raise RewriteError(f"node {old.name!r}: the replacement's output does not keep the node's name and type")
    params = dict(graph.params)
    params.update(rep.params)
    return remove_dead_nodes(graph.with_nodes(nodes[:at] + list(rep.nodes) + nodes[at + 1:], params))
