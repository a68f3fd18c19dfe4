"""``nacos optimize``: the command line of the joint search (see :mod:`nacos.joint.api`)."""

from __future__ import annotations

import sys
from pathlib import Path

from nacos.joint.runs import OptimizeConfig

EXIT_BUDGET_NOT_MET = 3
_D = OptimizeConfig()


def add_arguments(s) -> None:
    g = s.add_mutually_exclusive_group()
    g.add_argument("--space", default=_D.space, help=f"search space: hyt, mbv2, resnet (default {_D.space})")
    g.add_argument("--model", metavar="MODEL.onnx", help="search the operator rewrites (GOS) of this model instead")
    s.add_argument("--dataset", default=_D.dataset, help=f"data set name or path (default {_D.dataset})")
    s.add_argument("--target", default=_D.target, help=f"target name (default {_D.target}: this CPU)")
    s.add_argument("-o", "--output", default="nacos-optimize", help="output folder (default nacos-optimize/)")
    s.add_argument("--budget-minutes", type=float, default=_D.budget_minutes,
                   help=f"wall clock of the search (default {_D.budget_minutes}; the final report adds ~1-2 min)")
    s.add_argument("--latency-max-ms", type=float, help="latency budget (constraint) in ms")
    s.add_argument("--memory-max-mb", type=float, help="peak memory budget (constraint) in MB (2^20 bytes)")
    s.add_argument("--fidelity", choices=("train", "predictor", "proxy"), default=_D.fidelity,
                   help=f"how the error objective is obtained (default {_D.fidelity})")
    s.add_argument("--epochs", type=int, default=_D.epochs, help=f"training epochs (default {_D.epochs})")
    s.add_argument("--population", type=int, default=_D.population, help=f"NSGA-II population ({_D.population})")
    s.add_argument("--slots", type=int, default=_D.slots, help=f"schedule genes per network ({_D.slots})")
    s.add_argument("--measure-per-generation", type=int, default=_D.measure_per_generation,
                   help=f"front members measured for real per generation ({_D.measure_per_generation})")
    s.add_argument("--tune-trials", type=int, default=_D.tune_trials,
                   help=f"kernel measurements tuning each measured network ({_D.tune_trials})")
    s.add_argument("--seed", type=int, default=_D.seed)
    s.add_argument("--baseline", action="store_true",
                   help="also run the two-stage baseline (NAS on default schedules, then tuning), same budget")
    s.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    s.add_argument("--force", action="store_true", help="start over in an --output that holds a run")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--json", action="store_true", help="print the front as JSON")
    s.set_defaults(fn=cmd_optimize)


def cmd_optimize(args) -> int:
    from nacos.cli import UsageError
    from nacos.data import DatasetError
    from nacos.joint.api import OptimizeError, optimize

    if args.model and not Path(args.model).is_file():
        raise UsageError(f"{args.model}: no such file")
    try:
        result = optimize(args.space, args.dataset, out=args.output, resume=args.resume, force=args.force,
                          progress=not args.quiet, model=args.model, target=args.target,
                          budget_minutes=args.budget_minutes, latency_max_ms=args.latency_max_ms,
                          memory_max_mb=args.memory_max_mb, fidelity=args.fidelity, epochs=args.epochs,
                          population=args.population, slots=args.slots,
                          measure_per_generation=args.measure_per_generation, tune_trials=args.tune_trials,
                          seed=args.seed, baseline=args.baseline)
    except (OptimizeError, DatasetError) as e:
        raise UsageError(str(e)) from None
    p = result.payload
    if args.json:
        from nacos.jsonsafe import dumps

        print(dumps({k: p[k] for k in ("method", "stats", "pareto", "budget_violations")}, indent=1))
    else:
        st = p["stats"]
        print(f"{st['evaluations']} evaluations, {st['measured']} networks measured, {st['generations']} "
              f"generations in {st['seconds']:.0f} s -> {result.out}/ (pareto.json, pareto.png, report.md, members/)")
        for m in p["pareto"]:
            print(f"  {m['id']}: accuracy {m['accuracy']:.3f}  latency {m['latency_ms']:.3g} ms  "
                  f"{m['params']:,} params  {m['memory_bytes'] / 2**20:.2f} MB")
    if p.get("budget_violations"):
        print(f"nacos optimize: {p['budget_violations']['message']}", file=sys.stderr)
        for m in p["budget_violations"]["closest"]:
            print(f"  closest {m['id']}: latency {m['latency_ms']:.3g} ms, accuracy {m['accuracy']:.3f}, "
                  f"{m['memory_bytes'] / 2**20:.2f} MB", file=sys.stderr)
        return EXIT_BUDGET_NOT_MET
    return 0
