"""Layout selection: run 2-d convolutions and the elementwise ops between them in the blocked layout NCHW[b]c.

Pure Graph → Graph. Every 2-d convolution with constant weights whose output channels the block divides — plain
(groups = 1) or depthwise (groups = C = K) — becomes ``conv2d_nchwc`` / ``dwconv2d_nchwc`` with its weights
(and bias) re-laid out here, at compile time (constant pre-packing). A plain conv whose *input* channels fill no
block (the first conv over an image's 3 channels) reads its NCHW input as it is and writes the blocked layout, so
no conversion runs on its large output. An elementwise op follows its inputs into the blocked layout when every
input is a same-shaped activation or a scalar, a 2-d max pool of a blocked tensor stays blocked
(``maxpool2d_nchwc``), and so does a concat along channels whose parts are whole blocks (a concat of the
blocked tensors along their block axis). Conversions are placed only where needed:
``to_blocked`` once per NCHW tensor that a blocked op reads, ``from_blocked`` once per blocked tensor that an
NCHW op (pooling, reshape, attention, …) or a graph output reads, under the tensor's original name — so the rest
of the graph is unchanged and a chain conv → relu → conv → add stays blocked from end to end.

Convolutions that do not qualify (grouped convs, 1-d/3-d, output channels the block does not divide) stay in NCHW.
"""

from __future__ import annotations

import numpy as np

from ir.graph import CONSTANT, INPUT, Graph, Node, TensorType
from ir.passes.fold import _fresh_namer
from ir.registry import get_op
from ir.verify import verify

# ops that run per channel over the spatial dims, with the same attributes in NCHW[b]c: they follow a blocked input
BLOCKED_TWINS = {"maxpool": "maxpool2d_nchwc"}


def _conv_kind(nodes: dict[str, Node], node: Node, block: int, params: dict) -> str | None:
    """"dense" / "depthwise" / "stem" when ``node`` is a 2-d conv this pass can block, else None (``nodes``: the
    graph's node map, built once per pass rather than once per node). A "stem" conv's input channels (3, of an
    image) fill no block: it reads its NCHW input as it is and writes the blocked layout."""
    if node.op != "conv" or len(node.shape) != 4:
        return None
    if not all(nodes[i].op == CONSTANT and i in params for i in node.inputs[1:]):
        return None  # weights that are not constants, or constants without data (a workload's graph): no re-layout
    c, k = nodes[node.inputs[0]].shape[1], node.shape[1]
    groups = int(node.attr("groups", 1))
    if k % block:
        return None
    if c % block:
        return "stem" if groups == 1 else None
    if groups == 1:
        return "dense"
    if groups == c == k:
        return "depthwise"
    return None


