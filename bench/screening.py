"""Does screening builds with the machine-code model find faster schedules at equal trials?

    python bench/screening.py [--trials 32] [--screen 4] [--seeds 0,1] [--kernels conv3x3_128x28,...]
                              [--rounds 10] [--json out.json]

For every kernel of bench/kernels.py's suite and every seed, two tunes from scratch (a fresh database each) spend
the same number of measurements:

* ``xgb`` — the default tuner: the knob model ranks the proposals and the top of each batch is measured;
* ``xgb-compiled`` with ``--screen K`` — K times the batch is built, and the model that reads the builds' machine
  code (:mod:`schedules.compiled`) picks which to measure.

The two best schedules of each (kernel, seed) are then timed side by side in ``--rounds`` interleaved rounds
(:func:`schedules.tuner.remeasure`); reported: the screened tune's best latency over the plain tune's (below 1:
screening found a faster schedule), and the tunes' wall times. Ratios are of medians measured in the same rounds
(a single tune's own figures move with the machine's load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, write_json  # noqa: E402
from bench.kernel_suite import FULL, named_kernels  # noqa: E402

DEFAULT_KERNELS = "conv3x3_128x28,depthwise3x3_96x56,pointwise_64to256x56,matmul_128"


def compare(kernel, trials: int, screen: int, seed: int, rounds: int, workdir: str, builder, runner) -> dict:
    from schedules.tuner import remeasure, tune_workload

    w = kernel.workload()
    out = {"kernel": kernel.name, "seed": seed}
    best = {}
    for name, model, k in (("plain", "xgb", 1), ("screened", "xgb-compiled", screen)):
        t0 = time.perf_counter()
        res = tune_workload(w, trials, f"{workdir}/{kernel.name}-{name}-{seed}.db", runner, model, builder,
                            seed=seed, screen=k)
        out[f"{name}_tune_s"] = time.perf_counter() - t0
        best[name] = res.best_point
    if best["plain"] == best["screened"]:
        out.update(same_point=True, ratio=1.0)
        return out
    lats = remeasure(w, [best["plain"], best["screened"]], rounds, runner, builder)
    plain, screened = (statistics.median(lats[best[n]]) if lats[best[n]] else float("nan") for n in
                       ("plain", "screened"))
    out.update(same_point=False, plain_s=plain, screened_s=screened, ratio=screened / plain)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--screen", type=int, default=4, help="builds per measured candidate of the screened tune")
    ap.add_argument("--seeds", default="0,1", help="comma-separated tuner seeds")
    ap.add_argument("--kernels", default=DEFAULT_KERNELS, help="comma-separated suite kernels ('all': the suite)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds of the two bests")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.screen < 2 or args.rounds < 1:
        ap.error("--trials and --rounds must be at least 1, --screen at least 2")
    from schedules.measure import LocalBuilder
    from schedules.runner import LocalRunner

    try:
        kernels = FULL if args.kernels == "all" else named_kernels(args.kernels)
    except ValueError as e:
        ap.error(str(e))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nacos-screening-") as workdir:
        builder, runner = LocalBuilder(), LocalRunner()
        try:
            for k in kernels:
                for seed in seeds:
                    r = compare(k, args.trials, args.screen, seed, args.rounds, workdir, builder, runner)
                    rows.append(r)
                    print(f"{k.name:<22} seed {seed}: screened / plain best latency {r['ratio']:.3f}"
                          + (" (the same schedule)" if r["same_point"] else "")
                          + f"; tune {r['plain_tune_s']:.0f} s / {r['screened_tune_s']:.0f} s", flush=True)
        finally:
            builder.close()
            runner.close()
    ratios = [r["ratio"] for r in rows]
    geo = statistics.geometric_mean(ratios) if ratios and all(x > 0 for x in ratios) else float("nan")
    time_ratio = sum(r["screened_tune_s"] for r in rows) / sum(r["plain_tune_s"] for r in rows)
    print(f"\n{len(rows)} tunes of {args.trials} trials each way: screened / plain best latency, geometric mean "
          f"{geo:.3f} (below 1: screening found faster schedules; {sum(x < 1 for x in ratios)} of {len(rows)} "
          f"faster); tuning wall time x{time_ratio:.2f} (builds of --screen {args.screen})")
    write_json(args.json, {"machine": machine(), "trials": args.trials, "screen": args.screen, "seeds": seeds,
                           "rounds": args.rounds, "rows": rows, "geomean_ratio": geo, "tune_time_ratio": time_ratio,
                           "wall_s": time.perf_counter() - t0, "command": " ".join(sys.argv)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
