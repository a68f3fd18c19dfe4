"""``nacos gos``: Grassroots Operator Search from the API and the command line.

    from nacos.operator_search import gos
    run = gos("model.onnx", "digits", out="out/gos", generations=4, population=8)
    run.payload["pareto"]          # members: choices, test accuracy, measured speedup over the original

    nacos gos MODEL.onnx --dataset digits -o OUT/     # OUT/pareto.json, OUT/report.md, OUT/members/<id>/...
    nacos ops analyze MODEL.onnx [--json]             # ops ranked by share of latency, with their rewrites

The search itself lives in :mod:`operators.gos`; this module loads the model, optionally trains it first, runs
the search, measures the Pareto members against the original side by side, and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from ir.graph import Graph


@dataclass(frozen=True, eq=False)
class GOSRun:
    result: Any              # operators.gos.search.SearchResult
    payload: dict            # what pareto.json holds
    effects: dict            # member key -> [OpEffect]
    out: Path | None = None
    compiled: dict = field(default_factory=dict, repr=False)   # member id / "original" -> nacos.Compiled


def _config(**overrides: Any):
    from operators.gos.search import FinetuneConfig, SearchConfig

    ft_names = {f.name for f in fields(FinetuneConfig)} - {"seed"}
    ft = {k[len("finetune_"):]: overrides.pop(k) for k in list(overrides)
          if k.startswith("finetune_") and k[len("finetune_"):] in ft_names}
    cfg = SearchConfig(**overrides)
    return replace(cfg, finetune=replace(cfg.finetune, seed=cfg.seed, **ft))


def gos(model: Any, dataset: Any = "digits", out: str | Path | None = None, *, latency: str = "measured",
        db: str | None = None, pretrain_epochs: int = 0, rounds: int = 15,
        progress: Callable[[str], None] | None = None, **config: Any) -> GOSRun:
    """Search rewrites of ``model``'s costliest ops (see :mod:`operators.gos.search`) and report the Pareto set.

    ``model``: an ir.Graph or anything ``nacos.load`` takes, trained on ``dataset`` (or trained here for
    ``pretrain_epochs``). ``config``: fields of ``SearchConfig`` (``generations=4``, ``population=8`` …) and of
    ``FinetuneConfig`` prefixed ``finetune_`` (``finetune_epochs=2``). With ``out`` it writes pareto.json,
    report.md and per-member artifacts there.
    """
    import torch

    import nacos
    from nacos.data import load
    from nacos.train import train
    from operators.gos.report import measure_side_by_side, op_effect, speedups
    from operators.gos.search import GOSSearch

    say = progress or (lambda msg: None)
    graph = model if isinstance(model, Graph) else nacos.load(model)
    data = load(dataset)
    if graph.input_types()[0].shape[1:] != data.input_shape[1:]:
        raise ValueError(f"model input {graph.input_types()[0].shape} does not fit {data.name} examples "
                         f"{data.input_shape}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if pretrain_epochs > 0:
            say(f"training the original for {pretrain_epochs} epochs")
            graph = train(graph, data, epochs=pretrain_epochs, progress=False).apply(graph)
        search = GOSSearch(graph, data, latency, _config(**config), db=db, progress=say)
        result = search.run()
        effects, cache = {}, {}
        for ev in result.pareto:
            for node, rw in ev.choices:
                if (node, rw) not in cache:
                    cache[node, rw] = op_effect(graph, node, rw, search.latency,
                                                lambda g: search._accuracy(g, "val"), search.transfer)
            effects[ev.key] = [cache[c] for c in ev.choices]
    finally:
        torch.set_num_threads(threads)
    schedules_for = _schedules_for(db)
    ids = {ev.key: f"m{k + 1}" for k, ev in enumerate(result.pareto)}
    say(f"timing the original and {len(ids)} Pareto members side by side")
    compiled: dict = {}
    timing = measure_side_by_side({"original": graph, **{ids[k]: result.graphs[k] for k in ids}}, schedules_for,
                                  rounds=rounds, compiled=compiled)
    sp = speedups(timing)   # fastest rounds, robust to a busy machine; spread and warning alongside
    if sp["warning"]:
        say(f"warning: {sp['warning']}")
    base = sp["original_s"]
    members = [dict(ev.as_dict(), id=ids[ev.key], **sp["members"][ids[ev.key]]) for ev in result.pareto]
    by = {ev.key: ev for ev in result.pareto}
    dropped = [dict(d.as_dict(), dominated_by=ids.get(d.dominated_by, d.dominated_by),
                    by_val_accuracy=(by.get(d.dominated_by) or result.original).val_accuracy,
                    by_latency_s=(by.get(d.dominated_by) or result.original).latency_s) for d in result.dropped]
    payload = {"graph": graph.name, "dataset": data.name, "latency_model": search.latency.kind,
               "timing": {"rounds": rounds, "schedules": "tuned (db)" if db else "default", "original_s": base,
                          **{k: sp[k] for k in ("original_median_s", "estimator", "spread", "spread_model",
                                                "busy", "warning")}},
               "genes": [{"node": n, "choices": list(c)} for n, c in result.genes],
               "original": dict(result.original.as_dict(), measured_s=base), "pareto": members,
               "dropped": dropped,
               "evaluations": [e.as_dict() for e in result.evaluations], "search_seconds": result.seconds}
    run = GOSRun(result, payload, effects, compiled=compiled)
    if out is not None:
        run = replace(run, out=write(Path(out), run, schedules_for))
    return run


def _schedules_for(db: str | None):
    if not db:
        return None
    from schedules.database import Database

    database = Database(db, readonly=True)
    return lambda g: database.schedules(g)


def write(out: Path, run: GOSRun, schedules_for=None) -> Path:
    """Write the run into ``out`` through a temporary folder, so a failure leaves nothing half-written."""
    from operators.gos.report import write_artifacts, write_report

    from nacos.outdir import staged

    with staged(out, ".nacos-gos-") as tmp:
        for member in run.payload["pareto"]:
            member["artifacts"] = write_artifacts(tmp, member["id"], run.result.graphs[member["key"]],
                                                  schedules_for, run.compiled.get(member["id"]))
        write_report(tmp, run.payload, run.effects)
    return out


# ---- command line ---------------------------------------------------------------------------------------------
def add_arguments(s) -> None:
    """The ``nacos gos`` sub-parser's arguments."""
    s.add_argument("model", help="an .onnx file (trained on --dataset, or use --pretrain-epochs)")
    s.add_argument("--dataset", default="digits", help="data set name or path (default digits)")
    s.add_argument("-o", "--output", required=True, help="folder for pareto.json, report.md and artifacts")
    s.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...", help="fix a symbolic input shape")
    s.add_argument("--generations", type=int, default=4, help="NSGA-II generations (default 4)")
    s.add_argument("--population", type=int, default=8, help="NSGA-II population (default 8)")
    s.add_argument("--max-ops", type=int, default=8, help="ops searched: the costliest replaceable (default 8)")
    s.add_argument("--finetune-epochs", type=int, default=2, help="distillation epochs per candidate (default 2)")
    s.add_argument("--finetune-steps", type=int, default=None,
                   help="cap on optimizer steps per searched candidate (not on the Pareto members' final fine-tune)")
    s.add_argument("--final-epochs", type=int, default=4, help="more epochs for each Pareto member (default 4)")
    s.add_argument("--pretrain-epochs", type=int, default=0, help="train the model first (default 0: as given)")
    s.add_argument("--latency", choices=("measured", "roofline"), default="measured",
                   help="latency model during the search (default measured per kernel)")
    s.add_argument("--db", metavar="PATH", help="tuning database: its best schedules for search and artifacts")
    s.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    s.add_argument("--seed", type=int, default=0, help="seed of the search and of fine-tuning (default 0)")
    s.add_argument("--json", action="store_true", help="print pareto.json's summary as JSON")
    s.set_defaults(fn=cmd_gos)


