"""Kernel suite: nacos' tuner against MetaSchedule at equal trials, TVM unscheduled and PyTorch eager.

    python bench/kernels.py --json bench/results/kernels.json [--trials 32,128] [--quick] [--kernels conv3x3_64,…]

For every kernel (one fused group: conv 3×3 + bias + relu at two sizes, depthwise 3×3, pointwise 1×1, dense,
matmul, batched attention Q·Kᵀ) the script

1. tunes it with nacos (``tune_workload``, xgb cost model) in a fresh database per kernel; the trial budgets are
   reached one after the other in that database (the tuner counts what the database holds), so the best schedule
   after 32 trials is the state of the 128-trial tune after its first 32 measurements;
2. tunes the same PrimFunc with MetaSchedule (``metaschedule_tune_primfunc``) from scratch at every budget;
3. compiles every variant in this process, checks each one's output against PyTorch on the same inputs, and times
   all of them in interleaved rounds (each round times every variant, alternating the order; medians compared).

Reported per kernel: latency ratios to MetaSchedule at the largest budget, GFLOP/s, % of the fp32 peak (see
:func:`bench.kernel_suite.fp32_peak`) and the tuning wall time of each tuner. Finally the cost model's ranking
quality on held-out measurements of the run's databases (:func:`schedules.cost_model.holdout_pairs_quality`), next
to the τ a perfect model would reach there under the measured noise, and on ``--random`` fresh schedules per kernel
that neither the tuner nor the model saw (``bench/cost_model_quality.py``'s random view), and — the held-out
schedules re-measured ``--retest`` times — how far the held-out labels agree with themselves
(``bench/cost_model_retest.py``)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, write_json  # noqa: E402
from bench.kernel_suite import FULL, QUICK, Kernel, fp32_peak, named_kernels  # noqa: E402


# ---- tuning ----------------------------------------------------------------------------------------------------
def tune_nacos(w, trials: list[int], db_path: str, builder, runner) -> dict:
    from schedules.database import Database
    from schedules.tuner import tune_workload

    out, spent = {}, 0.0
    with Database(db_path) as db:
        for budget in trials:  # one database: each budget continues the previous one (counted measurements)
            t0 = time.perf_counter()
            res = tune_workload(w, budget, db, runner, "xgb", builder)
            spent += time.perf_counter() - t0
            out[budget] = {"point": res.best_point, "tune_s": spent, "trials": res.trials,
                           "failures": res.failures, "tuner_latency_s": res.best_latency}
    return out


def tune_suite(workdir: str, trials: int, names: str | None = None) -> list[str]:
    """Tune the suite's kernels (``names``: comma-separated, default all of :data:`FULL`) with nacos alone until
    each database ``workdir/<kernel>.db`` holds ``trials`` measurements (what it already holds counts, so a rerun
    resumes); returns the database paths. For bench/cost_model_quality.py: more measurements per kernel than the
    timed suite takes, without MetaSchedule."""
    from schedules.measure import LocalBuilder
    from schedules.runner import LocalRunner

    try:
        kernels = FULL if names is None else named_kernels(names)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    os.makedirs(workdir, exist_ok=True)
    builder, runner = LocalBuilder(), LocalRunner()
    paths = []
    try:
        for k in kernels:
            path = f"{workdir}/{k.name}.db"
            r = tune_nacos(k.workload(), [trials], path, builder, runner)[trials]
            print(f"  {k.name}: {r['trials']} measurements, {r['tune_s']:.0f} s tuning", flush=True)
            paths.append(path)
    finally:
        builder.close()
        runner.close()
    return paths


def tune_metaschedule(func, trials: list[int], work_dir: str) -> dict:
    from nacos.baselines import metaschedule_tune_primfunc

    out = {}
    for budget in trials:  # from scratch at each budget, as a user of MetaSchedule would run it
        mod, seconds = metaschedule_tune_primfunc(func, None, trials=budget, work_dir=f"{work_dir}/ms{budget}")
        out[budget] = {"mod": mod, "tune_s": seconds}
    return out


# ---- side-by-side timing -----------------------------------------------------------------------------------------
def _tvm_variant(mod, arrays, packed=()):
    """(timer(n) -> seconds per call, output) of a compiled IRModule; ``packed`` inputs are re-laid out first."""
    from schedules.packed import pack_constant
    from schedules.tvm_env import aligned, make_target, tvm

    tgt = make_target(None)
    with tgt:
        lib = tvm.compile(mod, tgt)
    dev = tvm.cpu()
    ins = list(arrays)
    for param, dim, lanes in packed:
        ins[param] = pack_constant(ins[param], dim, lanes)
    args = [tvm.runtime.tensor(aligned(np.ascontiguousarray(a)), dev) for a in ins]
    return lib, args


def _time_tvm(lib, args, out_shape, dtype="float32"):
    from schedules.tvm_env import tvm

    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, dtype), dev)
    lib["main"](*args, out)
    result = out.numpy().copy()

    def timer(n: int) -> float:
        return float(lib.mod.time_evaluator("main", dev, number=n, repeat=1)(*args, out).mean)
    return timer, result


def _time_torch(kernel: Kernel, arrays):
    import torch

    import torch.nn.functional as F

    # tensors converted once: only the ops are timed (Kernel.torch converts on every call)
    t = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    post = None
    if kernel.op == "conv":
        pad, g = kernel.attrs.get("pads", (0,) * 4)[0], kernel.attrs.get("groups", 1)
        bias = t[2] if len(t) > 2 else None
        call = (lambda: F.conv2d(t[0], t[1], bias, padding=pad, groups=g))
    elif kernel.op == "conv2d_nchwc":  # PyTorch's own NCHW conv on the same numbers: re-layouts left untimed
        from operators.layout import from_blocked_torch, to_blocked_torch, unblocked_conv_weight_torch

        pad, bo = kernel.attrs.get("pads", (0,) * 4)[0], t[1].shape[5]
        xn = from_blocked_torch({}, t[0]).contiguous()
        wn = unblocked_conv_weight_torch(t[1]).contiguous()
        bias = t[2].reshape(-1) if len(t) > 2 else None
        call = (lambda: F.conv2d(xn, wn, bias, padding=pad))
        post = (lambda y: to_blocked_torch({"block": bo}, y))
    elif kernel.op == "dense":
        bias = t[2] if len(t) > 2 else None
        call = (lambda: F.linear(t[0], t[1], bias))
    else:
        call = (lambda: torch.matmul(t[0], t[1]))
    epi = [getattr(torch, e) for e in kernel.epilogue]

    def run():
        y = call()
        for e in epi:
            y = e(y)
        return y

    def timer(n: int) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(n):
                run()
            return (time.perf_counter() - t0) / n
    with torch.inference_mode():
        y = run()
        return timer, (post(y) if post else y).numpy().copy()


def interleaved_timers(timers: dict, rounds: int, target_s: float = 0.01, pause_s: float = 0.05) -> dict:
    """Median seconds per call of each timer over ``rounds`` interleaved rounds (order alternates per round);
    each sample runs enough calls to take about ``target_s``. An untimed pause before each sample lets the
    previous runtime's spinning worker threads (PyTorch's OpenMP, TVM's pool) go to sleep."""
    calls = {}
    for name, timer in timers.items():
        est = max(timer(3), 1e-7)
        calls[name] = max(1, min(10000, int(target_s / est)))
    samples = {k: [] for k in timers}
    for r in range(rounds):
        for name in (list(timers) if r % 2 == 0 else list(reversed(timers))):
            time.sleep(pause_s)
            samples[name].append(timers[name](calls[name]))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "rounds": len(v),
                "calls": calls[k]} for k, v in samples.items()}


