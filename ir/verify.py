"""The IR checker. Every pass's output goes through it in the tests."""

from __future__ import annotations

import numpy as np

from ir.graph import CONSTANT, INPUT, Graph


class IRError(ValueError):
    """A graph that breaks the IR's rules; the message names the node."""


def verify(graph: Graph, check_instructions: bool = False) -> Graph:
    """Check ``graph`` and return it unchanged, or raise :class:`IRError`.

    Rules: unique names; inputs defined before use (topological order); ``input`` nodes are exactly
    ``graph.inputs``; every constant has a param of its declared type; every other op is registered, has a legal
    number of inputs, and its declared type equals the op's type rule applied to its inputs; outputs exist.
    ``check_instructions`` also builds every node's instruction and checks its stages read only known tensors
    and produce the node's shape.
    """
    from ir.registry import UnsupportedOpError, get_op

    seen: dict[str, object] = {}
    for node in graph.nodes:
        where = f"node {node.name!r} ({node.op})"
        if node.name in seen:
            raise IRError(f"{where}: name defined twice")
        for i in node.inputs:
            if i not in seen:
                raise IRError(f"{where}: input {i!r} is not defined before it")
        if node.op == INPUT:
            if node.inputs:
                raise IRError(f"{where}: an input node takes no inputs")
            if node.name not in graph.inputs:
                raise IRError(f"{where}: not listed in graph.inputs")
        elif node.op == CONSTANT:
            if node.name not in graph.params:
                raise IRError(f"{where}: no value in graph.params")
            value = graph.params[node.name]
            if tuple(value.shape) != node.type.shape or np.dtype(value.dtype).name != node.type.dtype:
                raise IRError(f"{where}: value is {value.dtype}{list(value.shape)}, declared {node.type}")
        else:
            try:
                opdef = get_op(node.op)
            except UnsupportedOpError as e:
                raise IRError(f"{where}: {e}") from None
            lo, hi = opdef.arity
            if not lo <= len(node.inputs) <= hi:
                raise IRError(f"{where}: takes {lo}..{hi} inputs, got {len(node.inputs)}")
            in_types = tuple(seen[i].type for i in node.inputs)
            try:
                expected = opdef.infer(node.attr_dict, in_types)
            except (ValueError, TypeError, KeyError) as e:
                raise IRError(f"{where}: {e}") from None
            if expected != node.type:
                raise IRError(f"{where}: declared type {node.type}, type rule gives {expected}")
            if check_instructions:
                instr = opdef.instruction(node.attr_dict, in_types, node.type)
                try:
                    instr.check()
                except ValueError as e:
                    raise IRError(f"{where}: {e}") from None
                if instr.output.shape != node.type.shape:
                    raise IRError(f"{where}: instruction output shape {instr.output.shape} != {node.type.shape}")
        seen[node.name] = node
    if len(set(graph.inputs)) != len(graph.inputs):  # a compiled model would take that array twice
        raise IRError(f"graph inputs {list(graph.inputs)} name one input more than once")
    for name in graph.inputs:
        if name not in seen or seen[name].op != INPUT:
            raise IRError(f"graph input {name!r} is not an input node")
    if not graph.outputs:
        raise IRError("graph has no outputs")
    for name in graph.outputs:
        if name not in seen:
            raise IRError(f"graph output {name!r} is not a node")
    return graph
