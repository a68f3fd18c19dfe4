"""How well the learned cost model ranks held-out measured schedules of real tuning databases.

    python bench/cost_model_quality.py DB [DB ...] [--seeds 5] [--holdout 0.2] [--k 5] [--json out.json]
                                       [--model-args '{"objective": "rank:pairwise"}'] [--no-per-db] [--no-cross]
                                       [--curve 24,48,96] [--random N [--random-seed S]]
                                       [--retest R [--retest-reference]]
    python bench/cost_model_quality.py --suite-trials 512 --suite-dir W [...]   # tune the kernel suite first

The views, each printed and written to ``--json``:

* **split** — per database and for all databases together: a fresh model trained on 80 % of every workload's
  points (stratified, :func:`schedules.cost_model.holdout_pairs_quality`) ranks the other 20 %; mean ± std over
  ``--seeds`` splits of the per-workload Kendall τ (``kendall_tau_mean``; only workloads with ≥ 3 successful test
  points count), the pooled τ over all same-workload test pairs, and top-k recall. This is what the tuner relies on
  once a workload has a few measurements.
* **leave-one-workload-out** — every workload with ≥ ``--min-points`` successes is ranked by a model trained on all
  *other* workloads: how the model ranks a kernel it has never seen (the start of a tune).
* **leave-one-database-out** — the same with every database held out in turn (its workloads removed from training).
* **random** (``--random N``; measures on this machine) — N schedules per workload drawn with the tuner's own
  sampler (:meth:`ScheduleSpace.sample`) that no database holds, measured ``--random-rounds`` times interleaved,
  ranked by a model trained on *every* database measurement: how the model ranks the space at large, rather than
  the neighbourhood of the best points where a tune spends its trials (there the latencies lie close together and
  measurement noise bounds any model's τ, see **noise**). The rounds' agreement with each other is printed too.
* **curve** (``--curve 24,48,96``) — the split view again with only the first n training points of every workload
  (same test points): how τ grows with the measurements a workload has, i.e. whether the model is limited by its
  data or by its features and the noise.
* **retest** (``--retest R``; measures on this machine) — the held-out schedules of split 0 re-measured in R
  interleaved rounds: the model's τ against the database labels and against the re-measured medians, how well
  the labels agree with their own re-measurement, and the τ a perfect model would reach against each
  (:mod:`bench.cost_model_retest`). This measures the label noise on the split view's own test points.
* **noise** — how far measurements themselves agree (:func:`noise_reference`): back-to-back repeats, and the τ a
  perfect model would reach when latencies move as much as re-measured points did (the ``repeats`` table).

``--suite-trials N --suite-dir W`` first tunes bench/kernels.py's suite with nacos alone (no MetaSchedule, no
timing table) until each kernel's database ``W/<kernel>.db`` holds N measurements — resuming what W already holds —
and then evaluates those databases.

Databases are copied (with their ``-wal``/``-shm`` files) to a temporary folder and read with plain SQL, so files a
running tune is still writing, and older schemas, are read without being touched. A (workload, point) measured in
several databases counts once (median of the successful latencies). Runs on one core (xgboost ``nthread=1``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METRICS = ("kendall_tau_mean", "kendall_tau", "kendall_tau_pooled", "top_k_recall")


def _read(path: str) -> tuple[list, list]:
    """Rows of the measurements and of the re-measurements (``repeats``) of the database at ``path``."""
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal", "-shm"):
            if Path(path + suffix).exists():
                shutil.copy(path + suffix, Path(tmp) / ("db" + suffix))
        conn = sqlite3.connect(Path(tmp) / "db")
        cols = {row[1] for row in conn.execute("PRAGMA table_info(measurements)")}
        lat = "COALESCE(m.estimate, m.latency)" if "estimate" in cols else "m.latency"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts = ("c.counts FROM measurements m LEFT JOIN compiled c ON c.workload = m.workload AND "
                  "c.point = m.point" if "compiled" in tables else "NULL FROM measurements m")
        rows = list(conn.execute(f"SELECT w.graph, w.target, m.point, {lat}, m.costs, {counts} "
                                 "JOIN workloads w ON w.key = m.workload ORDER BY m.id"))
        repeats = list(conn.execute("SELECT m.costs, r.costs FROM repeats r JOIN measurements m ON "
                                    "m.workload = r.workload AND m.point = r.point WHERE m.latency IS NOT NULL")
                       ) if "repeats" in tables else []
        conn.close()
    return rows, repeats


def remeasure_log_ratios(path: str) -> list[float]:
    """log2(median of a later re-measurement / median of the first measurement) of every re-measured point: how
    much the same schedule's latency moves between measurements taken at different times on this machine."""
    return [float(np.log2(np.median(json.loads(b)) / np.median(json.loads(a)))) for a, b in _read(path)[1]]


