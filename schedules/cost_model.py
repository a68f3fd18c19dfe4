"""Learned cost models: rank candidate schedules of a workload before measuring them.

A model has four methods — ``update(candidates, results)`` (online: called after every measured batch),
``predict(candidates)`` (a score per candidate, higher = faster; only the order within one workload matters),
``save(path)`` and ``load(path)`` — and is made by ``create(kind)``: ``"xgb"`` (XGBoost, ``rank:pairwise``
grouped by workload, on :mod:`schedules.features`) or ``"random"``. The xgb model predicts randomly until it
has ``warmup`` successful measurements, like MetaSchedule's. :func:`ranking_quality` reports Kendall τ and
top-k recall on held-out measurements.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import threading
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
    """XGBoost ranker. Labels are per-workload relative speeds (best latency / latency; failures 0)."""

    def __init__(self, warmup: int = 8, rounds: int = 40, seed: int = 0, nthread: int = 1) -> None:
        self.warmup, self.rounds, self.seed, self.nthread = warmup, rounds, seed, nthread
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
        self._x.extend(extract_many(candidates))
        self._lat.extend(r.latency if r.ok else float("inf") for r in results)
        self._group.extend(c.workload.key for c in candidates)
        self._fit()

    def _labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lat = np.asarray(self._lat, dtype=np.float64)
        groups = np.asarray(self._group)
        keys, qid = np.unique(groups, return_inverse=True)
        y = np.zeros(len(lat))
        for q in range(len(keys)):
            sel = qid == q
            ok = sel & np.isfinite(lat)
            if ok.any():
                y[ok] = lat[ok].min() / lat[ok]
        order = np.argsort(qid, kind="stable")  # xgboost wants rows grouped by query id
        return order, y, qid

    def _fit(self) -> None:
        if self.samples < self.warmup:
            return
        import xgboost as xgb

        order, y, qid = self._labels()
        x = np.stack(self._x)[order]
        dtrain = xgb.DMatrix(x, label=y[order], qid=qid[order])
        params = {"objective": "rank:pairwise", "eta": 0.2, "max_depth": 6, "min_child_weight": 1,
                  "subsample": 1.0, "nthread": self.nthread, "seed": self.seed, "verbosity": 0,
                  "tree_method": "hist"}
        self._booster = xgb.train(params, dtrain, num_boost_round=self.rounds)

    def predict(self, candidates) -> np.ndarray:
        if self._booster is None:
            return self._rng.random(len(candidates))
        import xgboost as xgb

        return self._booster.predict(xgb.DMatrix(extract_many(candidates)))

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


# ---- quality -------------------------------------------------------------------------------------------------
def ranking_quality(model: CostModel, inputs: Sequence[MeasureInput], results: Sequence[MeasureResult],
                    k: int = 5) -> dict:
    """Kendall τ (predicted score vs −latency) and top-k recall (the share of the truly fastest k found in the
    predicted top k; k shrinks to half of a small workload's points) per workload, averaged."""
    from scipy.stats import kendalltau

    ok = [(i, r) for i, r in zip(inputs, results) if r.ok]
    by_wl: dict[str, list] = {}
    for i, r in ok:
        by_wl.setdefault(i.workload.key, []).append((i, r))
    taus, weights, recalls = [], [], []
    for rows in by_wl.values():
        if len(rows) < 3:
            continue
        pred = model.predict([i for i, _ in rows])
        lat = np.array([r.latency for _, r in rows])
        tau = kendalltau(pred, -lat).statistic
        if np.isfinite(tau):
            taus.append(tau)
            weights.append(len(rows))
        kk = min(k, max(1, len(rows) // 2))  # with fewer than 2k points the top k would be most of them
        recalls.append(len(set(np.argsort(-pred)[:kk]) & set(np.argsort(lat)[:kk])) / kk)
    return {"kendall_tau": float(np.average(taus, weights=weights)) if taus else float("nan"),
            "top_k_recall": float(np.mean(recalls)) if recalls else float("nan"),
            "k": k, "workloads": len(recalls), "measurements": len(ok)}


def holdout_quality(db, kind: str = "xgb", holdout: float = 0.3, k: int = 5, seed: int = 0,
                    target: str | None = None) -> dict:
    """Train a fresh ``kind`` model on a random ``1 - holdout`` of every workload's measurements in ``db`` and
    report :func:`ranking_quality` on the rest."""
    rng = random.Random(seed)
    train_in, train_res, test_in, test_res = [], [], [], []
    for w in db.workloads(target):
        for r in db.records(w):
            dst_in, dst_res = (test_in, test_res) if rng.random() < holdout else (train_in, train_res)
            dst_in.append(MeasureInput(w, r.point))
            dst_res.append(r)
    model = create(kind, seed=seed)
    model.update(train_in, train_res)
    out = ranking_quality(model, test_in, test_res, k)
    out.update(model=kind, train=len(train_in), test=len(test_in))
    return out