def _max_rel_err(got, ref) -> float:
    scale = max(1.0, float(np.abs(ref).max()))
    return float(np.abs(got.reshape(ref.shape) - ref).max() / scale)


def bench_kernel(kernel: Kernel, trials: list[int], workdir: str, builder, runner, rounds: int) -> dict:
    from schedules.packed import packed_inputs
    from schedules.measure import random_inputs
    from schedules.space import space_for
    from schedules.tvm_env import tvm

    w = kernel.workload()
    func, hint = w.lower()
    print(f"\n== {kernel.name}  ({w.name}, {kernel.flops / 1e6:.1f} MFLOP)", flush=True)
    nacos = tune_nacos(w, trials, f"{workdir}/{kernel.name}.db", builder, runner)
    for t, r in nacos.items():
        print(f"  nacos-{t}: {r['tune_s']:.0f} s, {r['trials']} trials ({r['failures']} failed)", flush=True)
    ms = tune_metaschedule(func, trials, f"{workdir}/ms_{kernel.name}")
    for t, r in ms.items():
        print(f"  ms-{t}: {r['tune_s']:.0f} s", flush=True)

    arrays = random_inputs(w, seed=0)
    ref = kernel.torch(arrays).numpy()
    out_shape = tuple(w.output_type().shape)
    timers, errors = {}, {}
    for t, r in nacos.items():
        sch = space_for(w).apply(func, r["point"], hint)
        lib, args = _tvm_variant(sch.mod, arrays, packed_inputs(sch.mod["main"]))
        timers[f"nacos-{t}"], got = _time_tvm(lib, args, out_shape)
        errors[f"nacos-{t}"] = _max_rel_err(got, ref)
    for t, r in ms.items():
        lib, args = _tvm_variant(r["mod"], arrays)
        timers[f"ms-{t}"], got = _time_tvm(lib, args, out_shape)
        errors[f"ms-{t}"] = _max_rel_err(got, ref)
    lib, args = _tvm_variant(tvm.IRModule({"main": func}), arrays)
    timers["untuned"], got = _time_tvm(lib, args, out_shape)
    errors["untuned"] = _max_rel_err(got, ref)
    timers["torch"], got = _time_torch(kernel, arrays)
    errors["torch"] = _max_rel_err(got, ref)
    bad = {k: e for k, e in errors.items() if not e < 1e-3}
    if bad:
        print(f"  WRONG OUTPUT vs torch: {bad}", flush=True)
    timing = interleaved_timers(timers, rounds)
    base = f"ms-{max(trials)}"
    lat = {k: v["median_s"] for k, v in timing.items()}
    return {"name": kernel.name, "workload": w.name, "workload_key": w.key, "flops": kernel.flops,
            "conv": kernel.conv, "latency_s": lat, "timing": timing, "baseline": base,
            "ratio_vs_baseline": {k: v / lat[base] for k, v in lat.items()},
            "gflops": {k: kernel.flops / v / 1e9 for k, v in lat.items()},
            "tune_s": {**{f"nacos-{t}": r["tune_s"] for t, r in nacos.items()},
                       **{f"ms-{t}": r["tune_s"] for t, r in ms.items()}},
            "nacos_points": {f"nacos-{t}": r["point"].to_json() if r["point"] else None for t, r in nacos.items()},
            "max_rel_err_vs_torch": errors, "outputs_ok": not bad}


