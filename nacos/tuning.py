"""``nacos.tune``: search schedules for every kernel of a model, remembering every measurement in a database.

    report = nacos.tune(graph, trials=200, db="tune.db")
    model = nacos.compile(graph, schedules=Database("tune.db").schedules(graph))   # or: nacos compile --db

The budget counts the measurements the database already holds for the model's kernels, so rerunning an
interrupted tune resumes it, and kernels shared with earlier models start from their measurements.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ir.graph import Graph


@dataclass(frozen=True)
class TaskReport:
    name: str
    workload: str          # workload key in the database
    count: int             # kernels of the model with this workload
    flops: int
    default_latency: float | None
    best_latency: float | None
    trials: int
    new: int
    failures: int
    best_schedule: str | None

    @property
    def speedup(self) -> float | None:
        if self.default_latency and self.best_latency:
            return self.default_latency / self.best_latency
        return None


@dataclass(frozen=True)
class TuneReport:
    graph: str
    graph_hash: str
    db: str
    target: str
    trials: int
    new_measurements: int
    seconds: float
    tasks: tuple[TaskReport, ...]

    @property
    def default_latency(self) -> float | None:
        """Sum over kernels of the default schedule's latency (None until every kernel has one)."""
        vals = [t.default_latency * t.count for t in self.tasks if t.default_latency is not None]
        return sum(vals) if len(vals) == len(self.tasks) else None

    @property
    def tuned_latency(self) -> float | None:
        vals = [t.best_latency * t.count for t in self.tasks if t.best_latency is not None]
        return sum(vals) if len(vals) == len(self.tasks) else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = [dict(asdict(t), speedup=t.speedup) for t in self.tasks]
        d["default_latency"], d["tuned_latency"] = self.default_latency, self.tuned_latency
        return d


def tune(graph: Graph, trials: int = 64, db: Any = "nacos-tune.db", target: Any = None, runner: Any = None,
         builder: Any = None, cost_model: Any = "xgb", batch_size: int = 8, seed: int = 0,
         progress: bool = False, layout: str | None = None, screen: int = 1) -> TuneReport:
    """Tune the schedules of ``graph``'s kernels for ``target`` (default: this CPU).

    ``trials`` is the number of measurements wanted for the model's distinct kernels in all, those already in
    ``db`` (a path or :class:`schedules.database.Database`) included; they are shared out by each kernel's
    estimated share of the latency. ``runner`` defaults to a local runner (``schedules.rpc.RPCRunner`` measures
    a remote board); ``cost_model`` is ``"xgb"``, ``"xgb-compiled"``, ``"random"`` or a
    :class:`schedules.cost_model.CostModel`. ``screen`` > 1 with ``"xgb-compiled"`` builds that many times each
    round's candidates and measures those the model ranks best from their machine code (docs/tuning.md).
    ``layout`` is the activation layout the model will be compiled with (:func:`schedules.fusion.kernel_graph`).
    A database keeps measurements of one cache mode: a runner with ``cache_flush`` into a database measured with
    warm caches (or the other way round) raises :class:`schedules.database.MixedCachesError` before measuring.
    """
    from ir.verify import verify
    from schedules.database import Database
    from schedules.tuner import tune_tasks
    from schedules.workload import target_key, unique_workloads

    verify(graph)
    t0 = time.perf_counter()
    tkey = target_key(target)
    workloads = unique_workloads(graph, tkey, layout)
    database = db if isinstance(db, Database) else Database(db)
    try:
        results = tune_tasks(workloads, trials, database, runner, builder, cost_model, batch_size, seed, progress,
                             screen=screen)
    finally:
        if database is not db:
            database.close()
    tasks = tuple(TaskReport(r.workload.name, r.workload.key, r.weight, r.workload.flops, r.default_latency,
                             r.best_latency, r.trials, r.new, r.failures,
                             r.best_point.to_json() if r.best_point else None) for r in results)
    return TuneReport(graph.name, graph.structural_hash(), str(database.path), tkey, trials,
                      sum(t.new for t in tasks), time.perf_counter() - t0, tasks)
