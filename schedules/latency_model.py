"""An absolute kernel latency predictor: seconds for any (workload, schedule point), measured or not.

The joint optimizer compares *networks*, so it needs a kernel's latency in seconds — also for kernels of a candidate
architecture that nobody has measured yet. :class:`schedules.cost_model.XGBModel` cannot give that: it learns
per-workload normalized throughput, which orders the schedules of one kernel but says nothing about how two kernels
compare. This model predicts, in order of trust:

1. the **measurement**, when this exact (workload key, point) was measured (median over repeats);
2. the **roofline** ``max(flops / peak, bytes / bandwidth) + overhead`` times ``exp(residual)``, where the residual
   ``log latency − log roofline`` is learned by XGBoost from :mod:`schedules.features` — learning a residual over a
   physical prior, not raw log latency, is what lets a few hundred measurements generalize to unseen shapes, since
   the size of the kernel is already explained by the prior and only the schedule's efficiency is left to learn;
3. plus a per-workload **bias**: the mean log error of (2) over a measured workload's points, so its unmeasured
   points inherit what was seen on that very kernel (the effect a global model averages away).

Below ``min_samples`` measurements no booster is trained and (2) is the bare roofline, still corrected by (3).
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

import numpy as np

from schedules.features import FEATURE_NAMES, extract_many
from schedules.measure import MeasureInput, MeasureResult
from schedules.space import Point
from schedules.workload import Workload

# Priors for one core of a recent x86 (AVX2, ~3 GHz), used only until measurements correct them:
# 2 FMA pipes × 8 fp32 lanes × 2 FLOP × 3 GHz ≈ 96 GFLOP/s peak, of which compiled kernels reach about half;
# one core streams ~15–25 GB/s from DRAM; a packed-function call plus thread-pool wake-up costs a few µs.
PEAK_GFLOPS = 50.0
BANDWIDTH_GBS = 20.0
OVERHEAD_S = 2e-6
MIN_SECONDS = 1e-9         # floor on every prediction: the optimizer divides and takes logs of these
_CACHE_LIMIT = 200_000     # feature rows kept; a long search would otherwise grow the cache without bound


def _bytes(w: Workload) -> float:
    return float(sum(t.nbytes for t in w.input_types()) + w.output_type().nbytes)


class KernelLatencyModel:
    """Absolute latency (seconds) of ``(Workload, Point)`` pairs; see the module docstring.

    >>> m = KernelLatencyModel(); m.fit(Database("tune.db"))
    >>> m.predict([(w, p) for p in points])           # np.ndarray of seconds, finite and > 0
    >>> m.source(w, p)                                # "measured" | "model" | "roofline"
    """

    def __init__(self, min_samples: int = 32, seed: int = 0, nthread: int = 1, peak_gflops: float | None = None,
                 bandwidth_gbs: float | None = None, overhead_s: float | None = None, rounds: int = 150,
                 max_depth: int = 4, eta: float = 0.1) -> None:
        self.min_samples, self.seed, self.nthread = min_samples, seed, nthread
        self.peak = (peak_gflops or PEAK_GFLOPS) * 1e9
        self.bandwidth = (bandwidth_gbs or BANDWIDTH_GBS) * 1e9
        self.overhead = OVERHEAD_S if overhead_s is None else overhead_s
        self.rounds, self.max_depth, self.eta = rounds, max_depth, eta
        self._workloads: dict[str, Workload] = {}
        self._measured: dict[tuple[str, str], list[float]] = {}   # (key, point json) -> latencies
        self._points: dict[tuple[str, str], Point] = {}
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self._roof: dict[str, tuple[float, float, float]] = {}    # key -> (roofline s, log2 bytes, log2 intensity)
        self._bias: dict[str, float] = {}
        self._booster = None

    # ---- the prior -------------------------------------------------------------------------------------------
    def _roof_row(self, w: Workload) -> tuple[float, float, float]:
        found = self._roof.get(w.key)
        if found is None:
            flops, nbytes = float(w.flops), max(_bytes(w), 1.0)
            seconds = max(flops / self.peak, nbytes / self.bandwidth) + self.overhead
            found = (max(seconds, MIN_SECONDS), math.log2(nbytes), math.log2(max(flops, 1.0) / nbytes))
            self._roof[w.key] = found
        return found

    def roofline(self, workload: Workload) -> float:
        """``max(flops / peak, bytes / bandwidth) + overhead`` in seconds; bytes: every input and the output once."""
        return self._roof_row(workload)[0]

    # ---- training data ---------------------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        """Distinct measured (workload, point) pairs the model knows."""
        return len(self._measured)

    def _add(self, w: Workload, r: MeasureResult) -> None:
        if not r.ok or not math.isfinite(r.latency) or r.latency <= 0:
            return  # a failed schedule has no latency to learn; the search keeps failures out on its own
        self._workloads.setdefault(w.key, w)
        k = (w.key, r.point.to_json())
        self._measured.setdefault(k, []).append(float(r.latency))
        self._points[k] = r.point

    def fit(self, db, target: str | None = None) -> "KernelLatencyModel":
        """Retrain from scratch on every successful record in ``db`` (a :class:`schedules.database.Database`)
        whose workload has ``target`` (all targets when None); what :meth:`update` added before is dropped."""
        self._workloads.clear()
        self._measured.clear()
        self._points.clear()
        for w in db.workloads(target):
            for r in db.records(w, ok_only=True):
                self._add(w, r)  # db records carry one estimate per point, the median of its repeats
        self._train()
        return self

    def update(self, records: Iterable, workloads: Iterable[Workload] = ()) -> None:
        """Add measurements and refit. Each item is a ``MeasureResult`` of a workload the model already knows
        (from :meth:`fit`, an earlier update, or ``workloads``) — results carry only the workload key — or an
        ``(MeasureInput | Workload, MeasureResult)`` pair. Failed results are skipped."""
        for w in workloads:
            self._workloads.setdefault(w.key, w)
        for item in records:
            if isinstance(item, MeasureResult):
                w = self._workloads.get(item.workload_key)
                if w is None:
                    raise ValueError(f"measurement of unknown workload {item.workload_key}: pass the workload "
                                     "in `workloads=` or the record as a (MeasureInput, MeasureResult) pair")
                self._add(w, item)
            else:
                src, r = item
                self._add(src.workload if isinstance(src, MeasureInput) else src, r)
        self._train()

    # ---- features --------------------------------------------------------------------------------------------
    def _rows(self, pairs: Sequence[tuple[Workload, Point]], keys: Sequence[tuple[str, str]]) -> np.ndarray:
        """Feature rows (``FEATURE_NAMES`` then log2 bytes and log2 FLOP/byte, which the prior needs but
        :mod:`schedules.features` lacks), extracting only the pairs not cached yet, in one batch."""
        if len(self._features) + len(keys) > _CACHE_LIMIT:
            self._features.clear()
        missing = {}
        for pair, k in zip(pairs, keys):
            if k not in self._features and k not in missing:
                missing[k] = pair
        if missing:
            feats = extract_many(list(missing.values()))
            for (k, (w, _)), row in zip(missing.items(), feats):
                _, log_bytes, log_intensity = self._roof_row(w)
                self._features[k] = np.append(row, np.float32([log_bytes, log_intensity]))
        if not keys:
            return np.zeros((0, len(FEATURE_NAMES) + 2), dtype=np.float32)
        return np.stack([self._features[k] for k in keys])

    # ---- training ----------------------------------------------------------------------------------------------
    def _params(self) -> dict:
        # shallow, subsampled trees: a few hundred rows of ~20 workloads overfit deep trees to those workloads
        return {"objective": "reg:squarederror", "eta": self.eta, "max_depth": self.max_depth,
                "min_child_weight": 2, "subsample": 0.8, "colsample_bytree": 0.8, "lambda": 1.0,
                "nthread": self.nthread, "seed": self.seed, "verbosity": 0, "tree_method": "hist"}

    def _train(self) -> None:
        self._booster, self._bias = None, {}
        if not self._measured:
            return
        keys = list(self._measured)
        pairs = [(self._workloads[k[0]], self._points[k]) for k in keys]
        log_lat = np.log([statistics.median(self._measured[k]) for k in keys])
        log_roof = np.log([self._roof_row(w)[0] for w, _ in pairs])
        if len(keys) >= self.min_samples:
            import xgboost as xgb

            x = self._rows(pairs, keys)
            self._booster = xgb.train(self._params(), xgb.DMatrix(x, label=log_lat - log_roof),
                                      num_boost_round=self.rounds)
            log_pred = log_roof + self._booster.predict(xgb.DMatrix(x))
        else:
            log_pred = log_roof
        err: dict[str, list[float]] = {}
        for (key, _), e in zip(keys, log_lat - log_pred):
            err.setdefault(key, []).append(float(e))
        self._bias = {key: float(np.mean(v)) for key, v in err.items()}

    # ---- prediction --------------------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[Workload, Point]]) -> np.ndarray:
        """Seconds per ``(Workload, Point)`` pair (or ``MeasureInput``): the measurement if this exact pair was
        measured, else the (bias-corrected) model."""
        pairs = [(p.workload, p.point) if isinstance(p, MeasureInput) else p for p in pairs]
        out = np.empty(len(pairs), dtype=np.float64)
        todo, todo_keys, todo_at = [], [], []
        for n, (w, p) in enumerate(pairs):
            k = (w.key, p.to_json())
            lat = self._measured.get(k)
            if lat:
                out[n] = statistics.median(lat)
            else:
                todo.append((w, p))
                todo_keys.append(k)
                todo_at.append(n)
        if todo:
            log = np.log([self._roof_row(w)[0] for w, _ in todo])
            log += np.array([self._bias.get(w.key, 0.0) for w, _ in todo])
            if self._booster is not None:
                import xgboost as xgb

                log += self._booster.predict(xgb.DMatrix(self._rows(todo, todo_keys)))
            out[todo_at] = np.exp(log)
        # a NaN/inf from a degenerate feature row must not poison the optimizer's sums: fall back to the prior
        bad = ~np.isfinite(out) | (out <= 0)
        for n in np.flatnonzero(bad):
            out[n] = self._roof_row(pairs[n][0])[0]
        return np.maximum(out, MIN_SECONDS)

    def source(self, workload: Workload, point: Point) -> str:
        """Where :meth:`predict` gets this pair's latency: ``"measured"``, ``"model"`` or ``"roofline"``."""
        if (workload.key, point.to_json()) in self._measured:
            return "measured"
        return "model" if self._booster is not None else "roofline"
