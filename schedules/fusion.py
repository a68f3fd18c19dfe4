"""Partition a graph into kernels: each compute node plus the chain of elementwise epilogues that follow it.

A node joins the kernel of its producer when it is elementwise (bias, activation, residual add, …), its output has
the producer's shape (no broadcast growth), and it is the producer's only consumer — so the intermediate never
needs to exist in memory. Groups are ordered by their last node, which keeps every dependency satisfied: only a
group's last node is read from outside the group.

One pair of compute kernels also joins (:data:`CHAINS`): a blocked depthwise conv and the 1×1 conv that alone
reads it (MobileNet's inverted residuals). The kernel computes the depthwise output one row at a time into a
buffer the size of a row and the 1×1 conv reads it from there (:mod:`schedules.chain`), so the depthwise output —
the block's widest tensor after its expansion, 1.2–1.8 MB at 56×56 — is never written to memory and read back.
``NACOS_CHAINS=0`` turns this off.
"""

from __future__ import annotations

import os

from ir.graph import CONSTANT, Graph
from ir.registry import get_op
from schedules.lowering import Group

LAYOUTS = ("blocked", "nchw")


class SettingError(ValueError):
    """An environment setting (``NACOS_LAYOUT``, ``NACOS_CHAINS``) with a value that means nothing."""


def default_layout() -> str:
    """The activation layout kernels are built for: ``NACOS_LAYOUT`` (blocked | nchw), blocked by default."""
    layout = os.environ.get("NACOS_LAYOUT", "blocked").strip().lower() or "blocked"
    if layout not in LAYOUTS:
        raise SettingError(f"NACOS_LAYOUT={layout!r}: choose one of {', '.join(LAYOUTS)}")
    return layout


def kernel_graph(graph: Graph, layout: str | None = None) -> Graph:
    """The graph that kernels are cut from. ``blocked``: 2-d convolution chains in NCHW[b]c with b = the
    target's float32 vector lanes (:func:`ir.passes.select_layout`); ``nchw``: ``graph`` itself.

    Compile, tuning, the database's schedule lookup and the profile all go through here, so a workload tuned
    once is found again when the model is compiled."""
    from ir.passes import select_layout
    from schedules.loops import VECTOR_LANES

    layout = default_layout() if layout is None else layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return select_layout(graph, VECTOR_LANES) if layout == "blocked" else graph


VIEW_OPS = frozenset({"reshape", "flatten"})  # row-major reshapes: the output has the input's bytes, in order


def is_view(graph: Graph, group: Group) -> bool:
    """A group that only re-reads a computed tensor with a new shape: the compiler emits a Relax reshape (a view
    of the same buffer) instead of a kernel that copies it."""
    node = group.nodes[0]
    return len(group.nodes) == 1 and node.op in VIEW_OPS and graph.node_map[group.inputs[0]].op != CONSTANT \
        and node.type.dtype == graph.node_map[group.inputs[0]].type.dtype


# (producer anchor op, consumer anchor op) pairs whose groups join into one kernel, when the consumer alone reads
# the producer's output and is a 1×1 conv over every position (_pointwise)
CHAINS = {("dwconv2d_nchwc", "conv2d_nchwc")}


def chains_enabled() -> bool:
    """Whether :func:`partition` joins :data:`CHAINS` (``NACOS_CHAINS``: 1 by default, 0 to turn it off)."""
    value = os.environ.get("NACOS_CHAINS", "1").strip().lower()
    if value not in ("", "0", "1", "true", "false", "on", "off"):
        raise SettingError(f"NACOS_CHAINS={value!r}: use 1 or 0")
    return value in ("", "1", "true", "on")


def is_chain(group: Group) -> bool:
    """A group holding two compute anchors (a :data:`CHAINS` pair), not one anchor and its epilogues."""
    return sum(not get_op(n.op).elementwise for n in group.nodes) > 1


def _pointwise(graph: Graph, node) -> bool:
    """A 1×1 conv over every position (stride 1, no padding) with constant weights: row r of its output reads
    row r of its input only."""
    nodes = graph.node_map
    if len(node.inputs) < 2 or nodes[node.inputs[1]].op != CONSTANT:
        return False
    attrs = node.attr_dict
    return tuple(nodes[node.inputs[1]].shape[2:4]) == (1, 1) and tuple(attrs.get("strides", (1, 1))) == (1, 1) \
        and not any(attrs.get("pads", (0,)))