def model_kind(model_args: dict, **extra) -> tuple[str, dict]:
    """(kind, keyword arguments) of the model ``--model-args`` describes: its ``"kind"`` (default ``"xgb"``) apart."""
    args = {**model_args, **extra}
    return args.pop("kind", "xgb"), args


def make_model(model_args: dict, **extra):
    from schedules.cost_model import create

    kind, args = model_kind(model_args, **extra)
    return create(kind, **args)


def load_pairs(path: str) -> list:
    """``(MeasureInput, MeasureResult)`` of every measurement in the database at ``path`` (read from a copy)."""
    from schedules.measure import MeasureInput, MeasureResult
    from schedules.space import Point
    from schedules.workload import Workload

    rows = _read(path)[0]
    workloads: dict = {}
    pairs = []
    for graph, target, point, latency, costs, counts in rows:
        w = workloads.setdefault((graph, target), Workload(graph, target))
        p = Point.from_json(point)
        ok = latency is not None and latency > 0
        pairs.append((MeasureInput(w, p, counts), MeasureResult(w.key, p, latency if ok else None,
                                                                tuple(json.loads(costs)) if ok else (),
                                                                None if ok else "failed", compiled=counts)))
    return pairs


def merge(pairs: list) -> list:
    """One pair per (workload, point): the median of its successful latencies, a failure if none succeeded."""
    from schedules.measure import MeasureResult

    seen: dict = {}
    for inp, r in pairs:
        seen.setdefault((inp.workload.key, inp.point), []).append((inp, r))
    out = []
    for group in seen.values():
        ok = [r for _, r in group if r.ok]
        if len(ok) <= 1:
            out.append((group[0][0], ok[0] if ok else group[0][1]))
        else:
            costs = tuple(c for r in ok for c in r.costs)
            counts = next((i.compiled for i, _ in group if i.compiled), None)
            inp = group[0][0] if group[0][0].compiled or not counts else replace(group[0][0], compiled=counts)
            out.append((inp, MeasureResult(ok[0].workload_key, ok[0].point,
                                           statistics.median(r.latency for r in ok), costs, compiled=counts)))
    return out


def split_view(pairs: list, seeds: int, holdout: float, k: int, model_args: dict) -> dict:
    """Mean ± std over ``seeds`` stratified splits of :func:`holdout_pairs_quality`."""
    from schedules.cost_model import holdout_pairs_quality

    kind, rest = model_kind(model_args)
    runs = [holdout_pairs_quality(pairs, kind, holdout, k, seed, **rest) for seed in range(seeds)]
    out = {}
    for m in METRICS:
        vals = [r[m] for r in runs if np.isfinite(r[m])]  # nan: no workload had 3 successful test points
        out[m] = {"mean": float(np.mean(vals)) if vals else float("nan"),
                  "std": float(np.std(vals)) if vals else float("nan")}
    out.update(workloads=int(np.mean([r["workloads"] for r in runs])), seeds=seeds,
               measurements=len(pairs), successes=sum(r.ok for _, r in pairs),
               test=int(np.mean([r["test"] for r in runs])), per_seed=[{m: r[m] for m in METRICS} for r in runs])
    return out


