"""Evaluating individuals: the network a genome builds, its kernels' schedules, and the three objectives.

* error — from the chosen fidelity (:mod:`nacos.joint.fidelity`);
* latency — predicted: each kernel's latency under the schedule the genome gives it, from the kernel latency
  model (:class:`schedules.latency_model.KernelLatencyModel`: measured where the database has the point,
  learned otherwise), summed over the network's kernels and mapped to whole-model latency by a
  :class:`Calibration` fitted on the networks measured for real (whole models pay a per-kernel call overhead
  the kernel sum does not see);
* memory — peak memory (weights + live activations, :func:`ir.analysis.peak_memory`), in MB.

Constraints (pymoo ``G ≤ 0``): the latency budget and the memory budget, when given.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ir.graph import Graph
from nacos.joint.genome import Genome, JointGenome
from schedules.space import DEFAULT_SCHEDULE, Point
from schedules.workload import Workload, unique_workloads


TUNED_MARGIN = 0.05


@dataclass(frozen=True)
class Evaluation:
    genome: Genome
    error: float
    error_source: str
    latency_s: float              # predicted whole-model latency
    kernel_sum_s: float           # predicted sum over kernels (before calibration)
    kernels: int                  # kernel calls (fused groups)
    memory_bytes: int
    params: int
    flops: int

    def objectives(self) -> list[float]:
        return [self.error, self.latency_s * 1e3, self.memory_bytes / 2**20]

    def info(self) -> dict:
        return {"error_source": self.error_source, "latency_s": self.latency_s, "kernel_sum_s": self.kernel_sum_s,
                "kernels": self.kernels, "memory_bytes": self.memory_bytes, "params": self.params,
                "flops": self.flops, "arch": [list(kv) for kv in self.genome.arch.values],
                "slots": list(self.genome.slots)}


class Calibration:
    """whole-model latency ≈ a · Σ kernel latencies + b · kernel calls, least squares on measured networks
    (a, b ≥ 0). With one measurement only ``a`` is fitted; with none the kernel sum is used as it is."""

    def __init__(self) -> None:
        self.a, self.b, self.n = 1.0, 0.0, 0

    def fit(self, kernel_sums: Sequence[float], calls: Sequence[int], measured: Sequence[float]) -> None:
        s, c, m = (np.asarray(v, np.float64) for v in (kernel_sums, calls, measured))
        self.n = len(m)
        if self.n == 0:
            self.a, self.b = 1.0, 0.0
        elif self.n == 1 or np.ptp(c) == 0:
            self.a, self.b = float(np.sum(m * s) / max(np.sum(s * s), 1e-30)), 0.0
        else:
            from scipy.optimize import nnls

            # relative errors matter (latencies span 10×): weight each row by 1 / measured
            w = 1.0 / np.maximum(m, 1e-9)
            coef, _ = nnls(np.stack([s * w, c * w], axis=1), m * w)
            self.a, self.b = float(coef[0]), float(coef[1])
            if self.a <= 0:
                self.a = float(np.sum(m * s) / max(np.sum(s * s), 1e-30))

    def __call__(self, kernel_sum: float, calls: int) -> float:
        return self.a * kernel_sum + self.b * calls


class Evaluator:
    """Builds, caches and scores individuals (see the module docstring)."""

    def __init__(self, genome: JointGenome, dataset, fidelity, latency_model, db, target_key: str,
                 latency_max_ms: float | None = None, memory_max_mb: float | None = None, graph_seed: int = 0,
                 base_graph: Graph | None = None) -> None:
        self.genome, self.dataset, self.fidelity = genome, dataset, fidelity
        self.latency_model, self.db, self.target_key = latency_model, db, target_key
        self.latency_max_ms, self.memory_max_mb = latency_max_ms, memory_max_mb
        self.graph_seed = graph_seed
        self.calibration = Calibration()
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._workloads: dict[str, list[tuple[Workload, int]]] = {}
        self._static: dict[str, tuple[int, int, int]] = {}

    @property
    def constraints(self) -> int:
        return int(self.latency_max_ms is not None) + int(self.memory_max_mb is not None)

    # ---- networks ------------------------------------------------------------------------------------------
    def graph(self, genome: Genome) -> Graph:
        arch = genome.arch
        g = self._graphs.get(arch.archid)
        if g is None:
            g = self.genome.space.to_graph(arch, self.dataset.input_shape, self.dataset.num_classes,
                                           seed=self.graph_seed)
            self._graphs[arch.archid] = g
            while len(self._graphs) > 256:
                self._graphs.popitem(last=False)
        return g

    def workloads(self, genome: Genome) -> list[tuple[Workload, int]]:
        archid = genome.arch.archid
        if archid not in self._workloads:
            self._workloads[archid] = unique_workloads(self.graph(genome), self.target_key)
        return self._workloads[archid]

    def static_costs(self, genome: Genome) -> tuple[int, int, int]:
        """(peak memory bytes, params, flops) — they depend on the architecture only."""
        archid = genome.arch.archid
        if archid not in self._static:
            from ir.analysis import graph_cost, peak_memory

            g = self.graph(genome)
            cost = graph_cost(g)
            self._static[archid] = (int(peak_memory(g).total_bytes), int(cost.params), int(cost.flops))
        return self._static[archid]

    # ---- schedules and latency -----------------------------------------------------------------------------
    def tuned(self, workloads: Sequence[tuple[Workload, int]]) -> dict[str, Point]:
        """Workload key → the database's best point, when it beats the measured default by more than
        ``TUNED_MARGIN`` (a few noisy single measurements otherwise crown schedules that are no faster)."""
        out = {}
        for w, _ in workloads:
            best = self.db.best(w)
            if best is None:
                continue
            default = self.db.latency(w, DEFAULT_SCHEDULE)
            if default is None or best[1] < (1.0 - TUNED_MARGIN) * default:
                out[w.key] = best[0]
        return out

    def schedules(self, genome: Genome) -> dict[str, Point]:
        """Workload key → the schedule point this individual gives that kernel.

        A gene's point that has been measured and was not faster than the measured default (by
        ``TUNED_MARGIN``) is repaired to the default: the genome keeps its gene, but neither the prediction nor
        the compiled network uses a schedule known to be no better (neighbours of a good default are often worse)."""
        wl = self.workloads(genome)
        chosen = self.genome.schedule_of(genome, wl, self.tuned(wl))
        for w, _ in wl:
            point = chosen[w.key]
            if point == DEFAULT_SCHEDULE:
                continue
            mine, default = self.db.latency(w, point), self.db.latency(w, DEFAULT_SCHEDULE)
            if mine is not None and default is not None and mine >= (1.0 - TUNED_MARGIN) * default:
                chosen[w.key] = DEFAULT_SCHEDULE
        return chosen

    def kernel_latencies(self, genome: Genome) -> list[tuple[Workload, int, Point, float]]:
        """(workload, count, point, predicted seconds) of every distinct kernel, costliest first."""
        wl = self.workloads(genome)
        chosen = self.schedules(genome)
        preds = self.latency_model.predict([(w, chosen[w.key]) for w, _ in wl])
        rows = [(w, n, chosen[w.key], float(p)) for (w, n), p in zip(wl, preds)]
        return sorted(rows, key=lambda r: -r[1] * r[3])

    def predicted_latency(self, genome: Genome) -> tuple[float, float, int]:
        """(calibrated whole-model seconds, kernel sum seconds, kernel calls)."""
        rows = self.kernel_latencies(genome)
        kernel_sum = sum(n * lat for _, n, _, lat in rows)
        calls = sum(n for _, n, _, _ in rows)
        return self.calibration(kernel_sum, calls), kernel_sum, calls

    def recalibrate(self, measured: Sequence[tuple[Genome, float]]) -> None:
        """Refit the whole-model calibration on ``(genome, measured seconds)`` with today's kernel predictions."""
        sums, calls, lats = [], [], []
        for genome, seconds in measured:
            _, s, c = self.predicted_latency(genome)
            sums.append(s)
            calls.append(c)
            lats.append(seconds)
        self.calibration.fit(sums, calls, lats)

    # ---- objectives ----------------------------------------------------------------------------------------
    def evaluate(self, genomes: Sequence[Genome]) -> list[Evaluation]:
        graphs = [self.graph(g) for g in genomes]
        errors = self.fidelity.errors([g.arch for g in genomes], graphs)
        out = []
        for genome, (error, source) in zip(genomes, errors):
            latency, kernel_sum, calls = self.predicted_latency(genome)
            memory, params, flops = self.static_costs(genome)
            out.append(Evaluation(genome, float(error), source, latency, kernel_sum, calls, memory, params, flops))
        return out

    def constraint_values(self, ev: Evaluation) -> list[float]:
        g = []
        if self.latency_max_ms is not None:
            g.append(ev.latency_s * 1e3 - self.latency_max_ms)
        if self.memory_max_mb is not None:
            g.append(ev.memory_bytes / 2**20 - self.memory_max_mb)
        return g
