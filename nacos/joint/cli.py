"""``nacos optimize``: the command line of the joint search (see :mod:`nacos.joint.api`)."""

from __future__ import annotations

import sys
from pathlib import Path

from nacos.joint.runs import OptimizeConfig

EXIT_BUDGET_NOT_MET = 3
_D = OptimizeConfig()
# the options that are the run's configuration (OptimizeConfig fields); their argparse default is None, so that
# an option the user did not type is told apart from one typed with the default value (--resume ignores, and
# names, only the latter); OptimizeConfig gives the defaults
_CONFIG_OPTIONS = ("space", "dataset", "model", "target", "fidelity", "epochs", "budget_minutes", "latency_max_ms",
                   "memory_max_mb", "population", "slots", "measure_per_generation", "tune_trials", "seed",
                   "baseline")


def add_arguments(s) -> None:
    g = s.add_mutually_exclusive_group()
    g.add_argument("--space", help=f"search space: hyt, mbv2, resnet (default {_D.space})")
    g.add_argument("--model", metavar="MODEL.onnx", help="search the operator rewrites (GOS) of this model instead")
    s.add_argument("--dataset", help=f"data set name or path (default {_D.dataset})")
    s.add_argument("--target", help=f"target name (default {_D.target}: this CPU)")
    s.add_argument("-o", "--output", default="nacos-optimize", help="output folder (default nacos-optimize/)")
    s.add_argument("--budget-minutes", type=float,
                   help=f"wall clock of the search (default {_D.budget_minutes}; the final report adds ~1-2 min)")
    s.add_argument("--latency-max-ms", type=float, help="latency budget (constraint) in ms")
    s.add_argument("--memory-max-mb", type=float, help="peak memory budget (constraint) in MB (2^20 bytes)")
    s.add_argument("--fidelity", choices=("train", "predictor", "proxy"),
                   help=f"how the error objective is obtained (default {_D.fidelity})")
    s.add_argument("--epochs", type=int, help=f"training epochs (default {_D.epochs})")
    s.add_argument("--population", type=int, help=f"NSGA-II population ({_D.population})")
    s.add_argument("--slots", type=int, help=f"schedule genes per network ({_D.slots})")
    s.add_argument("--measure-per-generation", type=int,
                   help=f"front members measured for real per generation ({_D.measure_per_generation})")
    s.add_argument("--tune-trials", type=int,
                   help=f"kernel measurements tuning each measured network ({_D.tune_trials})")
    s.add_argument("--seed", type=int, help=f"random seed ({_D.seed})")
    s.add_argument("--baseline", action="store_true", default=None,
                   help="also run the two-stage baseline (NAS on default schedules, then tuning), same budget")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --output where it stopped, with the settings it started with")
    s.add_argument("--force", action="store_true",
                   help="replace a non-empty --output (a run there is started over)")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--json", action="store_true", help="print the front as JSON")
    s.set_defaults(fn=cmd_optimize)


def _option_text(name: str, value) -> str:
    """``--name value`` as typed (``--baseline`` alone; ``none``/``off`` for a setting that is not set)."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return f"{flag} {'off' if value is False else 'none'}"
    if value is True:
        return flag
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def _ignored_text(name: str, value, kept_name: str, kept) -> str:
    if kept_name != name:  # e.g. --space given to a run of a --model
        return f"{_option_text(name, value)} (kept {_option_text(kept_name, kept)})"
    kept_text = _option_text(name, kept).split(" ", 1)
    return f"{_option_text(name, value)} (kept {kept_text[1] if len(kept_text) > 1 else 'on'})"


def _latency_summary(m: dict) -> str:
    """The final side-by-side latency (with its default and speedup, from the same rounds), else the search's."""
    final, default = m.get("latency_final_ms"), m.get("latency_default_ms")
    if final is None:
        return f"latency {m['latency_ms']:.3g} ms (search timing)"
    if default is None or not final > 0:
        return f"latency {final:.3g} ms"
    return f"latency {final:.3g} ms (default schedules {default:.3g} ms, {default / final:.2f}x)"


def cmd_optimize(args) -> int:
    from nacos.cli import UsageError
    from nacos.data import DatasetError
    from nacos.joint.api import OptimizeError, optimize, resume_ignored

    if args.model and not Path(args.model).is_file():
        raise UsageError(f"{args.model}: no such file")
    given = {name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name) is not None}
    try:
        if args.resume:  # said here, as one line; the options left out are not passed (no Python warning)
            ignored = resume_ignored(args.output, given)
            if ignored:
                print(f"nacos optimize: warning: resuming {args.output}: the saved run's settings are kept; ignored: "
                      + ", ".join(_ignored_text(*i) for i in ignored), file=sys.stderr)
                given = {k: v for k, v in given.items() if k not in {i[0] for i in ignored}}
        result = optimize(out=args.output, resume=args.resume, force=args.force, progress=not args.quiet, **given)
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
            print(f"  {m['id']}: accuracy {m['accuracy']:.3f}  {_latency_summary(m)}  "
                  f"{m['params']:,} params  {m['memory_bytes'] / 2**20:.2f} MB")
    if p.get("budget_violations"):
        print(f"nacos optimize: {p['budget_violations']['message']}", file=sys.stderr)
        for m in p["budget_violations"]["closest"]:
            print(f"  closest {m['id']}: search latency {m['latency_ms']:.3g} ms, accuracy {m['accuracy']:.3f}, "
                  f"{m['memory_bytes'] / 2**20:.2f} MB", file=sys.stderr)
        return EXIT_BUDGET_NOT_MET
    return 0
