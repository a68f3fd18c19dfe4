"""IR → ``torch.nn.Module``.

``to_torch(graph)`` returns a module whose ``forward(*inputs)`` runs every node's PyTorch reference
(``OpDef.torch``) in graph order: the reference semantics of the IR, used to check importers and passes numerically
without TVM, and to fine-tune an imported model. Constants read as learnable weights by some op
(``OpDef.weight_inputs``) become ``nn.Parameter``s; other constants are buffers. Parameter/buffer names are the
constant node names, sanitized into identifiers (``layer1.0/conv1.weight`` → ``layer1_0_conv1_weight``).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ir.graph import CONSTANT, Graph


def _sanitize(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name).strip("_") or "t"
    if base[0].isdigit():
        base = "t_" + base
    candidate, k = base, 0
    while candidate in taken or hasattr(nn.Module, candidate):
        k += 1
        candidate = f"{base}_{k}"
    taken.add(candidate)
    return candidate


def _weight_constants(graph: Graph) -> set[str]:
    from ir.registry import get_op

    weights = set()
    for node in graph.compute_nodes:
        for pos in get_op(node.op).weight_inputs:
            if pos < len(node.inputs):
                weights.add(node.inputs[pos])
    return weights


class GraphModule(nn.Module):
    """Runs an IR graph with the ops' PyTorch references. ``attr_names`` maps constant node → attribute name."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        from ir.registry import get_op

        self.graph = graph
        self.attr_names: dict[str, str] = {}
        weights = _weight_constants(graph)
        taken: set[str] = set()
        for node in graph.nodes:
            if node.op != CONSTANT:
                continue
            attr = _sanitize(node.name, taken)
            value = torch.from_numpy(np.array(graph.params[node.name]))
            if node.name in weights and value.is_floating_point():
                self.register_parameter(attr, nn.Parameter(value))
            else:
                self.register_buffer(attr, value)
            self.attr_names[node.name] = attr
        # resolved once: (node name, op fn, attrs, input names) for each compute node
        self._program = [(n.name, get_op(n.op).torch, n.attr_dict, n.inputs) for n in graph.compute_nodes]
        # free each intermediate after its last use, so big models do not hold every activation
        last_use: dict[str, int] = {}
        for step, (_, _, _, ins) in enumerate(self._program):
            for i in ins:
                last_use[i] = step
        keep = set(graph.outputs)
        self._free = [sorted({i for i in ins if last_use.get(i) == step and i not in keep})
                      for step, (_, _, _, ins) in enumerate(self._program)]

    def forward(self, *inputs: torch.Tensor):
        graph = self.graph
        if len(inputs) != len(graph.inputs):
            raise TypeError(f"{graph.name} takes {len(graph.inputs)} inputs ({', '.join(graph.inputs)}), "
                            f"got {len(inputs)}")
        env: dict[str, torch.Tensor] = dict(zip(graph.inputs, inputs))
        for name, attr in self.attr_names.items():
            env[name] = getattr(self, attr)
        consts = set(self.attr_names)
        for (name, fn, attrs, ins), free in zip(self._program, self._free):
            env[name] = fn(attrs, *(env[i] for i in ins))
            for i in free:
                if i not in consts and i not in graph.inputs:
                    del env[i]
        outs = tuple(env[o] for o in graph.outputs)
        return outs[0] if len(outs) == 1 else outs


def to_torch(graph: Graph) -> GraphModule:
    """A ``torch.nn.Module`` (in eval mode) that computes ``graph`` with each op's PyTorch reference."""
    return GraphModule(graph).eval()
