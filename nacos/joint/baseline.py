"""The two-stage baseline: hardware-aware NAS on *default* schedules, then tuning of the networks it chose.

This is the usual practice the NACOS argument is against. With the same wall budget as the joint search:

1. NAS (``baseline_nas_fraction`` of the budget): the same NSGA-II, fidelity, accuracy training and front
   measurement as the joint search, but with no schedule genes, every kernel on its default schedule, and no
   tuning — networks are judged by the latency of untuned code (predicted by the same kernel latency model,
   their front measured for real);
2. tuning (the rest): the schedules of every kernel of the NAS front are searched (:func:`schedules.tuner.tune_tasks`,
   budget shared by estimated gain), then each front network is compiled with its best schedules and timed again.

It runs in its own database (``OUT/baseline.db``), so it never benefits from the joint search's measurements.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from nacos.joint.result import final_front
from nacos.joint.runs import OptimizeConfig, RunContext

RESERVE_PER_MEMBER_S = 12.0   # compile + time one re-measured network (what stage 2 keeps back from tuning)


def two_stage(cfg: OptimizeConfig, out: Path, ds, space, teacher, show) -> dict:
    from nacos.joint.api import BASELINE_DB, finish

    total = cfg.budget_minutes * 60
    nas_cfg = replace(cfg, tune_trials=0)
    bdir = out / "baseline"
    bdir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(nas_cfg, bdir, out / BASELINE_DB, "two-stage", schedule_genes=False, tune=False, space=space,
                     dataset=ds, teacher=teacher)
    try:
        show.start("two-stage", ctx.elapsed())
        start = time.time() - ctx.elapsed_before
        state = ctx.search(start + cfg.baseline_nas_fraction * total, show)
        rows = ctx.store.measured()
        front, _ = final_front(rows, cfg.latency_max_ms, cfg.memory_max_mb)
        deadline = start + total
        tuned = _tune_front(ctx, front, deadline - RESERVE_PER_MEMBER_S * len(front), show)
        final_rows = _remeasure(ctx, rows, front, show)
        payload = finish(ctx, "two-stage", state.generation, show, rows=final_rows)
        payload["stats"]["stage2_kernel_measurements"] = tuned
        payload["stats"]["nas_seconds"] = round(cfg.baseline_nas_fraction * total, 1)
        for m in payload["pareto"] + payload["measured"]:
            if m.get("artifact"):
                m["artifact"] = f"baseline/{m['artifact']}"
                m["onnx"] = f"baseline/{m['onnx']}"
        return payload
    finally:
        ctx.close()


def _tune_front(ctx: RunContext, front: list[dict], deadline: float, show) -> int:
    """Tune every kernel of the front networks, in rounds, until ``deadline``; the measurements it made."""
    from nacos.joint.search import genome_of
    from schedules.tuner import tune_tasks

    weights: dict = {}
    for r in front:
        for w, n in ctx.evaluator.workloads(genome_of(r, ctx.space.name)):
            weights[w.key] = (w, weights.get(w.key, (w, 0))[1] + n)
    tasks = list(weights.values())
    if not tasks:
        return 0
    before = ctx.db.count()
    show.note(f"two-stage: tuning {len(tasks)} kernels of {len(front)} front networks")
    step = max(8, len(tasks))
    while time.time() < deadline:
        have = sum(ctx.db.count(w) for w, _ in tasks)
        results = tune_tasks(tasks, have + step, ctx.db, ctx.runner, ctx.builder, "xgb", batch_size=4,
                             seed=ctx.cfg.seed, validate=False)
        if sum(r.trials for r in results) <= have:
            break  # nothing left to propose
        ctx.save_elapsed()
        show.update(ctx.elapsed())
    return ctx.db.count() - before


def _remeasure(ctx: RunContext, rows: list[dict], front: list[dict], show) -> list[dict]:
    """The rows with each front network re-compiled with its best tuned schedules and timed again."""
    from nacos.joint.genome import TUNED, JointGenome
    from nacos.joint.search import genome_of

    ctx.evaluator.genome = JointGenome(ctx.space, 0, 2, TUNED)  # every kernel: the database's best
    ctx.measurer.top_kernels = 0
    front_ids = {r["id"] for r in front}
    out = []
    for r in rows:
        if r["id"] not in front_ids:
            out.append(r)
            continue
        show.note(f"two-stage: re-measuring {r['id']} with tuned schedules")
        new = ctx.measurer.measure(genome_of(r, ctx.space.name), r["id"], r["latency_predicted_ms"] / 1e3)
        if new.get("latency_ms"):
            # stage 1 timed the same network with default schedules (at another time: finish() times both again,
            # side by side, and the report shows a default only next to the latency of the same rounds)
            new["latency_default_ms"] = r["latency_ms"]
            new["latency_predicted_ms"] = r["latency_predicted_ms"]
            new["key"] = r["key"]
            out.append(new)
        else:
            out.append(r)
    return out