def curve_view(pairs: list, sizes: list[int], seeds: int, holdout: float, k: int, model_args: dict) -> dict:
    """Per training size n: mean ± std over ``seeds`` splits of the per-workload τ when the model trains on at most
    n points of every workload. Each seed's test points are :func:`holdout_pairs_quality`'s (the same stratified
    shuffle), so sizes differ only in how much of the rest is used."""
    from schedules.cost_model import ranking_quality, stratified_split

    out = {}
    for n in sizes:
        taus = []
        for seed in range(seeds):
            train, test = stratified_split(pairs, holdout, seed, limit=n)
            model = make_model(model_args, seed=seed)
            model.update([i for i, _ in train], [r for _, r in train])
            taus.append(ranking_quality(model, [i for i, _ in test], [r for _, r in test], k)["kendall_tau_mean"])
        taus = [t for t in taus if np.isfinite(t)]
        out[n] = {"kendall_tau_mean": float(np.mean(taus)) if taus else float("nan"),
                  "std": float(np.std(taus)) if taus else float("nan")}
    return out


def held_out_groups(pairs: list, groups: dict, k: int, model_args: dict) -> dict:
    """Train on the pairs of every workload outside a group, rank the group's test workloads; ``groups`` maps a
    name to (workload keys left out of training, workload keys tested). Returns the per-group
    :func:`ranking_quality` and the per-workload mean τ and recall over all groups."""
    from schedules.cost_model import ranking_quality

    per = {}
    for name, (left_out, tested) in groups.items():
        train = [(i, r) for i, r in pairs if i.workload.key not in left_out]
        test = [(i, r) for i, r in pairs if i.workload.key in tested]
        model = make_model(model_args)
        model.update([i for i, _ in train], [r for _, r in train])
        q = ranking_quality(model, [i for i, _ in test], [r for _, r in test], k)
        if q["workloads"]:
            per[name] = q
    taus = [q["kendall_tau_mean"] for q in per.values() for _ in range(q["workloads"])]
    return {"kendall_tau_mean": float(np.nanmean(taus)) if taus else float("nan"),
            "top_k_recall": float(np.mean([q["top_k_recall"] for q in per.values()])) if per else float("nan"),
            "groups": len(per), "per_group": per}


def noise_reference(pairs: list, ratios: list[float], seeds: int, holdout: float) -> dict:
    """Two references for any model's τ on this data. ``back_to_back``: per-workload τ between the medians of the
    even and the odd repeats of each measurement (repeats run back to back). ``remeasured``: the expected τ of a
    *perfect* model on the same held-out splits when every measured latency carries re-measurement noise — each
    test point's log latency plus a draw from the re-measured log ratios / √2 (half the variance of a difference
    of two measurements), per-workload τ against the unperturbed values, mean over the splits. The ratios are
    centred on their median first: a shift shared by every point (the tuner re-measures its best points, whose
    first measurement was luckily low; the machine's load drifts) does not change an order. Rough either way: the
    ratios come from the few re-measured points only."""
    from scipy.stats import kendalltau

    by_wl: dict = {}
    for inp, r in pairs:
        if r.ok and len(r.costs) >= 4:
            by_wl.setdefault(inp.workload.key, []).append((np.median(r.costs[0::2]), np.median(r.costs[1::2])))
    taus = [kendalltau(*zip(*rows)).statistic for rows in by_wl.values() if len(rows) >= 8]
    out = {"back_to_back_tau_mean": float(np.nanmean(taus)) if taus else float("nan"),
           "remeasured_points": len(ratios),
           "remeasured_abs_log2_median": float(np.median(np.abs(ratios))) if ratios else float("nan")}
    if ratios:
        rng = np.random.default_rng(0)
        noise = (np.asarray(ratios) - np.median(ratios)) / np.sqrt(2.0)
        means = []
        for seed in range(seeds):
            split = random.Random(seed)  # the same per-workload test sets as holdout_pairs_quality
            by: dict = {}
            for inp, r in pairs:
                by.setdefault(inp.workload.key, []).append(r)
            taus = []
            for rows in by.values():
                rows = list(rows)
                split.shuffle(rows)
                test = np.log2([r.latency for r in rows[:round(holdout * len(rows))] if r.ok])
                if len(test) >= 3:
                    t = kendalltau(test, test + rng.choice(noise, len(test)) * rng.choice([-1, 1], len(test)))
                    taus.append(t.statistic)
            means.append(np.nanmean(taus) if taus else np.nan)
        out["remeasured_ceiling_tau_mean"] = float(np.nanmean(means))
    return out


