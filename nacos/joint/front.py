"""Measuring front members for real: train, tune their costliest kernels, compile, time, export.

For one individual the :class:`FrontMeasurer`

1. trains the network (its real accuracy; cached by architecture hash);
2. spends ``tune_trials`` schedule measurements on its ``top_kernels`` costliest kernels with the schedule
   search of :mod:`schedules.tuner` (joint search only: this is where the "tuned" menu entry improves), and
   measures the schedules the genome chose for those kernels, in the isolated build/run workers; every result
   lands in the schedule database, from which the kernel latency model is refitted;
3. compiles the trained network with the genome's schedules (after step 2, so "tuned" means the newest best),
   times the whole model with TVM's time evaluator and exports the artifact to ``OUT/members/<id>``.

A failure at any step is recorded in the row (``error``), never raised: one bad candidate must not end a search.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from nacos.joint.evaluate import Evaluator
from nacos.joint.genome import Genome
from schedules.space import DEFAULT_SCHEDULE, Point, space_for
from schedules.workload import workloads_from_graph


def schedule_provider(graph, chosen: dict[str, Point], target_key: str):
    """A ``schedules=`` callable for :func:`nacos.compile`: each group gets the point chosen for its workload."""
    by_output = {g.output: w for g, w in workloads_from_graph(graph, target_key)}
    used = {"tuned": 0, "fallback": 0}

    def provide(group, func):
        w = by_output.get(group.output)
        point = chosen.get(w.key, DEFAULT_SCHEDULE) if w is not None else DEFAULT_SCHEDULE
        if point == DEFAULT_SCHEDULE:
            return None
        try:
            mod = space_for(w).apply(func, point).mod
        except Exception:  # noqa: BLE001 — a point that does not apply: the default schedule instead
            used["fallback"] += 1
            return None
        used["tuned"] += 1
        return mod

    provide.used = used  # type: ignore[attr-defined]
    return provide


def time_model(compiled, x: np.ndarray, repeat: int = 7) -> float:
    """Median seconds per call (each repeat runs for at least 40 ms)."""
    return float(np.median(compiled.benchmark(x, number=1, repeat=repeat, min_repeat_ms=40)))


class FrontMeasurer:
    def __init__(self, evaluator: Evaluator, oracle, out: Path, builder=None, runner=None, tune_trials: int = 0,
                 top_kernels: int = 4, seed: int = 0) -> None:
        self.ev, self.oracle, self.out = evaluator, oracle, Path(out)
        self.builder, self.runner = builder, runner
        self.tune_trials, self.top_kernels, self.seed = int(tune_trials), int(top_kernels), seed
        self.x = np.ascontiguousarray(evaluator.dataset.test.x[:1], dtype=np.float32)
        self.kernel_measurements = 0
        self.compiled: dict = {}   # id → Compiled of this process (reloading artifacts makes TVM log per kernel)

    # ---- kernels ---------------------------------------------------------------------------------------------
    def _kernels(self, genome: Genome) -> None:
        from schedules.measure import MeasureInput, measure
        from schedules.tuner import tune_tasks

        db = self.ev.db
        kernels = self.ev.kernel_latencies(genome)
        top = kernels[: self.top_kernels]
        if self.tune_trials > 0 and top:
            before = sum(db.count(w) for w, *_ in top)
            tune_tasks([(w, n) for w, n, _, _ in top], before + self.tune_trials, db, self.runner, self.builder,
                       "xgb", batch_size=4, seed=self.seed, validate=False)
            self.kernel_measurements += sum(db.count(w) for w, *_ in top) - before
        # what the genes chose, measured: the costliest kernels' schedules, and every fixed menu point picked (an
        # unmeasured menu point can be many times slower than predicted; measuring it teaches the model)
        chosen = self.ev.schedules(genome)
        top_keys = {w.key for w, *_ in top}
        todo = []
        for w, *_ in kernels:
            point = chosen[w.key]
            # a non-default choice is only used once measured against the default (see Evaluator.schedules)
            wanted = [point, DEFAULT_SCHEDULE] if point != DEFAULT_SCHEDULE else \
                [DEFAULT_SCHEDULE] if w.key in top_keys else []
            todo += [(w, p) for p in wanted if db.latency(w, p) is None]
        if todo:
            for w, _ in todo:
                db.add_workload(w)
            for r in measure(self.builder, self.runner, [MeasureInput(w, p) for w, p in todo]):
                if db.add(r):
                    self.kernel_measurements += 1

    # ---- the whole model -------------------------------------------------------------------------------------
    def measure(self, genome: Genome, cid: str, predicted_s: float) -> dict[str, Any]:
        """The measured row of ``genome`` (``error`` set, latency None, when a step failed)."""
        import nacos
        from ir.exporters import to_onnx

        t0 = time.perf_counter()
        arch = genome.arch
        graph = self.ev.graph(genome)
        memory, params, flops = self.ev.static_costs(genome)
        row: dict[str, Any] = {"id": cid, "key": genome.key, "archid": arch.archid, "arch": arch.as_dict(),
                               "slots": list(genome.slots), "params": params, "memory_bytes": memory, "flops": flops,
                               "latency_predicted_ms": predicted_s * 1e3, "latency_ms": None, "error": None}
        try:
            record = self.oracle.train(arch, graph)
            row.update(accuracy=record["test_accuracy"], val_accuracy=record["val_accuracy"])
            self._kernels(genome)
            trained = self.oracle.trained_graph(arch, graph)
            chosen = self.ev.schedules(genome)
            provider = schedule_provider(trained, chosen, self.ev.target_key)
            compiled = nacos.compile(trained, schedules=provider)
            row["latency_ms"] = time_model(compiled, self.x) * 1e3
            row["kernels"] = len(compiled.kernels)
            row["tuned_kernels"] = provider.used["tuned"]
            names = {w.key: w.name for w, _ in self.ev.workloads(genome)}
            row["schedules"] = [{"kernel": names.get(k, k), "workload": k,
                                 "point": "default" if p == DEFAULT_SCHEDULE else p.to_json()}
                                for k, p in chosen.items()]
            member = self.out / "members" / cid
            if member.exists():
                shutil.rmtree(member)
            compiled.export(member)
            self.compiled[cid] = compiled
            to_onnx(trained, str(member / "model.onnx"))
            row["artifact"], row["onnx"] = f"members/{cid}", f"members/{cid}/model.onnx"
        except Exception as exc:  # noqa: BLE001 — a failed candidate is data, not the end of the search
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["traceback"] = traceback.format_exc(limit=4)
        row["seconds"] = time.perf_counter() - t0
        return row

    def remove_artifact(self, cid: str) -> None:
        path = self.out / "members" / cid
        if path.exists() and os.path.isdir(path):
            shutil.rmtree(path)
