"""The GOS search: which costly ops to replace, and by which rewrite — NSGA-II over accuracy and latency.

Genes: one per candidate op (the costliest replaceable kernels by measured share, see
:mod:`operators.gos.analysis`), an integer choosing ``keep`` or one of the op's candidate rewrites. pymoo's NSGA-II
is driven ask/tell, so this loop owns evaluation and its cache (keyed by the choices). Evaluating a genome:

1. apply the rewrites (weights transferred by decomposition), calibrate each replaced op's output per channel
   on real inputs (:mod:`operators.gos.calibrate`) — the *transfer accuracy* is measured here;
2. fine-tune briefly with knowledge distillation from the original graph (``nacos.train``, teacher = original);
3. objectives: −validation accuracy, and latency from the latency model (per-kernel, measured by default).

A failed evaluation is a record with an ``error`` and the worst objectives, never an exception that ends the
search. At the end the non-dominated evaluations (the Pareto set) are fine-tuned further and scored on the test
split, which the search never saw. The final fine-tune changes their validation accuracy, so the set is filtered
again on the search's objectives (final validation accuracy, search latency; never on test accuracy): a member
that became dominated is dropped and recorded in ``SearchResult.dropped`` with the member that dominates it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from ir.graph import Graph
from operators.gos.rewrites import KEEP, apply

WORST = (0.0, 1e9)


@dataclass(frozen=True)
class FinetuneConfig:
    # 2 epochs at 5e-3 with α = 0.5 recovered a 4-op rewrite of the VGG example to the original's test accuracy
    # (calibrated start); 2e-3 / α = 0.7 stayed 2.6 points below
    epochs: int = 2
    max_steps: int | None = None
    lr: float = 5e-3
    batch_size: int = 32
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    seed: int = 0


@dataclass(frozen=True)
class SearchConfig:
    population: int = 8
    generations: int = 4
    max_ops: int = 8              # genes: at most this many of the costliest replaceable ops
    min_share: float = 0.02       # ... each with at least this share of the latency
    max_per_op: int = 6           # candidate rewrites per op (plus keep)
    on_target: bool = True        # keep only candidates measured faster on the target (space.on_target)
    depth: int = 2                # 1: single rules; 2: also pairs of rules (deeper is not supported)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    final_epochs: int = 4         # further fine-tuning of each Pareto member
    max_final: int = 6            # Pareto members finalized (evenly spread along latency)
    calibration: int = 256        # training examples for the per-channel output calibration (0: none)
    seed: int = 0


@dataclass(frozen=True)
class Evaluation:
    choices: tuple[tuple[str, str], ...]    # (node, rewrite) of the replaced ops, in graph order
    val_accuracy: float
    latency_s: float
    flops: int
    params: int
    transfer_accuracy: float                # validation accuracy right after the weight transfer
    test_accuracy: float | None = None      # set for the original and the finalized Pareto members
    seconds: float = 0.0
    error: str | None = None

    @property
    def key(self) -> str:
        return ",".join(f"{n}={r}" for n, r in self.choices) or "original"

    def objectives(self) -> tuple[float, float]:
        return WORST if self.error else (-self.val_accuracy, self.latency_s)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["choices"] = dict(self.choices)
        d["key"] = self.key
        return d


@dataclass(frozen=True)
class Dropped:
    """A finalized member dominated after the final fine-tune, and the key of one member (or "original") that
    dominates it on the search objectives."""

    member: Evaluation
    dominated_by: str

    def as_dict(self) -> dict:
        return dict(self.member.as_dict(), dominated_by=self.dominated_by)


@dataclass(frozen=True, eq=False)
class SearchResult:
    graph: str
    genes: tuple[tuple[str, tuple[str, ...]], ...]
    original: Evaluation
    evaluations: tuple[Evaluation, ...]
    pareto: tuple[Evaluation, ...]
    seconds: float
    graphs: Mapping[str, Graph] = field(default_factory=dict, repr=False)   # key -> fine-tuned graph
    dropped: tuple[Dropped, ...] = ()     # finalized members dominated after the final fine-tune (not in pareto)

    def as_dict(self) -> dict:
        return {"graph": self.graph, "seconds": round(self.seconds, 1),
                "genes": [{"node": n, "choices": list(c)} for n, c in self.genes],
                "original": self.original.as_dict(), "pareto": [e.as_dict() for e in self.pareto],
                "dropped": [d.as_dict() for d in self.dropped],
                "evaluations": [e.as_dict() for e in self.evaluations]}


def dominates(o: Evaluation, e: Evaluation) -> bool:
    """``o`` is at least as good as ``e`` on both objectives (val accuracy, latency) and better on one."""
    return (o.val_accuracy >= e.val_accuracy and o.latency_s <= e.latency_s and
            (o.val_accuracy > e.val_accuracy or o.latency_s < e.latency_s))


def pareto_front(evals: list[Evaluation]) -> list[Evaluation]:
    """Non-dominated evaluations (higher val accuracy, lower latency), fastest first."""
    ok = [e for e in evals if e.error is None]
    front = [e for e in ok if not any(dominates(o, e) for o in ok)]
    return sorted(front, key=lambda e: e.latency_s)


def refilter(final: list[Evaluation], original: Evaluation) -> tuple[list[Evaluation], list[Dropped]]:
    """The finalized members still non-dominated (with the original, as in the search) and those dropped, each
    with the fastest kept member (or the original) that dominates it."""
    front = pareto_front(list(final) + [original])
    kept = [e for e in front if e.choices]
    dropped = [Dropped(e, next((o.key for o in front if dominates(o, e)), "its error: " + str(e.error)))
               for e in final if e not in front]  # an error leaves an evaluation out of every front
    return kept, dropped


class GOSSearch:
    """One search over ``graph`` (trained) on ``data``; ``progress(msg)`` receives one line per evaluation."""

    def __init__(self, graph: Graph, data: Any = "digits", latency: Any = "measured",
                 config: SearchConfig | None = None, db: Any = None,
                 progress: Callable[[str], None] | None = None) -> None:
        from nacos.data import load
        from operators.gos.latency import create

        self.graph, self.config = graph, config or SearchConfig()
        self.data = load(data)
        kwargs = {"db": db} if db is not None and latency == "measured" else {}
        self.latency = create(latency, **kwargs) if isinstance(latency, str) else latency
        self.progress = progress or (lambda msg: None)
        self.cache: dict[tuple, Evaluation] = {}
        self.graphs: dict[str, Graph] = {}
        self.genes: list[tuple[str, tuple[str, ...]]] = []
        self.analysis = None   # the operators.gos.analysis.Analysis the genes came from

    # ---- evaluation ------------------------------------------------------------------------------------------
    def _accuracy(self, graph: Graph, split: str) -> float:
        from nacos.train import evaluate

        return evaluate(graph, getattr(self.data, split))[0]

    def _finetune(self, graph: Graph, epochs: int, max_steps: int | None = None) -> tuple[Graph, float]:
        from nacos.train import TrainConfig, train

        ft = self.config.finetune
        cfg = TrainConfig(epochs=epochs, max_steps=max_steps, lr=ft.lr, batch_size=ft.batch_size,
                          seed=ft.seed, patience=None, progress=False, distill_alpha=ft.distill_alpha,
                          distill_temperature=ft.distill_temperature, warmup_steps=5)
        result = train(graph, self.data, cfg, teacher=self.graph)
        return result.apply(graph), result.val_accuracy

    def transfer(self, choices: Mapping[str, str]) -> Graph:
        """The rewritten graph with transferred, calibrated weights (before any fine-tuning)."""
        from operators.gos.calibrate import calibrate

        g = apply(self.graph, dict(choices))
        n = self.config.calibration
        if n > 0 and choices:
            g = calibrate(self.graph, g, [k for k, r in choices.items() if r not in (None, KEEP)],
                          self.data.train.x[:n])
        return g

    def evaluate(self, choices: Mapping[str, str]) -> Evaluation:
        """Apply, fine-tune and measure one genome (cached by its choices)."""
        from ir.analysis import graph_cost

        chosen = tuple((n, r) for n, r in choices.items() if r not in (None, KEEP))
        if chosen in self.cache:
            return self.cache[chosen]
        t0 = time.perf_counter()
        try:
            g = self.transfer(dict(chosen))
            transfer = self._accuracy(g, "val")
            if chosen and self.config.finetune.epochs > 0:
                g, val = self._finetune(g, self.config.finetune.epochs, self.config.finetune.max_steps)
            else:
                val = transfer
            cost = graph_cost(g)
            ev = Evaluation(chosen, val, self.latency.latency(g), cost.flops, cost.params, transfer,
                            seconds=time.perf_counter() - t0)
            self.graphs[ev.key] = g
        except Exception as e:  # noqa: BLE001 — a failed candidate is data, not the end of the search
            ev = Evaluation(chosen, 0.0, float("inf"), 0, 0, 0.0, seconds=time.perf_counter() - t0,
                            error=f"{type(e).__name__}: {e}")
        self.cache[chosen] = ev
        self.progress(f"{ev.key}: val {ev.val_accuracy:.3f} (transfer {ev.transfer_accuracy:.3f}), "
                      f"{ev.latency_s * 1e6:.0f} µs" + (f" ERROR {ev.error}" if ev.error else ""))
        return ev

    # ---- the search --------------------------------------------------------------------------------------------
    def choose_genes(self) -> list[tuple[str, tuple[str, ...]]]:
        from operators.gos.analysis import analyze

        cfg = self.config
        report = analyze(self.graph, latency=self.latency, max_per_op=cfg.max_per_op, depth=cfg.depth,
                         min_share=cfg.min_share, on_target=cfg.on_target)
        self.analysis = report
        return [(r.node, (KEEP,) + r.rewrites) for r in report.top(cfg.max_ops, cfg.min_share)]

    def decode(self, x) -> dict[str, str]:
        return {node: opts[int(i)] for (node, opts), i in zip(self.genes, x)}

    def _initial(self, rng: np.random.Generator) -> np.ndarray:
        """Keep-all, the most aggressive choice everywhere, one op at its strongest at a time, then random."""
        hi = np.array([len(opts) - 1 for _, opts in self.genes])
        rows = [np.zeros_like(hi), hi.copy()]
        for k in range(len(hi)):
            if len(rows) >= self.config.population:
                break
            one = np.zeros_like(hi)
            one[k] = hi[k]
            rows.append(one)
        while len(rows) < self.config.population:
            rows.append(rng.integers(0, hi + 1))
        return np.unique(np.array(rows[: self.config.population]), axis=0)

    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        original = self.evaluate({})
        original = replace(original, test_accuracy=self._accuracy(self.graph, "test"))
        self.genes = self.choose_genes()
        self.progress(f"genes: {', '.join(f'{n} ({len(o) - 1} rewrites)' for n, o in self.genes) or 'none'}")
        if self.genes:
            self._nsga2()
        evals = [e for e in self.cache.values() if e.choices]
        front = [e for e in pareto_front(evals + [original]) if e.choices]
        final = [self._finalize(e) for e in _spread(front, self.config.max_final)]
        kept, dropped = refilter(final, original)   # the final fine-tune moved val accuracies: filter again
        for d in dropped:
            self.progress(f"{d.member.key}: dropped, dominated by {d.dominated_by} after the final fine-tune")
        graphs = {e.key: self.graphs[e.key] for e in kept}
        graphs[original.key] = self.graph
        return SearchResult(self.graph.name, tuple(self.genes), original, tuple(evals), tuple(kept),
                            time.perf_counter() - t0, MappingProxyType(graphs), tuple(dropped))

    def _nsga2(self) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair

        cfg = self.config
        hi = np.array([len(opts) - 1 for _, opts in self.genes], float)
        problem = Problem(n_var=len(hi), n_obj=2, xl=np.zeros_like(hi), xu=hi, vtype=int)
        algo = NSGA2(pop_size=cfg.population, sampling=self._initial(np.random.default_rng(cfg.seed)),
                     crossover=SBX(prob=0.9, eta=5.0, vtype=float, repair=RoundingRepair()),
                     mutation=PM(eta=5.0, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
        algo.setup(problem, termination=("n_gen", cfg.generations), seed=cfg.seed, verbose=False)
        while algo.has_next():
            pop = algo.ask()
            xs = np.clip(np.round(pop.get("X")), 0, hi).astype(int)
            pop.set("F", np.array([self.evaluate(self.decode(x)).objectives() for x in xs], float))
            algo.tell(infills=pop)

    def _finalize(self, ev: Evaluation) -> Evaluation:
        g = self.graphs[ev.key]
        val = ev.val_accuracy
        if self.config.final_epochs > 0:  # all of final_epochs: max_steps caps the search's candidates only
            g, val = self._finetune(g, self.config.final_epochs)
            self.graphs[ev.key] = g
        return replace(ev, val_accuracy=val, test_accuracy=self._accuracy(g, "test"))


def _spread(front: list[Evaluation], n: int) -> list[Evaluation]:
    if len(front) <= n:
        return front
    idx = sorted({round(i * (len(front) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [front[i] for i in idx]