def _measure_random(pairs: list, n: int, rounds: int, seed: int, host: str, builder, runner):
    """(inputs, results, per-workload τ between the first two rounds, skipped workload names) of the random view."""
    from scipy.stats import kendalltau

    from schedules.measure import MeasureInput, MeasureResult
    from schedules.space import DEFAULT_SCHEDULE, space_for
    from schedules.tuner import remeasure

    rng = random.Random(seed)
    measured: dict = {}
    for inp, _ in pairs:
        measured.setdefault(inp.workload.key, (inp.workload, set()))[1].add(inp.point)
    inputs, results, agree, skipped = [], [], [], []
    for key, (w, seen) in measured.items():
        if w.target != host:
            skipped.append(w.name)
            continue
        space, fresh = space_for(w), []
        for _ in range(50 * n):
            p = space.sample(rng)
            if p not in seen and p not in fresh and p != DEFAULT_SCHEDULE:
                fresh.append(p)
            if len(fresh) == n:
                break
        counts: dict = {}
        lats = remeasure(w, fresh, rounds, runner, builder, compiled=counts)
        done = {p: v for p, v in lats.items() if len(v) == rounds}
        for p, v in done.items():
            inputs.append(MeasureInput(w, p, counts.get(p)))
            results.append(MeasureResult(key, p, float(np.median(v)), tuple(v), compiled=counts.get(p)))
        if rounds >= 2 and len(done) >= 3:
            agree.append(kendalltau([v[0] for v in done.values()], [v[1] for v in done.values()]).statistic)
        print(f"  random: {w.name[:60]} {len(done)}/{len(fresh)} measured", flush=True)
    return inputs, results, agree, skipped


def random_view(pairs: list, n: int, rounds: int, k: int, model_args: dict, seed: int = 0,
                builder=None, runner=None, target: str | None = None, save: str | None = None,
                compare: tuple = ()) -> dict:
    """Measure ``n`` fresh sampled points per workload of ``pairs`` (``rounds`` interleaved rounds, median kept) and
    rank them with a model trained on all of ``pairs``. Workloads of another target than ``target`` (canonical
    text; default this CPU's) are skipped: they cannot be measured here. ``save``: a database file the random
    measurements are also written to (a test set to evaluate other models on later, without measuring again).
    ``compare``: more ``model_args`` whose models rank the same points (``out["compare"][kind]``)."""
    from schedules.cost_model import ranking_quality
    from schedules.workload import target_key

    host = target_key() if target is None else target
    from bench.cost_model_retest import workers

    with workers(builder, runner) as (builder, runner):
        inputs, results, agree, skipped = _measure_random(pairs, n, rounds, seed, host, builder, runner)
    if save:
        from schedules.database import Database

        with Database(save) as db:
            for i, r in zip(inputs, results):
                db.add_workload(i.workload)
                db.add(r)
    scores = []
    for args in (model_args, *compare):
        model = make_model(args, seed=seed)
        model.update([i for i, _ in pairs], [r for _, r in pairs])
        scores.append(ranking_quality(model, inputs, results, k))
    out = scores[0]
    out.update(per_workload_points=n, rounds=rounds, train=len(pairs), skipped_other_target=skipped,
               rounds_agree_tau_mean=float(np.nanmean(agree)) if agree else float("nan"),
               model=model_kind(model_args)[0])
    if compare:
        out["compare"] = {model_kind(args)[0]: q for args, q in zip(compare, scores[1:])}
    return out


