"""Partition a graph into kernels: each compute node plus the chain of elementwise epilogues that follow it.

A node joins the kernel of its producer when it is elementwise (bias, activation, residual add, …), its output has
the producer's shape (no broadcast growth), and it is the producer's only consumer — so the intermediate never
needs to exist in memory. Groups are ordered by their last node, which keeps every dependency satisfied: only a
group's last node is read from outside the group.
"""

from __future__ import annotations

from ir.graph import Graph
from ir.registry import get_op
from schedules.lowering import Group


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
            tail = chain[-1]
            users = consumers.get(tail.name, [])
            if tail.name in outputs or len(users) != 1:
                break
            nxt = users[0]
            if nxt.name in taken or not get_op(nxt.op).elementwise or nxt.type.shape != tail.type.shape:
                break
            chain.append(nxt)
            taken.add(nxt.name)
        members = {n.name for n in chain}
        inputs: list[str] = []
        for n in chain:
            for i in n.inputs:
                if i not in members and i not in inputs:
                    inputs.append(i)
        groups.append(Group(tuple(chain), tuple(inputs), chain[-1].name))
    groups.sort(key=lambda g: order[g.output])
    return groups