def _join_chains(graph: Graph, groups: list[Group]) -> list[Group]:
    """Each producer group of a :data:`CHAINS` pair merged into the group that alone reads its output."""
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    anchor_of = {g.nodes[0].name: g for g in groups}
    merged: dict[str, Group] = {}  # consumer group output -> the joined group
    absorbed: set[str] = set()     # producer group outputs
    for g in groups:
        users = consumers.get(g.output, [])
        if g.output in outputs or len(users) != 1 or users[0].name not in anchor_of:
            continue
        nxt = anchor_of[users[0].name]
        anchor = nxt.nodes[0]
        if (g.nodes[0].op, anchor.op) not in CHAINS or anchor.inputs[0] != g.output or not _pointwise(graph, anchor):
            continue
        members = {n.name for n in g.nodes}
        inputs = list(g.inputs) + [i for i in nxt.inputs if i not in members and i not in g.inputs]
        merged[nxt.output] = Group(g.nodes + nxt.nodes, tuple(inputs), nxt.output)
        absorbed.add(g.output)
    return [merged.get(g.output, g) for g in groups if g.output not in absorbed]


def kernel_groups(graph: Graph, chains: bool | None = None) -> list[Group]:
    """The groups that become kernels (:func:`partition` without the views), in execution order."""
    return [g for g in partition(graph, chains=chains) if not is_view(graph, g)]


def _next_member(chain, consumers, outputs, taken):
    """The elementwise node that extends ``chain``, or None.

    Usually the tail's only consumer. Also a small diamond such as SiLU, x·sigmoid(x): the tail feeds a unary
    elementwise node *and* the binary node that joins both — then the unary node joins, and the binary one next
    (every member but the last must be read only inside the group)."""
    tail = chain[-1]
    if tail.name in outputs:
        return None
    users = consumers.get(tail.name, [])
    members = {n.name for n in chain}

    def joinable(n) -> bool:
        return n.name not in taken and get_op(n.op).elementwise and n.type.shape == tail.type.shape

    if len(users) == 1:
        return users[0] if joinable(users[0]) else None
    if len(users) == 2:
        for a, b in (users, users[::-1]):
            b_inputs = set(b.inputs)
            if joinable(a) and joinable(b) and b_inputs <= members | {a.name} and a.name in b_inputs \
                    and a.name not in outputs and [u.name for u in consumers.get(a.name, [])] == [b.name]:
                return a
    return None


def _closed(chain, consumers, outputs) -> bool:
    """Only the last member is read from outside the group (or is a graph output)."""
    members = {n.name for n in chain}
    return all(m.name not in outputs and all(u.name in members for u in consumers.get(m.name, []))
               for m in chain[:-1])


def partition(graph: Graph, fuse: bool = True, chains: bool | None = None) -> list[Group]:
    """The graph's kernels in execution order. ``fuse``: epilogues join their producer (and, with ``chains``,
    default :func:`chains_enabled`, :data:`CHAINS` pairs join each other); False: one kernel per compute node."""
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    taken: set[str] = set()
    groups = []
    for node in graph.compute_nodes:
        if node.name in taken:
            continue
        chain = [node]
        taken.add(node.name)
        while fuse:
            nxt = _next_member(chain, consumers, outputs, taken)
            if nxt is None:
                break
            chain.append(nxt)
            taken.add(nxt.name)
        while len(chain) > 1 and not _closed(chain, consumers, outputs):
            taken.discard(chain.pop().name)  # a diamond left half-joined: give its nodes back
        members = {n.name for n in chain}
        inputs: list[str] = []
        for n in chain:
            for i in n.inputs:
                if i not in members and i not in inputs:
                    inputs.append(i)
        groups.append(Group(tuple(chain), tuple(inputs), chain[-1].name))
    groups.sort(key=lambda g: order[g.output])
    if fuse and (chains_enabled() if chains is None else chains):
        groups = _join_chains(graph, groups)
    return groups