def random_line(r: dict) -> str:
    others = "".join(f"; {kind}: tau mean {q['kendall_tau_mean']:.3f}, pooled {q['kendall_tau_pooled']:.3f}, "
                     f"top-{q['k']} recall {q['top_k_recall']:.2f}" for kind, q in r.get("compare", {}).items())
    return (f"random held-out schedules ({r['measurements']} measured, {r['per_workload_points']} sampled per "
            f"workload, {r['workloads']} wl; models trained on {r['train']} database measurements): "
            f"{r.get('model', 'xgb')}: tau mean {r['kendall_tau_mean']:.3f}, pooled {r['kendall_tau_pooled']:.3f}, "
            f"top-{r['k']} recall {r['top_k_recall']:.2f}{others}; the {r['rounds']} measurement rounds agree to "
            f"tau {r['rounds_agree_tau_mean']:.3f}")


def fmt(v: dict) -> str:
    return " ".join(f"{m} {v[m]['mean']:.3f}±{v[m]['std']:.3f}" for m in METRICS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dbs", nargs="*")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--min-points", type=int, default=8, help="successes a workload needs in the cross views")
    ap.add_argument("--model-args", default="{}", help="JSON keyword arguments of schedules.cost_model.create")
    ap.add_argument("--model", default=None, help="the cost model kind (default xgb; xgb-compiled reads the machine "
                    "code too, and first builds the measurements whose code the databases do not hold)")
    ap.add_argument("--no-per-db", action="store_true", help="only the all-databases views")
    ap.add_argument("--no-cross", action="store_true", help="skip leave-one-workload/database-out")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="also measure N fresh sampled schedules per workload here and rank them (the random view)")
    ap.add_argument("--random-rounds", type=int, default=2, help="interleaved measurements of each random point")
    ap.add_argument("--random-db", default=None, help="also write the random view's measurements to this database")
    ap.add_argument("--random-seed", type=int, default=0, help="sampler seed of the random view (another seed: "
                    "other fresh points)")
    ap.add_argument("--retest", type=int, default=0, metavar="R",
                    help="also re-measure split 0's held-out schedules R (>= 2) times here (the retest view)")
    ap.add_argument("--retest-reference", action="store_true",
                    help="the retest view brackets every re-measurement by a reference schedule and normalizes by it")
    ap.add_argument("--curve", default=None, metavar="N,N,...",
                    help="also the split view with at most N training points per workload, for each N")
    ap.add_argument("--suite-trials", type=int, default=0, metavar="N",
                    help="first tune bench/kernels.py's suite with nacos to N measurements per kernel (resumes)")
    ap.add_argument("--suite-dir", default=None, help="where --suite-trials keeps its databases")
    ap.add_argument("--suite-kernels", default=None, help="comma-separated suite kernel names (default: all)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    model_args = json.loads(args.model_args)
    if args.model:
        model_args["kind"] = args.model
    t0 = time.perf_counter()
    if args.suite_trials:
        if not args.suite_dir:
            ap.error("--suite-trials needs --suite-dir")
        from bench.kernels import tune_suite

        args.dbs = list(args.dbs) + tune_suite(args.suite_dir, args.suite_trials, args.suite_kernels)
    if not args.dbs:
        ap.error("give databases, or --suite-trials N --suite-dir W")
    if args.retest == 1 or args.retest < 0:
        ap.error("--retest needs at least 2 rounds")
    if model_args.get("kind") == "xgb-compiled":  # it reads each measurement's machine code: build what lacks it
        from schedules.compiled import fill_counts

        for path in args.dbs:
            filled, lacking = fill_counts(path)
            if lacking:
                print(f"{path}: built {lacking} measurements again for their machine code ({filled} read)", flush=True)
    per_db_pairs = {path: load_pairs(path) for path in args.dbs}
    everything = merge([p for pairs in per_db_pairs.values() for p in pairs])
    command = " ".join(["python bench/cost_model_quality.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "model_args": model_args, "holdout": args.holdout, "k": args.k,
              "per_db": {}, "cross": {}}
    if not args.no_per_db and len(args.dbs) > 1:
        for path, pairs in per_db_pairs.items():
            v = report["per_db"][path] = split_view(merge(pairs), args.seeds, args.holdout, args.k, model_args)
            print(f"{path}: {v['measurements']} meas, {v['workloads']} wl evaluated | {fmt(v)}", flush=True)
    v = report["all"] = split_view(everything, args.seeds, args.holdout, args.k, model_args)
    print(f"ALL ({len(args.dbs)} dbs): {v['measurements']} meas ({v['successes']} ok), {v['workloads']} wl evaluated,"
          f" {v['test']} test | {fmt(v)}", flush=True)
    if not args.no_cross:
        counts: dict = {}
        for inp, r in everything:
            counts[inp.workload.key] = counts.get(inp.workload.key, 0) + r.ok
        big = {key for key, n in counts.items() if n >= args.min_points}
        lowo = held_out_groups(everything, {key: ({key}, {key}) for key in sorted(big)}, args.k, model_args)
        lowo["per_group"] = {next(i.workload.name for i, _ in everything if i.workload.key == key): q["kendall_tau"]
                             for key, q in lowo["per_group"].items()}
        report["cross"]["leave_one_workload_out"] = lowo
        print(f"leave-one-workload-out ({lowo['groups']} wl with >= {args.min_points} points): "
              f"tau mean {lowo['kendall_tau_mean']:.3f}, top-k recall {lowo['top_k_recall']:.3f}", flush=True)
        if len(args.dbs) > 1:
            groups = {path: {i.workload.key for i, _ in pairs} for path, pairs in per_db_pairs.items()}
            lodo = held_out_groups(everything, {p: (g, g & big) for p, g in groups.items() if g & big}, args.k,
                                   model_args)
            lodo["per_group"] = {p: q["kendall_tau_mean"] for p, q in lodo["per_group"].items()}
            report["cross"]["leave_one_db_out"] = lodo
            print(f"leave-one-db-out ({lodo['groups']} dbs): tau mean {lodo['kendall_tau_mean']:.3f}, "
                  f"top-k recall {lodo['top_k_recall']:.3f}", flush=True)
    if args.curve:
        sizes = [int(x) for x in args.curve.split(",")]
        c = report["curve"] = curve_view(everything, sizes, args.seeds, args.holdout, args.k, model_args)
        print("curve (training points per workload -> held-out tau mean): " + ", ".join(
            f"{n}: {v['kendall_tau_mean']:.3f}±{v['std']:.3f}" for n, v in c.items()), flush=True)
    ratios = [x for path in args.dbs for x in remeasure_log_ratios(path)]
    ref = report["noise"] = noise_reference(everything, ratios, args.seeds, args.holdout)
    print(f"noise: back-to-back repeats agree to tau {ref['back_to_back_tau_mean']:.3f}; {len(ratios)} re-measured "
          f"points moved by median {ref['remeasured_abs_log2_median']:.2f} log2; a perfect model would reach tau "
          f"~{ref.get('remeasured_ceiling_tau_mean', float('nan')):.3f} on these splits (rough: from the re-measured "
          "best points only; --retest R measures it on the test points)", flush=True)
    if args.random:
        r = report["random"] = random_view(everything, args.random, args.random_rounds, args.k, model_args,
                                           seed=args.random_seed, save=args.random_db)
        print(random_line(r), flush=True)
    if args.retest:
        from bench.cost_model_retest import retest_line, retest_view

        r = report["retest"] = retest_view(everything, args.retest, args.holdout, model_args,
                                           referenced=args.retest_reference)
        print(retest_line(r), flush=True)
    report["wall_s"] = time.perf_counter() - t0
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
