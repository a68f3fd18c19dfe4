"""Learned cost models: rank candidate schedules of a workload before measuring them.

A model has four methods — ``update(candidates, results)`` (online: called after every measured batch),
``predict(candidates)`` (a score per candidate, higher = faster; only the order within one workload matters),
``save(path)`` and ``load(path)`` — and is made by ``create(kind)``: ``"xgb"`` (XGBoost on :mod:`schedules.features`,
learning per-workload normalized log-throughput), ``"xgb-compiled"`` (the same, and the machine code of built
candidates: :mod:`schedules.compiled`) or ``"random"``. The xgb model predicts randomly until it
has ``warmup`` successful measurements, like MetaSchedule's. :func:`ranking_quality` reports Kendall τ and
top-k recall on held-out measurements.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import threading
from dataclasses import replace
from typing import Sequence

import numpy as np

from schedules.features import extract_many
from schedules.measure import MeasureInput, MeasureResult

_REGISTRY: dict[str, type] = {}


def register(kind: str):
    def deco(cls):
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls
    return deco


def create(kind: "str | CostModel" = "xgb", **kwargs) -> "CostModel":
    """A cost model by name (an instance is returned as is)."""
    if isinstance(kind, CostModel):
        return kind
    try:
        return _REGISTRY[kind](**kwargs)
    except KeyError:
        raise ValueError(f"unknown cost model {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None


class CostModel:
    kind = "base"

    def update(self, candidates: Sequence[MeasureInput], results: Sequence[MeasureResult]) -> None:
        raise NotImplementedError

    def predict(self, candidates: Sequence[MeasureInput]) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: str) -> None:
        raise NotImplementedError

    def load(self, path: str) -> None:
        raise NotImplementedError


@register("random")
class RandomModel(CostModel):
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def update(self, candidates, results) -> None:
        pass

    def predict(self, candidates) -> np.ndarray:
        return self.rng.random(len(candidates))

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"kind": self.kind}, f)

    def load(self, path: str) -> None:
        pass


@register("xgb")
class XGBModel(CostModel):
    """XGBoost on :mod:`schedules.features`. Targets are per-workload normalized log-throughputs,
    ``log2(best latency / latency)``, so that workloads of very different sizes share one model.

    Only successful measurements are ranking labels: a failure has no latency, and labelling it "slower than the
    slowest success" would invent an order (the tuner never proposes a measured point again, failed ones included).

    ``objective="reg:squarederror"`` (the default) fits the target with a **per-workload offset** (a fixed effect,
    passed to XGBoost as ``base_margin``): only the order within a workload matters, so the trees should not spend
    splits on telling workloads apart — whose normalized levels differ just by how good their best measured point
    happens to be. The offsets start at each workload's mean target and are re-estimated from the trees' residuals
    for ``fe_passes - 1`` more fits; ``fe_passes=0`` is the plain fit. bench/cost_model_quality.py, 10 stratified
    80/20 splits, paired against ``fe_passes=0``: on 28 project databases together (18 workloads with enough test
    points) per-workload τ +0.06 ± 0.03, pooled τ +0.01 ± 0.01, top-5 recall +0.03 ± 0.02 — the gain is on
    workloads with few points, whose "best so far" anchors the target poorly; on the kernel suite's 7 databases of
    128 points each ±0.01. The other way round on the synthetic latency model of tests/schedules (−0.04 ± 0.02):
    its schedule effects differ by workload, and a plain fit, which splits on the workload first, learns them
    per workload. A third pass changed nothing. ``"rank:pairwise"`` (LambdaMART pairs within a workload, rows grouped
    by query id) ranked as well on the kernel suite and worse (τ −0.05) on the mix. With enough samples the number
    of boosting rounds is chosen on a held-out fifth of the training rows (the best mean per-workload τ), then the
    model is refit on everything."""

    def __init__(self, warmup: int = 8, rounds: int = 400, seed: int = 0, nthread: int = 1,
                 objective: str = "reg:squarederror", eta: float = 0.1, max_depth: int = 5,
                 early_stopping: int = 40, fe_passes: int = 2) -> None:
        self.warmup, self.rounds, self.seed, self.nthread = warmup, rounds, seed, nthread
        self.objective, self.eta, self.max_depth, self.early_stopping = objective, eta, max_depth, early_stopping
        self.fe_passes = fe_passes
        self._x: list[np.ndarray] = []
        self._lat: list[float] = []          # seconds; inf for failures
        self._group: list[str] = []
        self._booster = None
        self._rng = np.random.default_rng(seed)
        # ``import xgboost`` takes ~3 s: start it now, in the background, while the workers start up
        threading.Thread(target=importlib.import_module, args=("xgboost",), daemon=True).start()

    @property
    def samples(self) -> int:
        return int(np.isfinite(self._lat).sum()) if self._lat else 0

    def update(self, candidates, results) -> None:
        if not candidates:
            return
        self._x.extend(self._features(candidates, results))
        self._lat.extend(r.latency if r.ok else float("inf") for r in results)
        self._group.extend(c.workload.key for c in candidates)
        self._fit()

    def _labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows of the successful measurements, grouped by workload; their normalized log-throughput; query id)."""
        lat = np.asarray(self._lat, dtype=np.float64)
        ok = np.isfinite(lat)
        keys, qid = np.unique(np.asarray(self._group), return_inverse=True)
        y = np.zeros(len(lat))
        for q in range(len(keys)):
            sel = (qid == q) & ok
            if sel.any():
                y[sel] = np.log2(lat[sel].min() / lat[sel])
        rows = np.flatnonzero(ok)
        rows = rows[np.argsort(qid[rows], kind="stable")]  # xgboost wants rows grouped by query id
        return rows, y[rows], qid[rows]

    def _params(self) -> dict:
        params = {"objective": self.objective, "eta": self.eta, "max_depth": self.max_depth,
                  "min_child_weight": 1, "subsample": 0.9, "colsample_bytree": 0.8, "nthread": self.nthread,
                  "seed": self.seed, "verbosity": 0, "tree_method": "hist"}
        if self.objective.startswith("rank:"):
            # every pair of a workload counts (the default "topk" keeps only pairs with the top documents)
            params.update(lambdarank_pair_method="mean", lambdarank_num_pair_per_sample=8)
        return params

    def _train(self, x: np.ndarray, y: np.ndarray, qid: np.ndarray, rounds: int, passes: int | None = None):
        """A booster for (x, y); regression objectives get the per-workload offsets (see the class docstring)."""
        import xgboost as xgb

        passes = self.fe_passes if passes is None else passes
        if self.objective.startswith("rank:") or passes == 0:  # 0: a plain fit, no offsets
            return xgb.train(self._params(), xgb.DMatrix(x, label=y, qid=qid), num_boost_round=rounds)
        offset = np.zeros(len(y))
        for q in np.unique(qid):
            offset[qid == q] = y[qid == q].mean()
        for k in range(passes):
            bst = xgb.train(self._params(), xgb.DMatrix(x, label=y, base_margin=offset), num_boost_round=rounds)
            if k + 1 < passes:  # offsets = mean residual of the trees alone, per workload
                resid = y - bst.predict(xgb.DMatrix(x), output_margin=True)
                for q in np.unique(qid):
                    offset[qid == q] = resid[qid == q].mean()
        return bst

    def _pick_rounds(self, x: np.ndarray, y: np.ndarray, qid: np.ndarray) -> int:
        """Boosting rounds with the best mean per-workload Kendall τ on a random fifth held out (early stopping
        on what the search needs: the order within a workload). One offset pass: this only picks a length."""
        import xgboost as xgb
        from scipy.stats import kendalltau

        val = np.random.default_rng(self.seed).random(len(y)) < 0.2
        bst = self._train(x[~val], y[~val], qid[~val], self.rounds, passes=min(1, self.fe_passes))
        dval = xgb.DMatrix(x[val])
        best, best_tau = self.rounds, -np.inf
        for k in range(self.early_stopping // 2, self.rounds + 1, self.early_stopping // 2):
            pred = bst.predict(dval, iteration_range=(0, k))
            taus = []
            for q in np.unique(qid[val]):
                sel = qid[val] == q
                if sel.sum() >= 3:
                    t = kendalltau(pred[sel], y[val][sel]).statistic
                    if np.isfinite(t):
                        taus.append(t)
            tau = float(np.mean(taus)) if taus else -np.inf
            if tau > best_tau + 1e-3:
                best, best_tau = k, tau
        return best

    def _fit(self) -> None:
        if self.samples < self.warmup:
            return
        rows, y, qid = self._labels()
        x = np.stack(self._x)[rows]
        rounds = self.rounds
        if self.early_stopping and len(y) >= 60:
            rounds = self._pick_rounds(x, y, qid)
        self._booster = self._train(x, y, qid, rounds)

    def predict(self, candidates) -> np.ndarray:
        if self._booster is None:
            return self._rng.random(len(candidates))
        import xgboost as xgb

        return self._booster.predict(xgb.DMatrix(self._features(candidates)))

    def _features(self, candidates, results=None) -> np.ndarray:
        return extract_many(candidates)

    def save(self, path: str) -> None:
        """``path`` (the booster, XGBoost JSON) and ``path + ".npz"`` (training data, to keep updating)."""
        if self._booster is not None:
            self._booster.save_model(path)
        elif os.path.exists(path):
            os.unlink(path)
        np.savez(path + ".npz", x=np.stack(self._x) if self._x else np.zeros((0, 0)),
                 lat=np.asarray(self._lat), group=np.asarray(self._group))

    def load(self, path: str) -> None:
        import xgboost as xgb

        data = np.load(path + ".npz")
        self._x = list(data["x"])
        self._lat = [float(v) for v in data["lat"]]
        self._group = [str(g) for g in data["group"]]
        self._booster = None
        if os.path.exists(path):
            self._booster = xgb.Booster()
            self._booster.load_model(path)


@register("xgb-compiled")
class CompiledXGBModel(XGBModel):
    """:class:`XGBModel` on the knob features *and* the machine code a candidate compiled to
    (:mod:`schedules.compiled`: the hottest loop's instructions, FMAs, loads, stores, spills and a cycle estimate).

    It ranks **built** candidates: those whose input (or result, in ``update``) carries ``compiled`` counts. The
    tuner builds more candidates than it measures and lets this model pick which to run (``screen``, see
    :class:`schedules.tuner.TaskScheduler`). Candidates without counts — proposals not built yet, or measurements of
    a database written before counts were kept — are ranked by a knob-features model trained alongside on the same
    measurements; training rows without counts still teach the main model their knob features (XGBoost treats the
    missing counts as missing values)."""

    reads_code = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.knobs = XGBModel(**kwargs)

    def update(self, candidates, results) -> None:
        self.knobs.update(candidates, results)
        super().update(candidates, results)

    def predict(self, candidates) -> np.ndarray:
        built = np.array([c.compiled is not None for c in candidates], dtype=bool)
        if self._booster is None or not built.any():
            return self.knobs.predict(candidates)
        if built.all():
            return super().predict(candidates)
        # a mixed batch: each candidate by the model that can read it (both predict the same normalized target)
        out = np.asarray(self.knobs.predict(candidates), dtype=np.float64)
        out[built] = super().predict([c for c, b in zip(candidates, built) if b])
        return out

    def _features(self, candidates, results=None) -> np.ndarray:
        from schedules.compiled import COMPILED_NAMES, compiled_features
        from schedules.features import INDEX

        knobs = extract_many(candidates)
        if not len(candidates):
            return np.zeros((0, knobs.shape[1] + len(COMPILED_NAMES)), dtype=np.float32)
        # a candidate's own counts (a built one), else its result's (a measured one)
        counts = [c.compiled or getattr(r, "compiled", None)
                  for c, r in zip(candidates, results if results is not None else [None] * len(candidates))]
        flops = np.exp2(knobs[:, INDEX["log_flops"]])  # the main stage's, as the knob features count them
        return np.hstack([knobs, np.stack([compiled_features(n, f) for n, f in zip(counts, flops)])])

    def save(self, path: str) -> None:
        super().save(path)
        self.knobs.save(path + ".knobs")

    def load(self, path: str) -> None:
        super().load(path)
        self.knobs.load(path + ".knobs")


# ---- quality -------------------------------------------------------------------------------------------------
def ranking_quality(model: CostModel, inputs: Sequence[MeasureInput], results: Sequence[MeasureResult],
                    k: int = 5) -> dict:
    """Kendall τ (predicted score vs −latency) and top-k recall (the share of the truly fastest k found in the
    predicted top k; k shrinks to half of a small workload's points) per workload.

    ``kendall_tau`` weights each workload's τ by its number of points, ``kendall_tau_mean`` does not, and
    ``kendall_tau_pooled`` counts concordant minus discordant pairs over all same-workload pairs together (scores
    of different workloads are never compared)."""
    from scipy.stats import kendalltau

    ok = [(i, r) for i, r in zip(inputs, results) if r.ok]
    by_wl: dict[str, list] = {}
    for i, r in ok:
        by_wl.setdefault(i.workload.key, []).append((i, r))
    taus, weights, recalls = [], [], []
    conc = disc = 0
    for rows in by_wl.values():
        if len(rows) < 3:
            continue
        pred = np.asarray(model.predict([i for i, _ in rows]), dtype=np.float64)
        lat = np.array([r.latency for _, r in rows])
        tau = kendalltau(pred, -lat).statistic
        if np.isfinite(tau):
            taus.append(tau)
            weights.append(len(rows))
        sp = np.sign(pred[:, None] - pred[None, :]) * np.sign(lat[None, :] - lat[:, None])
        conc += int((sp > 0).sum()) // 2
        disc += int((sp < 0).sum()) // 2
        kk = min(k, max(1, len(rows) // 2))  # with fewer than 2k points the top k would be most of them
        recalls.append(len(set(np.argsort(-pred)[:kk]) & set(np.argsort(lat)[:kk])) / kk)
    return {"kendall_tau": float(np.average(taus, weights=weights)) if taus else float("nan"),
            "kendall_tau_mean": float(np.mean(taus)) if taus else float("nan"),
            "kendall_tau_pooled": (conc - disc) / (conc + disc) if conc + disc else float("nan"),
            "top_k_recall": float(np.mean(recalls)) if recalls else float("nan"),
            "k": k, "workloads": len(recalls), "measurements": len(ok)}


def holdout_quality(db, kind: str = "xgb", holdout: float = 0.3, k: int = 5, seed: int = 0,
                    target: str | None = None, **model_args) -> dict:
    """Train a fresh ``kind`` model on ``1 - holdout`` of every workload's measurements in ``db`` and report
    :func:`ranking_quality` on the rest."""
    pairs = [(MeasureInput(w, r.point), r) for w in db.workloads(target) for r in db.records(w)]
    return holdout_pairs_quality(pairs, kind, holdout, k, seed, **model_args)


def stratified_split(pairs: Sequence[tuple[MeasureInput, MeasureResult]], holdout: float, seed: int,
                     limit: int | None = None) -> tuple[list, list]:
    """(train, test): each workload's pairs shuffled (``random.Random(seed)``, workloads in order of first
    appearance) and ``round(holdout · n)`` of them held out; ``limit`` keeps at most that many training pairs of
    each workload (the same test pairs whatever the limit)."""
    rng = random.Random(seed)
    by_wl: dict[str, list] = {}
    for pair in pairs:
        by_wl.setdefault(pair[0].workload.key, []).append(pair)
    train, test = [], []
    for rows in by_wl.values():
        rows = list(rows)
        rng.shuffle(rows)
        cut = round(holdout * len(rows))
        test += rows[:cut]
        train += rows[cut:] if limit is None else rows[cut:cut + limit]
    return train, test


def holdout_pairs_quality(pairs: Sequence[tuple[MeasureInput, MeasureResult]], kind: str = "xgb",
                          holdout: float = 0.3, k: int = 5, seed: int = 0, **model_args) -> dict:
    """:func:`holdout_quality` on ``(input, result)`` pairs (e.g. gathered from several databases).

    The split is stratified: each workload's points are shuffled and ``round(holdout · n)`` of them held out, so
    every workload is split in the same proportion (a per-row coin flip left some small workloads with no test
    point and others with most of their points in the test set). ``model_args`` go to :func:`create`."""
    train, test = stratified_split(pairs, holdout, seed)
    model = create(kind, seed=seed, **model_args)
    model.update([i for i, _ in train], [r for _, r in train])
    # a held-out point was built when it was measured: its machine code is known (models that read it use it)
    test_inputs = [i if i.compiled or not r.compiled else replace(i, compiled=r.compiled) for i, r in test]
    out = ranking_quality(model, test_inputs, [r for _, r in test], k)
    out.update(model=kind, train=len(train), test=len(test))
    return out
