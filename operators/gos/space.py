"""Candidate generation: for each op, the rewrites (single rules and compositions of two) that pay off.

For a node, every rule whose pattern matches is tried with each of its default arguments; then every result is
extended by a second rule applied to its costliest product (composition of primitives, e.g. ``dwsep>group:4`` =
depthwise + *grouped* pointwise, or ``bottleneck:0.5>dwsep``). A candidate is kept when it verifies, cuts the
FLOPs of the replaced region by at least ``min_gain`` (a composition must also cut more than its first step) and
is not structurally identical to one already kept. When more than ``max_per_op`` survive, an evenly spaced
selection along the FLOPs ratio keeps both the mild and the aggressive ends of the trade-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ir.graph import Graph
from operators.gos.graphedit import RewriteError, node_cost
from operators.gos.rewrites import RULES, Step, apply_rewrite, name_of, parse, region


@dataclass(frozen=True)
class Candidate:
    """One rewrite of one node, with the FLOPs/params of the region it replaces, before and after."""

    node: str
    rewrite: str
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    signature: str      # the structure of the new region (ops, attrs, shapes): duplicates share it
    latency_before: float | None = None   # the region's kernels on the target (when a latency model is given)
    latency_after: float | None = None

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / self.flops_before if self.flops_before else 1.0

    @property
    def latency_ratio(self) -> float | None:
        if self.latency_before and self.latency_after is not None:
            return self.latency_after / self.latency_before
        return None


def evaluate_rewrite(graph: Graph, node: str, rewrite: str) -> Candidate:
    """Apply ``rewrite`` at ``node`` and measure its region; raises :class:`RewriteError` if it does not apply."""
    from ir.verify import IRError, verify

    try:
        after = verify(apply_rewrite(graph, node, rewrite))
    except IRError as e:
        raise RewriteError(f"rewrite {rewrite!r} at {node!r} breaks the IR: {e}") from None
    gone, added = region(graph, after, node)
    cost = lambda g, ns: [node_cost(g, n) for n in ns]  # noqa: E731
    before, now = cost(graph, gone), cost(after, added)
    sig = ";".join(f"{n.op}{list(n.shape)}{n.attrs}" for n in added)
    return Candidate(node, rewrite, sum(c.flops for c in before), sum(c.flops for c in now),
                     sum(c.params for c in before), sum(c.params for c in now), sig)


def _singles(graph: Graph, node: str) -> list[str]:
    n = graph.node(node)
    return [str(Step(r.name, a)) for r in RULES.values() if r.pattern(graph, n) is not None for a in r.args]


def region_latency(latency, graph: Graph, names: set[str]) -> float:
    """Seconds of the kernels of ``graph`` that compute any of ``names``."""
    return float(sum(k.seconds for k in latency.kernels(graph) if names & set(k.nodes)))


def on_target(graph: Graph, node: str, found: list[Candidate], latency, min_speedup: float = 1.1) -> list[Candidate]:
    """Candidates with their region's latency measured: those at least ``min_speedup`` faster than the original
    region, and not dominated (another is as fast and keeps as many parameters, one of them strictly)."""
    from dataclasses import replace

    timed = []
    for c in found:
        after = apply_rewrite(graph, node, c.rewrite)
        gone, added = region(graph, after, node)
        before = region_latency(latency, graph, {n.name for n in gone})
        timed.append(replace(c, latency_before=before,
                             latency_after=region_latency(latency, after, {n.name for n in added})))
    fast = [c for c in timed if c.latency_after * min_speedup <= c.latency_before]
    return [c for c in fast if not any(
        o.latency_after <= c.latency_after and o.params_after >= c.params_after and
        (o.latency_after < c.latency_after or o.params_after > c.params_after) for o in fast)]


def node_candidates(graph: Graph, node: str, max_per_op: int = 6, min_gain: float = 1.25,
                    depth: int = 2, latency=None) -> list[Candidate]:
    """The candidate rewrites of one node (see the module docstring), mildest first.

    With a ``latency`` model (:mod:`operators.gos.latency`) the survivors are also measured on the target and
    pruned by :func:`on_target`: a rewrite that cuts FLOPs but not time there, or that is slower than another
    which keeps more parameters, is not worth a search gene value."""
    if depth not in (1, 2):  # compositions are built as pairs; deeper ones are not generated
        raise ValueError(f"depth {depth}: 1 (single rules) or 2 (pairs of rules) is supported")
    kept: dict[str, Candidate] = {}
    firsts: list[Candidate] = []
    for name in _singles(graph, node):
        try:
            firsts.append(evaluate_rewrite(graph, node, name))
        except (RewriteError, ValueError):
            continue
    pool = list(firsts)
    if depth >= 2:
        for first in firsts:
            last = parse(first.rewrite)[-1].rule
            for second in (Step(r.name, a) for r in RULES.values() if r.name != last for a in r.args):
                try:
                    c = evaluate_rewrite(graph, node, name_of((*parse(first.rewrite), second)))
                except (RewriteError, ValueError):
                    continue
                if c.flops_after < first.flops_after:
                    pool.append(c)
    for c in sorted(pool, key=lambda c: (c.flops_ratio, len(c.rewrite))):
        if c.flops_ratio <= 1.0 / min_gain and c.signature not in {k.signature for k in kept.values()}:
            kept[c.rewrite] = c
    ranked = sorted(kept.values(), key=lambda c: -c.flops_ratio)
    if latency is not None:
        ranked = sorted(on_target(graph, node, ranked, latency), key=lambda c: -(c.latency_ratio or 0.0))
    if len(ranked) > max_per_op:
        step = (len(ranked) - 1) / (max_per_op - 1) if max_per_op > 1 else 0
        ranked = [ranked[round(i * step)] for i in range(max_per_op)]
    return ranked


def candidates(graph: Graph, nodes: Iterable[str] | None = None, max_per_op: int = 6,
               min_gain: float = 1.25, depth: int = 2) -> list[tuple[str, list[str]]]:
    """``[(node, [rewrite names])]`` for every node (or those in ``nodes``) with at least one candidate.

    The names go straight into :func:`operators.gos.apply` (``"keep"`` is always also allowed)."""
    names = list(nodes) if nodes is not None else [n.name for n in graph.compute_nodes]
    out = []
    for name in names:
        found = node_candidates(graph, name, max_per_op, min_gain, depth)
        if found:
            out.append((name, [c.rewrite for c in found]))
    return out
