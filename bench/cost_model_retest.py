"""The retest view of bench/cost_model_quality.py: how far the held-out labels themselves can be trusted.

A database holds one measurement per schedule, taken whenever the tuner measured it. On a shared machine the same
schedule measures differently a minute later, so a model is scored against labels that carry that noise, and
even a perfect model scores below 1. This view measures how much: it re-measures the held-out schedules of one
split (``rounds`` interleaved rounds, so a change in the machine's load hits every point of a round alike) and
reports, per workload,

* the model's τ against the database labels (what the split view reports) and against the re-measured median;
* how well the labels agree with themselves: database label vs re-measured median, and one half of the rounds
  vs the other;
* the τ a perfect model would reach against either kind of label, estimated from those agreements under a
  Gaussian-noise model (Greiner's relation r = sin(πτ/2) between Kendall's τ and Pearson's r; the re-measured
  median's reliability from its halves' agreement by Spearman–Brown). An estimate, not a bound: latencies are
  not Gaussian, and the noise has bursts.

With ``--retest-reference`` each re-measurement is bracketed by a reference schedule and divided by it, which is
meant to cancel load changes that last seconds; the labels' agreement says how much it buys (on the suite, little:
docs/performance.md, *Retest*).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np


@contextlib.contextmanager
def workers(builder, runner):
    """The given builder and runner, or one local set for every workload of a view (closed afterwards)."""
    from schedules.measure import LocalBuilder
    from schedules.runner import LocalRunner

    own_builder, own_runner = builder is None, runner is None
    builder, runner = builder or LocalBuilder(), runner or LocalRunner()
    try:
        yield builder, runner
    finally:
        if own_builder:
            builder.close()
        if own_runner:
            runner.close()


def _r(tau: float) -> float:
    return math.sin(math.pi * tau / 2.0)


def _tau(r: float) -> float:
    return 2.0 / math.pi * math.asin(max(-1.0, min(1.0, r)))


def perfect_model_tau(labels_vs_retest: float, halves: float) -> tuple[float, float]:
    """(τ of a perfect model against the database labels, against the re-measured medians), from the τ between
    database labels and re-measured medians and the τ between the two halves of the re-measurement rounds."""
    r_half = _r(halves)
    if not r_half > 0:
        return float("nan"), float("nan")
    reliability = 2.0 * r_half / (1.0 + r_half)  # of the median of all rounds: twice the rounds of a half
    return _tau(_r(labels_vs_retest) / math.sqrt(reliability)), _tau(math.sqrt(reliability))


def retest_view(pairs: list, rounds: int, holdout: float, model_args: dict, seed: int = 0,
                builder=None, runner=None, target: str | None = None, referenced: bool = False) -> dict:
    """Train on split ``seed`` of ``pairs`` (:func:`schedules.cost_model.stratified_split`, the split view's), then
    re-measure every successful held-out schedule ``rounds`` times (≥ 2) and compare, per workload with ≥ 3
    points, the model and the labels as the module docstring says. Workloads of another target than ``target``
    (default this CPU's) cannot be measured here and are skipped. ``referenced``: every re-measurement is
    bracketed by a reference schedule (the workload's held-out point with the median database latency) and
    normalized by it (:func:`schedules.tuner.remeasure`), meant to cancel load changes that last seconds."""
    from scipy.stats import kendalltau

    from bench.cost_model_quality import make_model
    from schedules.cost_model import stratified_split
    from schedules.tuner import remeasure
    from schedules.workload import target_key

    if rounds < 2:
        raise ValueError("the retest view needs at least 2 rounds")
    host = target_key() if target is None else target
    train, test = stratified_split(pairs, holdout, seed)
    model = make_model(model_args, seed=seed)
    model.update([i for i, _ in train], [r for _, r in train])
    by_wl: dict = {}
    for inp, r in test:
        if r.ok:
            by_wl.setdefault(inp.workload.key, []).append((inp, r))
    per, skipped = {}, []
    with workers(builder, runner) as (builder, runner):
        for rows in by_wl.values():
            w = rows[0][0].workload
            if w.target != host:
                skipped.append(w.name)
                continue
            ref = sorted(rows, key=lambda row: row[1].latency)[len(rows) // 2][0].point if referenced else None
            lats = remeasure(w, [i.point for i, _ in rows], rounds, runner, builder, reference=ref)
            kept = [(i, r, lats[i.point]) for i, r in rows if len(lats[i.point]) == rounds]
            if len(kept) < 3:
                continue
            pred = np.asarray(model.predict([i for i, _, _ in kept]), dtype=np.float64)
            db = np.array([r.latency for _, r, _ in kept])
            runs = np.array([v for _, _, v in kept])  # points × rounds
            median = np.median(runs, axis=1)
            halves = kendalltau(np.median(runs[:, 0::2], axis=1), np.median(runs[:, 1::2], axis=1)).statistic
            agree = kendalltau(db, median).statistic
            on_db, on_retest = perfect_model_tau(agree, halves)
            per[w.name] = {
                "points": len(kept),
                "model_vs_db_labels": kendalltau(pred, -db).statistic,
                "model_vs_retest": kendalltau(pred, -median).statistic,
                "db_labels_vs_retest": agree,
                "halves_agree": halves,
                "perfect_model_vs_db_labels": on_db,
                "perfect_model_vs_retest": on_retest}
            print(f"  retest: {w.name[:60]} {len(kept)} points, model tau {per[w.name]['model_vs_retest']:.3f}, "
                  f"labels agree {agree:.3f}", flush=True)
    keys = ("model_vs_db_labels", "model_vs_retest", "db_labels_vs_retest", "halves_agree",
            "perfect_model_vs_db_labels", "perfect_model_vs_retest")
    out = {key: float(np.nanmean([v[key] for v in per.values()])) if per else float("nan") for key in keys}
    out.update(seed=seed, rounds=rounds, referenced=referenced, train=len(train),
               points=sum(v["points"] for v in per.values()), workloads=len(per), per_workload=per,
               skipped_other_target=skipped)
    return out


def retest_line(r: dict) -> str:
    how = " against a reference" if r.get("referenced") else ""
    return (f"retest ({r['points']} held-out schedules of split {r['seed']} re-measured {r['rounds']}x{how}, "
            f"{r['workloads']} wl): model tau {r['model_vs_db_labels']:.3f} vs database labels, "
            f"{r['model_vs_retest']:.3f} vs re-measured medians; the labels agree with their re-measurement to "
            f"tau {r['db_labels_vs_retest']:.3f}, halves of the rounds to {r['halves_agree']:.3f}; a perfect model "
            f"would reach ~{r['perfect_model_vs_db_labels']:.3f} vs database labels, "
            f"~{r['perfect_model_vs_retest']:.3f} vs re-measured medians (Gaussian-noise estimate)")
