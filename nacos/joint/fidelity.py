"""The error objective at the fidelity the user picks: trained, predicted or proxied.

``create(kind, oracle, space, ...)`` → a :class:`Fidelity` whose ``errors(archs, graphs)`` gives one error per
architecture (lower is better) and where it came from:

* ``train`` — every architecture is trained (``epochs`` on the data set) and its error is 1 − validation accuracy.
  Most faithful, slowest.
* ``predictor`` — the first architectures (``warmup``, one population) are trained; afterwards an XGBoost
  accuracy predictor (:mod:`nacos.predictor`) on the architecture encoding gives the error, and every network the
  search measures on the target is also trained, its accuracy feeding the predictor: the accuracy side of the
  "predict everything, check the front for real, update the model" loop the latency side follows.
* ``proxy`` — a training-free proxy (``naswot`` by default; :mod:`nacos.proxies`): the "error" is the negated
  score, comparable only within the run. Networks measured on the target are trained for their reported accuracy.

Validation accuracy drives the search; test accuracy is only reported. Trainings are cached by architecture hash
and training setting in the run store, so an architecture is trained once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ir.graph import Graph
from nacos.spaces.base import Arch, SearchSpace

FIDELITIES = ("train", "predictor", "proxy")


class AccuracyOracle:
    """Trains architectures (cached in the store) and keeps the last trained weights in memory."""

    def __init__(self, dataset, store, epochs: int = 2, seed: int = 0, teacher: Graph | None = None,
                 keep: int = 32) -> None:
        self.dataset, self.store, self.epochs, self.seed, self.teacher = dataset, store, int(epochs), int(seed), teacher
        # the teacher's structure is part of the setting: archids of two models' rewrite spaces can coincide
        kd = f"kd-{teacher.structural_hash()[:12]}" if teacher is not None else "ce"
        self.setting = f"{dataset.name}:e{self.epochs}:s{self.seed}:{kd}"
        self._weights: OrderedDict[str, Any] = OrderedDict()
        self.keep = keep
        self.seconds = 0.0

    def known(self, archid: str) -> dict | None:
        return self.store.accuracy(archid, self.setting)

    def train(self, arch: Arch, graph: Graph) -> dict:
        """The training record of ``arch`` (trained now unless the store has it)."""
        found = self.known(arch.archid)
        if found is None:
            self._train(arch, graph)
            found = self.known(arch.archid)
        return found

    def trained_graph(self, arch: Arch, graph: Graph) -> Graph:
        """``graph`` with trained weights (trained again, with the same seed, if they are no longer in memory)."""
        from nacos.train import with_weights

        weights = self._weights.get(arch.archid)
        if weights is None:
            weights = self._train(arch, graph)
        return with_weights(graph, weights)

    def _train(self, arch: Arch, graph: Graph):
        from nacos.train import TrainConfig, train

        t0 = time.perf_counter()
        result = train(graph, self.dataset, TrainConfig(epochs=self.epochs, seed=self.seed, progress=False),
                       teacher=self.teacher)
        self.seconds += time.perf_counter() - t0
        if self.known(arch.archid) is None:  # a retrain for the weights keeps the first record
            self.store.add_accuracy(arch.archid, self.setting, result.val_accuracy, result.test_accuracy,
                                    result.seconds, {"epochs": result.epochs, "best_epoch": result.best_epoch,
                                                     "arch": [list(kv) for kv in arch.values]})
        self._weights[arch.archid] = result.weights
        self._weights.move_to_end(arch.archid)
        while len(self._weights) > self.keep:
            self._weights.popitem(last=False)
        return result.weights


class Fidelity:
    kind = "base"

    def __init__(self, oracle: AccuracyOracle, space: SearchSpace) -> None:
        self.oracle, self.space = oracle, space

    def errors(self, archs: Sequence[Arch], graphs: Sequence[Graph]) -> list[tuple[float, str]]:
        raise NotImplementedError

    def refit(self) -> None:
        """Learn from the trainings done so far (the predictor fidelity retrains its model)."""


class TrainFidelity(Fidelity):
    kind = "train"

    def errors(self, archs, graphs):
        return [(1.0 - self.oracle.train(a, g)["val_accuracy"], "trained") for a, g in zip(archs, graphs)]


class PredictorFidelity(Fidelity):
    kind = "predictor"

    def __init__(self, oracle: AccuracyOracle, space: SearchSpace, warmup: int = 12, seed: int = 0) -> None:
        super().__init__(oracle, space)
        self.warmup, self.seed = int(warmup), int(seed)
        self._model = None
        self._archs: dict[str, Arch] = {}
        self.refit()

    def refit(self) -> None:
        from nacos import predictor

        rows = []
        for archid, acc in self.oracle.store.trained(self.oracle.setting):
            arch = self._archs.get(archid)
            if arch is None:  # trained in an earlier (resumed) process: rebuild it from the stored choices
                values = (self.oracle.known(archid) or {}).get("arch")
                if not values:
                    continue
                arch = self._archs[archid] = Arch(self.space.name, tuple((k, v) for k, v in values))
            rows.append((arch, acc))
        self._model = None
        if len(rows) >= 4:
            self._model = predictor.create("xgb", seed=self.seed).update(
                [self.space.encode(a) for a, _ in rows], [acc for _, acc in rows])

    def errors(self, archs, graphs):
        out: list[tuple[float, str] | None] = []
        for a, g in zip(archs, graphs):
            self._archs[a.archid] = a
            known = self.oracle.known(a.archid)
            if known is None and len(self.oracle.store.trained(self.oracle.setting)) < self.warmup:
                known = self.oracle.train(a, g)  # warm-up: the predictor needs real accuracies to start from
                self.refit()
            out.append((1.0 - known["val_accuracy"], "trained") if known is not None else None)
        todo = [i for i, o in enumerate(out) if o is None]
        if todo:
            if self._model is None:
                self.refit()
            enc = np.stack([self.space.encode(archs[i]) for i in todo])
            pred = self._model.predict(enc) if self._model is not None else np.full(len(todo), 0.5)
            for i, p in zip(todo, pred):
                out[i] = (1.0 - float(np.clip(p, 0.0, 1.0)), "predicted")
        return out  # type: ignore[return-value]


class ProxyFidelity(Fidelity):
    kind = "proxy"

    def __init__(self, oracle: AccuracyOracle, space: SearchSpace, proxy: str = "naswot", batch: int = 64) -> None:
        from nacos import proxies

        super().__init__(oracle, space)
        self.proxy = proxies.create(proxy)
        self.x = np.ascontiguousarray(oracle.dataset.train.x[:batch])
        self._cache: dict[str, float] = {}

    def errors(self, archs, graphs):
        out = []
        for a, g in zip(archs, graphs):
            if a.archid not in self._cache:
                score = self.proxy.score(g, self.x if self.proxy.needs_data else None)
                self._cache[a.archid] = -score if np.isfinite(score) else 1e9
            out.append((self._cache[a.archid], f"proxy:{self.proxy.name}"))
        return out


def create(kind: str, oracle: AccuracyOracle, space: SearchSpace, **kw: Any) -> Fidelity:
    if kind == "train":
        return TrainFidelity(oracle, space)
    if kind == "predictor":
        return PredictorFidelity(oracle, space, **kw)
    if kind == "proxy":
        return ProxyFidelity(oracle, space, **kw)
    raise ValueError(f"unknown fidelity {kind!r}; available: {', '.join(FIDELITIES)}")
