"""Partition a graph into kernels: each compute node plus the chain of elementwise epilogues that follow it.

A node joins the kernel of its producer when it is elementwise (bias, activation, residual add, …), its output has
the producer's shape (no broadcast growth), and it is the producer's only consumer — so the intermediate never
needs to exist in memory. Groups are ordered by their last node, which keeps every dependency satisfied: only a
group's last node is read from outside the group.
"""

from __future__ import annotations

import os

from ir.graph import CONSTANT, Graph
from ir.registry import get_op
from schedules.lowering import Group

LAYOUTS = ("blocked", "nchw")


def default_layout() -> str:
    """The activation layout kernels are built for: ``NACOS_LAYOUT`` (blocked | nchw), blocked by default."""
    layout = os.environ.get("NACOS_LAYOUT", "blocked").strip().lower() or "blocked"
    if layout not in LAYOUTS:
        raise ValueError(f"NACOS_LAYOUT={layout!r}: choose one of {', '.join(LAYOUTS)}")
    return layout


def kernel_graph(graph: Graph, layout: str | None = None) -> Graph:
    """The graph that kernels are cut from. ``blocked``: 2-d convolution chains in NCHW[b]c with b = the
    target's float32 vector lanes (:func:`ir.passes.select_layout`); ``nchw``: ``graph`` itself.

    Compile, tuning, the database's schedule lookup and the profile all go through here, so a workload tuned
    once is found again when the model is compiled."""
    from ir.passes import select_layout
    from schedules.default import VECTOR_LANES

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


def kernel_groups(graph: Graph) -> list[Group]:
    """The groups that become kernels (:func:`partition` without the views), in execution order."""
    return [g for g in partition(graph) if not is_view(graph, g)]


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


def partition(graph: Graph, fuse: bool = True) -> list[Group]:
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
    return groups
