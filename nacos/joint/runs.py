"""Assembling one search run (joint, or the NAS stage of the two-stage baseline) from a configuration.

A :class:`RunContext` owns the run's database (schedule measurements + ``opt_`` tables in one SQLite file), the
build/run workers, the kernel latency model, the accuracy oracle and fidelity, the evaluator and the front
measurer; ``close()`` releases the workers and the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nacos.joint.genome import DEFAULT, TUNED, JointGenome


ELAPSED_SAVE_S = 5.0  # how often a search saves the wall time it has used


@dataclass(frozen=True)
class OptimizeConfig:
    space: str = "hyt"
    dataset: str = "digits"
    model: str | None = None            # an ONNX file: search its GOS operator rewrites instead of a space
    target: str = "host"
    fidelity: str = "predictor"         # train | predictor | proxy
    epochs: int = 2                     # training epochs (search fidelity and reported accuracy)
    budget_minutes: float = 4.0         # wall clock of the search itself
    latency_max_ms: float | None = None
    memory_max_mb: float | None = None
    population: int = 12
    slots: int = 6                      # schedule genes (the costliest kernels' schedules)
    menu_size: int = 6                  # choices per schedule gene: default, tuned, 4 fixed points
    measure_per_generation: int = 3     # front members measured for real per generation
    tune_trials: int = 8                # kernel measurements spent tuning each measured member's kernels
    top_kernels: int = 4                # kernels tuned/measured per measured member
    seed: int = 0
    compare_default: bool = True        # time each front member against its default schedules (side by side)
    baseline: bool = False              # also run the two-stage baseline with the same wall budget
    baseline_nas_fraction: float = 0.5  # share of the baseline's budget spent on NAS (the rest tunes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunContext:
    def __init__(self, cfg: OptimizeConfig, out: Path, db_path: Path, run: str, schedule_genes: bool,
                 tune: bool, space=None, dataset=None, teacher=None) -> None:
        from nacos import data as data_mod
        from nacos import spaces
        from nacos.joint.evaluate import Evaluator
        from nacos.joint.fidelity import AccuracyOracle
        from nacos.joint.fidelity import create as create_fidelity
        from nacos.joint.front import FrontMeasurer
        from nacos.joint.store import RunStore
        from nacos.targets import create as create_target
        from schedules.database import Database
        from schedules.latency_model import KernelLatencyModel

        self.cfg, self.out, self.run = cfg, Path(out), run
        self.target = create_target(cfg.target)
        self.tkey = self.target.key()
        self.dataset = dataset if dataset is not None else data_mod.load(cfg.dataset)
        self.space = space if space is not None else spaces.create(cfg.space)
        self.db = Database(db_path)
        self.store = RunStore(str(db_path), run)
        self.genome = (JointGenome(self.space, cfg.slots, cfg.menu_size, TUNED) if schedule_genes
                       else JointGenome(self.space, 0, 2, DEFAULT))
        self.oracle = AccuracyOracle(self.dataset, self.store, cfg.epochs, cfg.seed, teacher)
        kw = {"warmup": cfg.population, "seed": cfg.seed} if cfg.fidelity == "predictor" else {}
        self.fidelity = create_fidelity(cfg.fidelity, self.oracle, self.space, **kw)
        self.latency_model = KernelLatencyModel(seed=cfg.seed)
        self.latency_model.fit(self.db, self.tkey)
        self.evaluator = Evaluator(self.genome, self.dataset, self.fidelity, self.latency_model, self.db, self.tkey,
                                   cfg.latency_max_ms, cfg.memory_max_mb, graph_seed=cfg.seed)
        self._builder = self._runner = None
        self.measurer = FrontMeasurer(self.evaluator, self.oracle, self.out, self.builder, self.runner,
                                      cfg.tune_trials if tune else 0, cfg.top_kernels, cfg.seed)
        self.started = time.time()
        self.elapsed_before = float(self.store.get_meta("elapsed", 0.0))

    # workers start on first use (a resumed run that only writes its report never starts them)
    @property
    def builder(self):
        return _Lazy(self, "_builder", "schedules.measure", "LocalBuilder")

    @property
    def runner(self):
        return _Lazy(self, "_runner", "schedules.runner", "LocalRunner")

    def elapsed(self) -> float:
        return self.elapsed_before + (time.time() - self.started)

    def save_elapsed(self) -> None:
        self.store.set_meta("elapsed", self.elapsed())

    def search(self, deadline: float, show):
        """Run (or continue, from ``OUT/checkpoint.pkl``) the ask/tell loop until ``deadline`` (epoch seconds);
        elapsed time is saved at every progress event so a resumed run gets only what is left."""
        from nacos.joint.search import SearchLoop, load_checkpoint

        def on_progress(**kw):
            self.save_elapsed()
            show.update(self.elapsed(), **kw)

        loop = SearchLoop(self.genome, self.evaluator, self.measurer, self.store, self.out, self.cfg.population,
                          self.cfg.measure_per_generation, self.cfg.seed, deadline, on_progress)
        # a generation's trainings run long between progress events: the clock is saved every few seconds too,
        # so a run killed mid-generation does not give its resumption that time again
        stop = threading.Event()
        clock = threading.Thread(target=self._save_elapsed_every, args=(ELAPSED_SAVE_S, stop), daemon=True)
        clock.start()
        try:
            state = loop.run(load_checkpoint(self.out))
        finally:
            stop.set()
            clock.join()
        self.save_elapsed()
        return state

    def _save_elapsed_every(self, seconds: float, stop: threading.Event) -> None:
        from nacos.joint.store import RunStore

        store = RunStore(self.store.path, self.run)  # a connection of this thread's own
        try:
            while not stop.wait(seconds):
                store.set_meta("elapsed", self.elapsed())
        finally:
            store.close()

    def close(self) -> None:
        for part in (self._builder, self._runner):
            if part is not None:
                part.close()
        self.db.close()
        self.store.close()


class _Lazy:
    """A builder/runner created on first attribute access (workers cost a TVM import each)."""

    def __init__(self, ctx: RunContext, slot: str, module: str, cls: str) -> None:
        self._ctx, self._slot, self._module, self._cls = ctx, slot, module, cls

    def _get(self):
        obj = getattr(self._ctx, self._slot)
        if obj is None:
            import importlib

            obj = getattr(importlib.import_module(self._module), self._cls)()
            setattr(self._ctx, self._slot, obj)
        return obj

    def __getattr__(self, name: str):
        return getattr(self._get(), name)
