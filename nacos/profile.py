"""Per-kernel profile of a model on the target: which fused groups dominate its latency, and how efficiently.

Each group (an op plus its fused epilogues) is built alone with the schedule the compiler would use and timed
with TVM's time_evaluator on random inputs (constants take their real values). The shares tell where tuning or
an operator rewrite pays off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ir.analysis import node_cost
from ir.graph import CONSTANT, Graph
from nacos.compiler import schedule_group
from schedules.default import pack_constant, packed_inputs
from schedules.fusion import kernel_graph, kernel_groups
from schedules.tvm_env import make_target, tvm


@dataclass(frozen=True)
class KernelProfile:
    name: str
    ops: tuple[str, ...]
    nodes: tuple[str, ...]
    output_shape: tuple[int, ...]
    flops: int
    bytes: int
    seconds: float
    share: float
    tuned: bool

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["gflops"] = round(self.gflops, 3)
        return d


def profile(graph: Graph, target=None, schedules=None, number: int = 10, repeat: int = 5,
            layout: str | None = None) -> list[KernelProfile]:
    """Kernels of ``graph`` (after the compiler's layout selection) sorted by measured latency, largest first
    (median of ``repeat`` timings)."""
    graph = kernel_graph(graph, layout)
    tgt = make_target(target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    nodes = graph.node_map
    rows = []
    for k, group in enumerate(kernel_groups(graph)):
        mod, tuned = schedule_group(graph, group, schedules)
        with tgt:
            lib = tvm.compile(mod, tgt)
        packed = {p: (axis, lanes) for p, axis, lanes in packed_inputs(mod["main"])}
        args = []
        for p, name in enumerate(group.inputs):
            node = nodes[name]
            value = graph.params[name] if node.op == CONSTANT else \
                rng.standard_normal(node.shape).astype(node.dtype)
            if p in packed:
                args.append(tvm.runtime.tensor(pack_constant(value, *packed[p]), dev))
                continue
            args.append(tvm.runtime.tensor(np.ascontiguousarray(value).reshape(node.shape or (1,)), dev))
        out = nodes[group.output]
        args.append(tvm.runtime.tensor(np.zeros(out.shape or (1,), out.dtype), dev))
        timer = lib.mod.time_evaluator("main", dev, number=number, repeat=repeat)
        seconds = float(np.median(timer(*args).results))
        costs = [node_cost(graph, n) for n in group.nodes]
        rows.append((f"k{k:03d}_{group.name}", tuple(n.op for n in group.nodes), tuple(n.name for n in group.nodes),
                     out.shape, sum(c.flops for c in costs),
                     sum(c.bytes_read for c in costs[:1]) + out.type.nbytes, seconds, tuned))
    total = sum(r[6] for r in rows) or 1.0
    result = [KernelProfile(*r[:7], share=r[6] / total, tuned=r[7]) for r in rows]
    return sorted(result, key=lambda p: -p.seconds)