def _pack_weight(w: np.ndarray, kind: str, block: int) -> np.ndarray:
    k, cg, r, s = w.shape
    if kind == "depthwise":  # (C, 1, R, S) → (C/b, R, S, b)
        return np.ascontiguousarray(w.reshape(k // block, block, r, s).transpose(0, 2, 3, 1))
    if kind == "stem":  # (K, C, R, S) → (K/b, C, R, S, 1, b): the NCHW input is blocked by 1
        return np.ascontiguousarray(w.reshape(k // block, block, cg, r, s, 1).transpose(0, 2, 3, 4, 5, 1))
    # (K, C, R, S) → (K/b, C/b, R, S, b_in, b_out)
    return np.ascontiguousarray(w.reshape(k // block, block, cg // block, block, r, s).transpose(0, 2, 4, 5, 3, 1))


def _blocked_type(t: TensorType, block: int) -> TensorType:
    n, c, *sp = t.shape
    return TensorType((n, c // block, *sp, block), t.dtype)


def select_layout(graph: Graph, block: int, min_convs: int = 2) -> Graph:
    """``graph`` with its 2-d convolution chains in NCHW[``block``]c (see the module docstring); unchanged when no
    convolution qualifies. A blocked region (tensors connected through blocked ops) with fewer than ``min_convs``
    convolutions stays NCHW: its conversions would cost about what the blocked convolution saves."""
    if block < 2:
        return graph
    exclude: frozenset[str] = frozenset()
    while True:
        result, regions = _blocked(graph, block, exclude)
        small = {conv for convs in regions if len(convs) < min_convs for conv in convs}
        if not small:
            return result
        exclude |= small


def _blocked(graph: Graph, block: int, exclude: frozenset[str]) -> tuple[Graph, list[set[str]]]:
    """(the rewritten graph, the original convolution names of each blocked region)."""
    nodes_by = graph.node_map
    if not any(_conv_kind(nodes_by, n, block, graph.params) and n.name not in exclude for n in graph.nodes):
        return graph, []
    parent: dict[str, str] = {}  # union-find over blocked twins: one root per region

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def join(twin: str, inputs) -> None:
        parent[twin] = twin
        for i in inputs:
            if i in parent:
                parent[root(i)] = root(twin)
    params = dict(graph.params)
    fresh = _fresh_namer(graph)
    out: list[Node] = []
    blocked: dict[str, str] = {}   # NCHW tensor name → its blocked twin
    present: set[str] = set()      # NCHW tensors that exist in the new graph
    convs: dict[str, str] = {}     # blocked convolution twin → original convolution name

    def need_nchw(name: str) -> None:
        if name in present:
            return
        src = nodes_by[name]
        out.append(Node(name, "from_blocked", (blocked[name],), src.type, {"block": block}))
        present.add(name)

    def need_blocked(name: str) -> str:
        if name not in blocked:
            src = nodes_by[name]
            twin = fresh(f"{name}_nchw{block}c")
            out.append(Node(twin, "to_blocked", (name,), _blocked_type(src.type, block), {"block": block}))
            blocked[name] = twin
        return blocked[name]

    def emit_twin(node: Node, op: str, ins, attrs) -> str:
        """The blocked twin of ``node`` (op ``op`` on blocked ``ins``), joined to its inputs' region."""
        twin = fresh(f"{node.name}_nchw{block}c")
        out.append(Node(twin, op, tuple(ins), _blocked_type(node.type, block), attrs))
        blocked[node.name] = twin
        join(twin, ins)
        return twin

    def blockable_elementwise(node: Node) -> bool:
        if not get_op(node.op).elementwise or len(node.shape) < 3 or node.shape[1] % block:
            return False
        acts = [i for i in node.inputs if nodes_by[i].op != CONSTANT]
        consts_scalar = all(int(np.prod(nodes_by[i].shape)) == 1 for i in node.inputs if nodes_by[i].op == CONSTANT)
        return (consts_scalar and any(i in blocked for i in acts)
                and all(nodes_by[i].shape == node.shape for i in acts))

    def blockable_concat(node: Node) -> bool:
        if node.op != "concat" or len(node.shape) < 3:
            return False
        axis = int(node.attr("axis", 0))
        return (axis % len(node.shape)) == 1 and any(i in blocked for i in node.inputs) and all(
            nodes_by[i].op != CONSTANT and nodes_by[i].shape[1] % block == 0 for i in node.inputs)

    for node in graph.nodes:
        kind = _conv_kind(nodes_by, node, block, graph.params) if node.name not in exclude else None
        if kind is not None:
            # a stem reads its NCHW input as it is (its channels fill no block, so it never has a blocked twin)
            x = node.inputs[0] if kind == "stem" else need_blocked(node.inputs[0])
            w_name = fresh(f"{node.name}_w_nchw{block}c")
            params[w_name] = _pack_weight(graph.params[node.inputs[1]], kind, block)
            ins = [x, w_name]
            out.append(Node(w_name, CONSTANT, (), TensorType(params[w_name].shape, node.dtype)))
            if len(node.inputs) == 3:
                b_name = fresh(f"{node.name}_b_nchw{block}c")
                params[b_name] = np.ascontiguousarray(graph.params[node.inputs[2]].reshape(-1, block))
                out.append(Node(b_name, CONSTANT, (), TensorType(params[b_name].shape, node.dtype)))
                ins.append(b_name)
            attrs = {k: v for k, v in node.attr_dict.items() if k in ("strides", "pads", "dilations")}
            op = "dwconv2d_nchwc" if kind == "depthwise" else "conv2d_nchwc"
            convs[emit_twin(node, op, ins, attrs)] = node.name
        elif node.op in BLOCKED_TWINS and len(node.shape) == 4 and node.inputs[0] in blocked:
            emit_twin(node, BLOCKED_TWINS[node.op], (blocked[node.inputs[0]],), node.attrs)
        elif blockable_concat(node):  # along channels, every part whole blocks: a concat of the blocked tensors
            emit_twin(node, "concat", [need_blocked(i) for i in node.inputs], {"axis": 1})
        elif node.op not in (CONSTANT, INPUT) and blockable_elementwise(node):
            ins = [i if nodes_by[i].op == CONSTANT else need_blocked(i) for i in node.inputs]
            emit_twin(node, node.op, ins, node.attrs)
        else:
            for i in node.inputs:
                if i in blocked:
                    need_nchw(i)
            out.append(node)
            present.add(node.name)
    for o in graph.outputs:
        need_nchw(o)
    result = graph.with_nodes(_drop_unread_constants(out), params)
    verify(result)
    regions: dict[str, set[str]] = {}
    for twin, conv in convs.items():
        regions.setdefault(root(twin), set()).add(conv)
    return result, list(regions.values())


def _drop_unread_constants(nodes: list[Node]) -> list[Node]:
    """Without the constants nothing reads any more (the NCHW weights of blocked convolutions); their data goes
    with them (``Graph.with_nodes`` keeps only params of constants present). Nodes are already in dependency
    order: every node, conversions included, is emitted after its inputs."""
    used = {i for n in nodes for i in n.inputs}
    return [n for n in nodes if n.op != CONSTANT or n.name in used]
