"""Operator complexity analysis: which ops dominate the model's latency on the target, and why.

Each row is one kernel as the compiler builds it (an op plus its fused epilogues), named by its anchor op, with
its latency (measured, or the tuned latency from a database, or predicted: see :mod:`operators.gos.latency`),
its share of the total, FLOPs and bytes from the math instructions (:mod:`ir.analysis`), achieved GFLOP/s and
arithmetic intensity, and the GOS rewrites that apply to it with the FLOPs cut of the strongest. The ranking is
by share: an op that is 40% of the latency at 3 GFLOP/s is the one to replace (or to tune) first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ir.graph import Graph


@dataclass(frozen=True)
class OpCost:
    rank: int
    node: str                   # the kernel's anchor op (the one a rewrite replaces)
    op: str
    kernel: str
    fused: tuple[str, ...]      # the epilogue nodes fused into the kernel
    output_shape: tuple[int, ...]
    flops: int
    bytes: int
    seconds: float
    share: float
    source: str
    rewrites: tuple[str, ...]   # GOS candidates for the anchor
    best_flops_cut: float       # 1 − FLOPs ratio of the strongest candidate (0 when none)

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0

    def why(self) -> str:
        text = f"{self.share:.0%} of latency at {self.gflops:.1f} GFLOP/s"
        if self.rewrites:
            text += f"; {len(self.rewrites)} rewrites, up to −{self.best_flops_cut:.0%} FLOPs"
        return text

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(gflops=round(self.gflops, 3), intensity=round(self.intensity, 3), why=self.why())
        return d


@dataclass(frozen=True)
class Analysis:
    graph: str
    latency_model: str
    total_seconds: float
    rows: tuple[OpCost, ...]

    def as_dict(self) -> dict:
        return {"graph": self.graph, "latency_model": self.latency_model, "total_seconds": self.total_seconds,
                "ops": [r.as_dict() for r in self.rows]}

    def top(self, n: int, min_share: float = 0.0, replaceable: bool = True) -> list[OpCost]:
        """The ``n`` costliest ops with at least ``min_share`` (and, with ``replaceable``, a candidate)."""
        return [r for r in self.rows if r.share >= min_share and (r.rewrites or not replaceable)][:n]


def analyze(graph: Graph, latency: Any = "measured", db: Any = None, target: Any = None,
            with_rewrites: bool = True, max_per_op: int = 6, depth: int = 2, min_share: float = 0.01,
            on_target: bool = False) -> Analysis:
    """Rank ``graph``'s ops by share of latency (``latency``: a model name or instance; ``db``: a tuning database
    whose best schedules are used and whose measurements are reused). Rewrites are listed for the ops with at
    least ``min_share`` of the latency (generating them costs a few seconds an op); with ``on_target`` they are
    also timed with the latency model and only those faster on the target are kept (see ``space.on_target``)."""
    from operators.gos.latency import create
    from operators.gos.space import node_candidates

    kwargs = {"target": target}
    if db is not None and latency == "measured":
        kwargs["db"] = db
    model = create(latency, **kwargs) if isinstance(latency, str) else latency
    kernels = model.kernels(graph)
    total = sum(k.seconds for k in kernels) or 1.0
    nodes = graph.node_map
    rows = []
    for k in sorted(kernels, key=lambda k: -k.seconds):
        anchor = nodes[k.nodes[0]]
        wanted = with_rewrites and k.seconds / total >= min_share
        found = node_candidates(graph, anchor.name, max_per_op=max_per_op, depth=depth,
                                latency=model if on_target else None) if wanted else []
        cut = max((1.0 - c.flops_ratio for c in found), default=0.0)
        rows.append(OpCost(len(rows) + 1, anchor.name, anchor.op, k.name, k.nodes[1:], nodes[k.nodes[-1]].shape,
                           k.flops, k.bytes, k.seconds, k.seconds / total, k.source,
                           tuple(c.rewrite for c in found), cut))
    return Analysis(graph.name, model.kind, float(sum(k.seconds for k in kernels)), tuple(rows))