# ---- cost model quality ------------------------------------------------------------------------------------------
def cost_model_quality(pairs: list, db_paths: list[str], holdout: float = 0.2) -> dict:
    """The cost model on one held-out split (seed 0) of the run's measurements (``pairs``, as
    bench/cost_model_quality.py reads them), and the τ a perfect model would reach on the same split given how far
    re-measured points moved (that bench's noise view)."""
    from bench.cost_model_quality import noise_reference, remeasure_log_ratios
    from schedules.cost_model import holdout_pairs_quality

    out = holdout_pairs_quality(pairs, "xgb", holdout=holdout, seed=0)
    # the same split ranked with the built candidates' machine code too (the tuner stores it with each measurement)
    out["compiled"] = holdout_pairs_quality(pairs, "xgb-compiled", holdout=holdout, seed=0)
    ratios = [x for path in db_paths for x in remeasure_log_ratios(path)]
    out["noise"] = noise_reference(pairs, ratios, 1, holdout)  # its one split is seed 0's
    return out


# ---- report ------------------------------------------------------------------------------------------------------
def print_table(rows: list[dict], peak: dict, quality: dict | None) -> None:
    variants = list(rows[0]["latency_s"]) if rows else []
    base = rows[0]["baseline"] if rows else ""
    print(f"\nLatency ratio vs {base} (median of interleaved rounds; <1 = faster than {base}); "
          f"GFLOP/s; fp32 peak assumed {peak['gflops']:.0f} GFLOP/s "
          f"(2 FMA × {peak['fp32_lanes']} lanes × 2 × {peak['clock_ghz']:.3f} GHz × {peak['cores']} cores)")
    head = f"{'kernel':<22}{'ms-lat(us)':>11}" + "".join(f"{v:>10}" for v in variants)
    print(head)
    for r in rows:
        print(f"{r['name']:<22}{r['latency_s'][base] * 1e6:>11.1f}"
              + "".join(f"{r['ratio_vs_baseline'][v]:>10.2f}" for v in variants))
    print("\nGFLOP/s (% of fp32 peak for conv kernels)")
    print(f"{'kernel':<22}" + "".join(f"{v:>14}" for v in variants))
    for r in rows:
        cells = []
        for v in variants:
            g = r["gflops"][v]
            cells.append(f"{g:.1f} ({100 * g / peak['gflops']:.0f}%)" if r["conv"] else f"{g:.1f}")
        print(f"{r['name']:<22}" + "".join(f"{c:>14}" for c in cells))
    print("\nTuning wall time (s)")
    tuners = list(rows[0]["tune_s"]) if rows else []
    print(f"{'kernel':<22}" + "".join(f"{t:>10}" for t in tuners))
    for r in rows:
        print(f"{r['name']:<22}" + "".join(f"{r['tune_s'][t]:>10.0f}" for t in tuners))
    if quality:
        print(f"\nCost model on held-out schedules ({quality['train']} train / {quality['test']} test, "
              f"{quality['workloads']} workloads): Kendall tau mean {quality['kendall_tau_mean']:.3f}, "
              f"pooled {quality['kendall_tau_pooled']:.3f}; top-{quality['k']} recall {quality['top_k_recall']:.2f}")
        if "compiled" in quality:
            c = quality["compiled"]
            print(f"  xgb-compiled (the knobs and the built candidates' machine code), same split: Kendall tau mean "
                  f"{c['kendall_tau_mean']:.3f}, pooled {c['kendall_tau_pooled']:.3f}; top-{c['k']} recall "
                  f"{c['top_k_recall']:.2f}")
        noise = quality.get("noise")
        if noise and "remeasured_ceiling_tau_mean" in noise:
            print(f"  a perfect model would reach tau ~{noise['remeasured_ceiling_tau_mean']:.3f} on this split: "
                  f"{noise['remeasured_points']} re-measured points moved by a median "
                  f"{noise['remeasured_abs_log2_median']:.2f} log2 between measurements")
        if "random" in quality:
            from bench.cost_model_quality import random_line

            print(random_line(quality["random"]))
        if "retest" in quality:
            from bench.cost_model_retest import retest_line

            print(retest_line(quality["retest"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--trials", default=None, help="comma-separated budgets (default 32,128; --quick: 8,16)")
    ap.add_argument("--quick", action="store_true", help="small kernels and budgets 8,16 (smoke run)")
    ap.add_argument("--kernels", default=None, help="comma-separated kernel names (default: the whole suite)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 15, quick 5)")
    ap.add_argument("--workdir", default=None, help="keep databases and MetaSchedule logs here")
    ap.add_argument("--random", type=int, default=None, metavar="N",
                    help="fresh sampled schedules per kernel measured to rank with the cost model (default 24, "
                         "quick 6; 0: off)")
    ap.add_argument("--retest", type=int, default=None, metavar="R",
                    help="re-measure the held-out schedules R times to show how far their labels agree with "
                         "themselves (default 4, quick 2; 0: off)")
    args = ap.parse_args(argv)

    from schedules.measure import LocalBuilder
    from schedules.runner import LocalRunner
    from schedules.tvm_env import num_threads

    import torch

    torch.set_num_threads(num_threads())
    trials = sorted(int(t) for t in (args.trials or ("8,16" if args.quick else "32,128")).split(","))
    suite = QUICK if args.quick else FULL
    if args.kernels:
        try:
            suite = named_kernels(args.kernels)
        except ValueError as e:
            ap.error(str(e))
    rounds = args.rounds or (5 if args.quick else 15)
    args.random = (6 if args.quick else 24) if args.random is None else args.random
    args.retest = (2 if args.quick else 4) if args.retest is None else args.retest
    if args.retest == 1 or args.retest < 0:
        ap.error("--retest needs at least 2 rounds (0: off)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="nacos-kernels-")
    os.makedirs(workdir, exist_ok=True)
    peak = fp32_peak(num_threads())
    print(f"threads: TVM {num_threads()}, torch {torch.get_num_threads()}; trials {trials}; workdir {workdir}")
    t0 = time.perf_counter()
    rows = []
    builder, runner = LocalBuilder(), LocalRunner()
    dbs = [f"{workdir}/{k.name}.db" for k in suite]
    try:
        for k in suite:
            rows.append(bench_kernel(k, trials, workdir, builder, runner, rounds))
            if args.json:  # partial results survive an interrupted run
                write_json(args.json + ".partial", {"fp32_peak": peak, "trials": trials, "kernels": rows})
        from bench.cost_model_quality import load_pairs, merge, random_view
        from bench.cost_model_retest import retest_view

        # one reading for every view: a measurement's costs are its own repeats (re-measurements not appended),
        # which is what the noise view's back-to-back agreement compares
        pairs = merge([p for db in dbs for p in load_pairs(db)])
        quality = cost_model_quality(pairs, dbs)
        if args.random:
            quality["random"] = random_view(pairs, args.random, 2, quality["k"], {}, builder=builder, runner=runner,
                                            compare=({"kind": "xgb-compiled"},))
        if args.retest:
            quality["retest"] = retest_view(pairs, args.retest, 0.2, {}, builder=builder, runner=runner)
    finally:
        builder.close()
        runner.close()
    for r in rows:
        r["pct_fp32_peak"] = {v: 100 * g / peak["gflops"] for v, g in r["gflops"].items()} if r["conv"] else None
    print_table(rows, peak, quality)
    payload = {"machine": machine(), "fp32_peak": peak, "trials": trials, "quick": args.quick, "rounds": rounds,
               "wall_s": time.perf_counter() - t0, "kernels": rows, "cost_model": quality,
               "command": " ".join(sys.argv)}
    write_json(args.json, payload)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