def cmd_gos(args) -> int:
    import sys

    from nacos.cli import UsageError, _console, _load, open_db
    from nacos.data import DatasetError
    from nacos.outdir import check_output

    for name in ("generations", "population", "max_ops", "rounds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.finetune_steps is not None and args.finetune_steps < 1:  # no step: no validation accuracy to rank by
        raise UsageError("--finetune-steps must be at least 1")
    graph = _load(args)
    out = check_output(args.output, args.force, [args.model, args.dataset] + ([args.db] if args.db else []))
    if args.db:
        open_db(args.db, readonly=True).close()
    console = _console()
    try:
        with console.status("GOS") as status:
            run = gos(graph, args.dataset, out, latency=args.latency, db=args.db,
                      pretrain_epochs=args.pretrain_epochs, rounds=args.rounds,
                      progress=lambda msg: status.update(f"GOS: {msg}"), generations=args.generations,
                      population=args.population, max_ops=args.max_ops, final_epochs=args.final_epochs,
                      finetune_epochs=args.finetune_epochs, finetune_max_steps=args.finetune_steps, seed=args.seed)
    except (DatasetError, ValueError) as e:
        if isinstance(e, DatasetError) or "does not fit" in str(e):
            raise UsageError(str(e)) from None
        raise
    p = run.payload
    if args.json:
        from nacos.jsonsafe import dumps

        if p["timing"].get("warning"):
            print(f"nacos gos: warning: {p['timing']['warning']}", file=sys.stderr)
        print(dumps({k: p[k] for k in ("graph", "dataset", "timing", "original", "pareto", "dropped")}, indent=2))
        return 0
    from operators.gos.report import dropped_text

    orig = p["original"]
    print(f"{p['graph']}: original test accuracy {orig['test_accuracy']:.3f}; {len(p['pareto'])} Pareto members "
          f"-> {args.output}/ (pareto.json, report.md, members/)")
    for m in p["pareto"]:
        r = m["speedup_rounds"]
        print(f"  {m['id']}: {m['speedup']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f}x), test accuracy "
              f"{m['test_accuracy']:.3f} ({(m['test_accuracy'] - orig['test_accuracy']) * 100:+.1f} pt): {m['key']}")
    for d in p["dropped"]:
        print(f"  {dropped_text(d)}")
    if p["timing"]["warning"]:
        print(f"nacos gos: warning: {p['timing']['warning']}", file=sys.stderr)
    return 0


def cmd_ops_analyze(args) -> int:
    """``nacos ops analyze MODEL.onnx``: the ops ranked by share of latency, with FLOPs, bytes and GFLOP/s."""
    import json

    from nacos.cli import UsageError, _console, _fmt, _load, open_db
    from operators.gos.analysis import analyze

    if not args.model:
        raise UsageError("ops analyze needs a model: nacos ops analyze MODEL.onnx")
    if args.db:
        open_db(args.db, readonly=True).close()
    graph = _load(args)
    result = analyze(graph, latency=args.latency or "measured", db=args.db)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return 0
    from rich.table import Table

    table = Table(title=f"{graph.name}: {result.total_seconds * 1e6:.0f} µs over {len(result.rows)} kernels "
                        f"({result.latency_model})")
    for col in ("#", "node (ops)", "time", "share", "GFLOP/s", "FLOPs", "bytes", "FLOP/B", "rewrites"):
        table.add_column(col, justify="left" if col in ("node (ops)", "rewrites") else "right")
    for r in result.rows:
        rw = f"{len(r.rewrites)}: −{r.best_flops_cut:.0%} FLOPs" if r.rewrites else ""
        ops = "+".join([r.op] + _ops(graph, r.fused))
        table.add_row(str(r.rank), f"{r.node} ({ops})", f"{r.seconds * 1e6:.1f} µs", f"{r.share:.1%}",
                      f"{r.gflops:.1f}", _fmt(r.flops), _fmt(r.bytes), f"{r.intensity:.1f}", rw)
    _console().print(table)
    return 0


def _ops(graph: Graph, names) -> list[str]:
    nodes = graph.node_map
    return [nodes[n].op for n in names]
