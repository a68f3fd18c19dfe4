"""The ``nacos`` command line.

    nacos ops [OP]                              each operator with its mathematical instruction
    nacos ops analyze MODEL.onnx [--json]       ops ranked by share of latency, FLOPs, bytes, GFLOP/s, rewrites
    nacos gos MODEL.onnx --dataset D -o OUT/    operator search (GOS): Pareto set, report.md, artifacts
    nacos optimize [--space S | --model M.onnx] joint architecture × schedule search: pareto.json/png, report.md,
        [--dataset D] [--budget-minutes M] -o OUT/   artifacts + ONNX per front member; --resume continues a run
    nacos inspect MODEL.onnx [--json]           per-node op, shapes, FLOPs, params; totals
    nacos compile MODEL.onnx -o OUT/ [--json]   compiled artifact (model.so + nacos.json) and summary.json
        [--db PATH]                             ... using the best tuned schedule per kernel from a tuning database
    nacos tune MODEL.onnx --trials N --db PATH  schedule search; every measurement is kept in the database
    nacos bench MODEL.onnx|ZOO@SIZE [--db PATH] nacos vs onnxruntime, PyTorch, TVM Relax (untuned, MetaSchedule),
        [--json OUT] [--plot OUT.png]           timed side by side; ratios to onnxruntime

Exit codes: 0 success, 2 bad input (the one-line reason goes to stderr and nothing is written), 1 internal error,
3 (optimize) no candidate met the latency/memory budget (the closest ones are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

EXIT_BAD_INPUT = 2
REDIRECTED_WIDTH = 240  # columns of a table written to a file or a pipe


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _bad_input_types() -> tuple[type, ...]:
    from ir.frontends import ModelImportError
    from ir.registry import UnsupportedOpError
    from ir.verify import IRError
    from nacos.compiled import InputError
    from nacos.outdir import OutputFolderError
    from schedules.fusion import SettingError

    return (UsageError, ModelImportError, UnsupportedOpError, IRError, InputError, OutputFolderError,
            FileNotFoundError, SettingError)


def open_db(path: str, readonly: bool):
    """The tuning database at ``path``, or a one-line error for a missing, unreadable or foreign file."""
    import sqlite3

    from schedules.database import Database

    p = Path(path)
    if readonly and not p.exists():
        raise UsageError(f"{path}: no such tuning database")
    if p.exists() and not p.is_file():
        raise UsageError(f"{path}: a folder, not a tuning database")
    try:
        return Database(path, readonly=readonly)
    except (ValueError, sqlite3.Error, OSError) as e:
        raise UsageError(f"{path}: cannot be used as a tuning database ({e})") from None


def _parse_shapes(items: list[str] | None) -> dict | None:
    """``--input-shape x=1,3,224,224`` → {"x": (1, 3, 224, 224)}."""
    if not items:
        return None
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        if name in shapes:
            raise UsageError(f"--input-shape {name!r} is given twice")
        try:
            if not sep:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
            if not name or any(d < 1 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise UsageError(f"--input-shape {item!r}: expected NAME=D1,D2,... with every dimension at least 1, "
                             "e.g. input=1,3,224,224") from None
    return shapes


def _load(args) -> "object":
    import nacos

    path = Path(args.model)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    return nacos.load(path, input_shapes=_parse_shapes(args.input_shape))


def _console():
    from rich.console import Console

    # rich fits tables to 80 columns when the output is not a terminal: a redirected table lost its shapes to "…"
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=REDIRECTED_WIDTH if wide else None)


# ---- nacos ops ---------------------------------------------------------------------------------------------
def cmd_ops(args) -> int:
    from ir.registry import all_ops

    if args.op == "analyze":
        from nacos.operator_search import cmd_ops_analyze

        return cmd_ops_analyze(args)
    if args.model:
        raise UsageError(f"unexpected argument {args.model!r}: only `nacos ops analyze MODEL.onnx` takes a model")
    ops = all_ops()
    if args.op:
        if args.op not in ops:
            raise UsageError(f"unknown op {args.op!r}; known ops: {', '.join(ops)}")
        ops = {args.op: ops[args.op]}
    out = []
    for name, opdef in ops.items():
        text = ""
        if opdef.example is not None:
            attrs, in_types = opdef.example()
            out_type = opdef.infer(attrs, in_types)
            instr = opdef.instruction(attrs, in_types, out_type)
            sig = ", ".join(f"{n}: {t}" for n, t in zip(instr.inputs, in_types))
            attr_text = ", ".join(f"{k}={v}" for k, v in attrs.items())
            text = f"  example: {name}({sig}){' {' + attr_text + '}' if attr_text else ''} -> {out_type}\n" + \
                "\n".join("    " + line for line in str(instr).splitlines())
        out.append({"op": name, "doc": opdef.doc, "instruction": text})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for row in out:
        print(f"{row['op']}: {row['doc']}")
        if row["instruction"]:
            print(row["instruction"])
        print()
    return 0


# ---- nacos inspect -----------------------------------------------------------------------------------------
def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def cmd_inspect(args) -> int:
    import nacos

    graph = _load(args)
    info = nacos.inspect(graph)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.table import Table

    table = Table(title=f"{info['name']}  (hash {info['hash']})")
    for col in ("node", "op", "output", "FLOPs", "MACs", "params", "bytes", "FLOP/B"):
        table.add_column(col, justify="right" if col not in ("node", "op") else "left")
    for r in info["nodes"]:
        table.add_row(r["name"], r["op"], "x".join(map(str, r["output"])), _fmt(r["flops"]), _fmt(r["macs"]),
                      _fmt(r["params"]), _fmt(r["bytes_read"] + r["bytes_written"]), f"{r['intensity']:.2f}")
    t = info["totals"]
    table.add_section()
    table.add_row("total", f"{t['nodes']} nodes", "", _fmt(t["flops"]), _fmt(t["macs"]), _fmt(t["params"]),
                  _fmt(t["bytes_read"] + t["bytes_written"]), f"{t['intensity']:.2f}")
    _console().print(table)
    return 0


# ---- nacos compile -----------------------------------------------------------------------------------------
def _layout_argument(s) -> None:
    from schedules.fusion import LAYOUTS

    s.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="activation layout of the kernels: blocked (NCHW[b]c convolution chains, the default; "
                        "NACOS_LAYOUT sets it too) or nchw; tune and compile with the same one")


def cmd_compile(args) -> int:
    import nacos

    from nacos.outdir import check_output, staged

    graph = _load(args)
    out = check_output(args.output, args.force, [args.model] + ([args.db] if args.db else []))
    t0 = time.perf_counter()
    schedules = None
    if args.db:
        schedules = open_db(args.db, readonly=True).schedules(graph, layout=args.layout)
    with _console().status(f"compiling {graph.name} ({len(graph.compute_nodes)} nodes)"):
        model = nacos.compile(graph, schedules=schedules, layout=args.layout)
    seconds = time.perf_counter() - t0
    # written into a temporary folder first, so a failure leaves nothing behind
    with staged(out) as tmp:
        model.export(tmp)
        info = nacos.inspect(graph)
        summary = {
            "model": str(args.model), "graph_hash": info["hash"], "target": model.target,
            "compile_seconds": round(seconds, 3), "kernels": len(model.kernels),
            "tuned_kernels": getattr(getattr(model, "stats", None), "tuned", 0), "db": args.db,
            "inputs": info["inputs"], "outputs": info["outputs"], "totals": info["totals"],
            "kernel_groups": [{"name": k.name, "ops": list(k.ops), "nodes": list(k.nodes)} for k in model.kernels],
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"compiled {graph.name}: {len(model.kernels)} kernels in {seconds:.1f}s -> {args.output}/ "
              f"(model.so, nacos.json, summary.json)")
    return 0


# ---- nacos tune --------------------------------------------------------------------------------------------
def _runner(args):
    if not args.rpc:
        for flag, given in (("--rpc-key", args.rpc_key), ("--cross-cc", args.cross_cc)):
            if given:
                raise UsageError(f"{flag} is for measuring on a board: it needs --rpc HOST:PORT")
        if not args.cache_flush:
            return None  # the tuner's own local runner
        from schedules.runner import LocalRunner

        return LocalRunner(cache_flush=True)
    if not args.rpc_key:
        raise UsageError("--rpc needs --rpc-key (the device key the board registered with the tracker)")
    from schedules.rpc import RPCRunner

    try:
        return RPCRunner(args.rpc, args.rpc_key, timeout=args.timeout, cache_flush=args.cache_flush)
    except ValueError as e:
        raise UsageError(f"--rpc: {e}") from None


def cmd_tune(args) -> int:
    import nacos
    from schedules.progress import fmt_seconds

    if args.trials < 1:
        raise UsageError(f"--trials {args.trials}: must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be at least 1")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.screen < 1:
        raise UsageError(f"--screen {args.screen}: must be at least 1")
    if args.screen > 1 and args.cost_model != "xgb-compiled":
        raise UsageError(f"--screen {args.screen} needs --cost-model xgb-compiled (the model that reads machine code)")
    target = None
    if args.target:
        example = '\'{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}\''
        try:
            target = json.loads(args.target)
        except ValueError:
            raise UsageError(f"--target {args.target!r}: expected a JSON target dict, e.g. {example}") from None
        if not isinstance(target, dict):
            raise UsageError(f"--target {args.target!r}: expected a JSON target dict, e.g. {example}")
        from schedules.workload import target_key

        try:
            target_key(target)
        except Exception as e:  # noqa: BLE001 — TVM's own message names what is wrong with the target
            raise UsageError(f"--target {args.target!r}: {str(e).splitlines()[0] if str(e) else e}") from None
        from schedules.tvm_env import not_runnable_here

        why = None if args.rpc else not_runnable_here(target)
        if why:  # every measurement would fail, and the database would keep the failures
            raise UsageError(f"--target: {why}, so its kernels cannot be timed here; measure them on the board "
                             "with --rpc HOST:PORT --rpc-key KEY (docs/tuning.md)")
    graph = _load(args)
    runner = _runner(args)
    if args.rpc:
        try:  # the tracker is checked before the database is touched: a failed check writes nothing
            runner.start()
        except ConnectionError as e:
            runner.close()
            raise UsageError(str(e)) from None
    open_db(args.db, readonly=False).close()
    builder = None
    if args.cross_cc or args.workers:
        from schedules.measure import LocalBuilder

        builder = LocalBuilder(workers=args.workers, cross_cc=args.cross_cc)
    from schedules.database import MixedCachesError

    try:
        report = nacos.tune(graph, trials=args.trials, db=args.db, target=target, runner=runner, builder=builder,
                            batch_size=args.batch_size, seed=args.seed, progress=not args.json and not args.quiet,
                            layout=args.layout, cost_model=args.cost_model, screen=args.screen)
    except (MixedCachesError, ConnectionError) as e:  # ConnectionError: schedules.rpc.TrackerError
        raise UsageError(str(e)) from None
    finally:
        for part in (runner, builder):
            if part is not None:
                part.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"{report.graph}: {report.new_measurements} new measurements, "
                        f"{sum(t.trials for t in report.tasks)} in {report.db} ({report.seconds:.0f} s)")
    for col in ("kernel", "×", "trials", "fail", "default", "best", "speedup"):
        table.add_column(col, justify="left" if col == "kernel" else "right")
    for t in report.tasks:
        table.add_row(t.name, str(t.count), str(t.trials), str(t.failures), fmt_seconds(t.default_latency),
                      fmt_seconds(t.best_latency), f"{t.speedup:.2f}×" if t.speedup else "—")
    if report.default_latency and report.tuned_latency:
        table.add_section()
        table.add_row("sum of kernels", "", "", "", fmt_seconds(report.default_latency),
                      fmt_seconds(report.tuned_latency), f"{report.default_latency / report.tuned_latency:.2f}×")
    _console().print(table)
    return 0


# ---- nacos bench -------------------------------------------------------------------------------------------
def _check_output_file(flag: str, path: str) -> None:
    """Fail before a long run, not after it, when its result could not be written to ``path``."""
    from nacos.outdir import unwritable

    if Path(path).is_dir():
        raise UsageError(f"{flag} {path}: is a folder")
    why = unwritable(path)
    if why:
        raise UsageError(f"{flag} {path}: cannot write there ({why})")


def cmd_bench(args) -> int:
    from nacos.benchmark import BenchError, run_bench

    if args.trials < 0 or args.metaschedule_trials < 0:
        raise UsageError("--trials and --metaschedule-trials cannot be negative")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be at least 1")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            _check_output_file(flag, path)
    if args.db:
        open_db(args.db, readonly=args.trials == 0).close()
    console = _console()
    try:
        with console.status("benchmarking") as status:
            result = run_bench(args.model, db=args.db, trials=args.trials, threads=args.threads,
                               metaschedule_trials=args.metaschedule_trials,
                               input_shapes=_parse_shapes(args.input_shape), rounds=args.rounds,
                               relax=not args.no_relax, progress=lambda msg: status.update(msg),
                               nchw_too=args.nchw_too, isolated=args.isolated, apart_too=args.apart_too)
    except BenchError as e:
        raise UsageError(str(e)) from None
    from nacos.bench_report import plot, print_result

    print_result(result, console)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(result, args.plot)}")
    return 0


# ---- entry -------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nacos", description="Neural architecture and compiler optimization co-search")
    p.add_argument("--version", action="version", version=f"nacos {__import__('nacos').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ops", help="list operators with their mathematical instructions")
    s.add_argument("op", nargs="?", help="show only this op; or `analyze` (then MODEL)")
    s.add_argument("model", nargs="?", help="with `analyze`: an .onnx file to rank ops by share of latency")
    s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...", help="(analyze) fix an input shape")
    s.add_argument("--db", metavar="PATH", help="(analyze) tuned schedules and latencies from this database")
    s.add_argument("--latency", choices=("measured", "roofline"), help="(analyze) measured (default) or predicted")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_ops)

    from nacos.operator_search import add_arguments as _gos_arguments

    _gos_arguments(sub.add_parser("gos", help="operator search: replace the costliest ops with cheaper math"))

    from nacos.joint.cli import add_arguments as _optimize_arguments

    _optimize_arguments(sub.add_parser("optimize", help="joint search of the network and its schedules: "
                                       "Pareto front (accuracy, latency, memory), artifacts, report"))

    for name, fn, text in (("inspect", cmd_inspect, "per-node shapes, FLOPs, params and totals of a model"),
                           ("compile", cmd_compile, "compile a model into a deployable artifact")):
        s = sub.add_parser(name, help=text)
        s.add_argument("model", help="an .onnx file")
        s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                       help="fix a symbolic input shape (repeatable)")
        s.add_argument("--json", action="store_true", help="print JSON")
        if name == "compile":
            s.add_argument("-o", "--output", required=True, help="artifact folder to write")
            s.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
            s.add_argument("--db", metavar="PATH", help="use the best schedule per kernel from this tuning database")
            _layout_argument(s)
        s.set_defaults(fn=fn)

    s = sub.add_parser("tune", help="search schedules for a model's kernels (measurements kept in --db)")
    s.add_argument("model", help="an .onnx file")
    s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help="fix a symbolic input shape (repeatable)")
    s.add_argument("--trials", type=int, default=64,
                   help="measurements wanted in all, those already in the database included (default 64)")
    s.add_argument("--db", required=True, metavar="PATH", help="SQLite tuning database (created if missing)")
    s.add_argument("--batch-size", type=int, default=8, help="candidates measured per round (default 8)")
    s.add_argument("--cost-model", choices=("xgb", "xgb-compiled", "random"), default="xgb",
                   help="what ranks candidates before they are measured (default xgb: the schedule's knobs and loop "
                        "nest; xgb-compiled also reads built candidates' machine code, with --screen)")
    s.add_argument("--screen", type=int, default=1, metavar="K",
                   help="with --cost-model xgb-compiled: build K times the candidates of a round and measure those "
                        "the model ranks best from their code (default 1: no screening)")
    s.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
    s.add_argument("--workers", type=int, help="builder processes (default: one per core, at most 2)")
    s.add_argument("--rpc", metavar="HOST:PORT", help="measure on a board through this TVM RPC tracker")
    s.add_argument("--rpc-key", metavar="KEY", help="device key of the board at the tracker")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per remote measurement (default 60)")
    s.add_argument("--target", metavar="JSON", help="target dict for a board (default: this CPU)")
    s.add_argument("--cross-cc", metavar="CC", help="cross compiler for the board, e.g. aarch64-linux-gnu-g++")
    s.add_argument("--cache-flush", action="store_true",
                   help="flush the CPU caches before every timed repeat (weights and output start cold, as in a "
                        "model where other layers ran in between); a database holds measurements of one kind")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    _layout_argument(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_tune)

    s = sub.add_parser("bench", help="time nacos against onnxruntime, PyTorch and TVM Relax, side by side")
    s.add_argument("model", help="an .onnx file, or a zoo model as NAME or NAME@SIZE (e.g. resnet18@224)")
    s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help="fix a symbolic input shape of an ONNX file (repeatable)")
    s.add_argument("--db", metavar="PATH", help="compile nacos with the best schedules from this tuning database")
    s.add_argument("--trials", type=int, default=0,
                   help="tune nacos first (nacos tune) up to N measurements in the database (default 0: no tuning)")
    s.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: usable cores)")
    s.add_argument("--metaschedule-trials", type=int, default=0, metavar="N",
                   help="also time TVM Relax tuned by MetaSchedule with N trials (default 0: skip)")
    s.add_argument("--no-relax", action="store_true", help="skip TVM Relax untuned (slow on big models)")
    s.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    s.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    s.add_argument("--plot", metavar="OUT.png", help="draw a bar chart of the medians")
    s.add_argument("--nchw-too", action="store_true",
                   help="also time nacos without the blocked NCHW[b]c layout (nacos-nchw)")
    s.add_argument("--apart-too", action="store_true",
                   help="also time nacos with each depthwise → 1×1 chain compiled as two kernels (nacos-apart)")
    s.add_argument("--isolated", action="store_true",
                   help="also time nacos, onnxruntime and PyTorch each in a process of its own, the others stopped "
                        "(idle thread pools of one runtime otherwise share the cores with the next)")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # warnings read as one line, like errors (not "path/file.py:84: UserWarning: …" and the source line)
    formatted = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"nacos {args.command}: warning: {message}\n"
    try:
        return args.fn(args)
    except BrokenPipeError:  # `nacos ops | head`: the reader left; the rest of the output goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:  # noqa: BLE001
        if isinstance(e, _bad_input_types()):
            print(f"nacos {args.command}: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    finally:
        warnings.formatwarning = formatted


if __name__ == "__main__":
    # ``python -m nacos.cli`` runs this file as __main__, a second copy of the module: subcommands living in other
    # modules raise nacos.cli.UsageError, which is not this copy's class, so dispatch through the real module
    from nacos.cli import main as _main

    sys.exit(_main())
