"""Accuracy predictors on architecture encodings (``SearchSpace.encode``), with cross-validated rank quality.

A predictor is three methods, as a MetaSchedule cost model: ``update(encodings, accuracies)`` adds observations
and refits, ``predict(encodings)`` returns predicted accuracies, ``save``/``load`` keep the observations.
Until ``min_samples`` observations exist it predicts the mean (or 0), so a search can call it from the start.

* ``xgb`` — gradient-boosted trees (xgboost, imported inside the methods); shallow trees and row/column
  subsampling, since a search has tens, not thousands, of trained architectures.
* ``ridge`` — a linear baseline (scikit-learn), to show what the trees add.

``cross_validate(kind, encodings, accuracies, folds=5)`` gives the Kendall τ of out-of-fold predictions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from nacos.proxies import RankQuality, rank_quality


class Predictor:
    """Base: keeps the observations; subclasses implement ``_fit`` and ``_predict``."""

    kind = "base"

    def __init__(self, min_samples: int = 4, seed: int = 0) -> None:
        self.min_samples = int(min_samples)
        self.seed = int(seed)
        self.x = np.zeros((0, 0), np.float32)
        self.y = np.zeros(0, np.float64)
        self._model: Any = None

    def update(self, encodings: Sequence[Sequence[float]], accuracies: Sequence[float]) -> "Predictor":
        x = np.atleast_2d(np.asarray(encodings, np.float32))
        y = np.asarray(accuracies, np.float64).ravel()
        if len(x) != len(y):
            raise ValueError(f"{len(x)} encodings but {len(y)} accuracies")
        if self.x.size and x.shape[1] != self.x.shape[1]:
            raise ValueError(f"encodings have length {x.shape[1]}, earlier ones {self.x.shape[1]}")
        self.x = x if not self.x.size else np.concatenate([self.x, x])
        self.y = np.concatenate([self.y, y])
        self._model = self._fit(self.x, self.y) if len(self.y) >= self.min_samples else None
        return self

    def predict(self, encodings: Sequence[Sequence[float]]) -> np.ndarray:
        x = np.atleast_2d(np.asarray(encodings, np.float32))
        if self._model is None:  # warm-up: no ranking information yet
            return np.full(len(x), float(self.y.mean()) if len(self.y) else 0.0)
        return np.asarray(self._predict(self._model, x), np.float64)

    def save(self, path: str | os.PathLike) -> None:
        """The training points to ``path`` (written as given: ``np.savez`` alone would add ``.npz``)."""
        with open(path, "wb") as f:
            np.savez(f, x=self.x, y=self.y, kind=self.kind)

    def load(self, path: str | os.PathLike) -> "Predictor":
        with np.load(path) as f:
            saved = str(f["kind"]) if "kind" in f.files else self.kind
            if saved != self.kind:
                raise ValueError(f"{path}: a {saved!r} predictor's points, not {self.kind!r}'s: "
                                 f"load it with create({saved!r})")
            self.x, self.y = np.zeros((0, 0), np.float32), np.zeros(0, np.float64)
            if len(f["y"]):
                self.update(f["x"], f["y"])
        return self

    def _fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        raise NotImplementedError

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class XGBPredictor(Predictor):
    kind = "xgb"

    def __init__(self, n_estimators: int = 300, max_depth: int = 2, learning_rate: float = 0.05,
                 subsample: float = 0.8, colsample: float = 0.8, min_samples: int = 4, seed: int = 0) -> None:
        super().__init__(min_samples, seed)
        self.params = dict(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                           subsample=subsample, colsample_bytree=colsample)

    def _fit(self, x, y):
        import xgboost as xgb

        # few points: min_child_weight 1 and no extra regularisation beyond shallow, subsampled trees
        model = xgb.XGBRegressor(objective="reg:squarederror", min_child_weight=1.0, random_state=self.seed,
                                 n_jobs=1, **self.params)
        return model.fit(x, y)

    def _predict(self, model, x):
        return model.predict(x)


class RidgePredictor(Predictor):
    kind = "ridge"

    def __init__(self, alpha: float = 1.0, min_samples: int = 4, seed: int = 0) -> None:
        super().__init__(min_samples, seed)
        self.alpha = alpha

    def _fit(self, x, y):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.alpha).fit(x, y)

    def _predict(self, model, x):
        return model.predict(x)


_PREDICTORS = {"xgb": XGBPredictor, "ridge": RidgePredictor}


def available() -> list[str]:
    return sorted(_PREDICTORS)


def create(kind: str | Predictor = "xgb", **kw: Any) -> Predictor:
    if isinstance(kind, Predictor):
        return kind
    try:
        return _PREDICTORS[kind](**kw)
    except KeyError:
        raise ValueError(f"unknown predictor {kind!r}; available: {', '.join(available())}") from None


@dataclass(frozen=True)
class CVResult:
    """Out-of-fold predictions of a k-fold cross-validation and their rank quality against the truth."""

    kind: str
    folds: int
    quality: RankQuality
    predictions: tuple[float, ...] = field(repr=False)


def cross_validate(kind: str, encodings: Sequence[Sequence[float]], accuracies: Sequence[float], folds: int = 5,
                   seed: int = 0, **kw: Any) -> CVResult:
    """k-fold CV (shuffled with ``seed``): fit on k−1 folds, predict the held-out one; τ over all points."""
    x = np.asarray(encodings, np.float32)
    y = np.asarray(accuracies, np.float64)
    if not 2 <= folds <= len(y):  # one fold trains on nothing; more folds than points leave folds empty
        raise ValueError(f"folds={folds}: needs 2 ≤ folds ≤ the number of points ({len(y)})")
    order = np.random.default_rng(seed).permutation(len(y))
    pred = np.zeros(len(y))
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        model = create(kind, seed=seed, **kw).update(x[rest], y[rest])
        pred[part] = model.predict(x[part])
    return CVResult(kind, folds, rank_quality(pred, y), tuple(pred.tolist()))
