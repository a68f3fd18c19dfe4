"""``nacos.optimize``: the joint architecture × schedule co-search, end to end.

    result = nacos.optimize("hyt", "digits", out="out/", budget_minutes=4)
    result.pareto                       # measured front members: accuracy, latency_final_ms, params, artifact, …
    result.best(latency_max_ms=0.2).load()(x)   # selects on latency_final_ms (latency_ms where it is missing)

Writes ``OUT/pareto.json``, ``OUT/pareto.png``, ``OUT/report.md`` and ``OUT/members/<id>/`` (compiled artifact +
``model.onnx``) per front member. ``baseline=True`` also runs the two-stage baseline (NAS judged on default
schedules, then tuning of its front) with the same wall budget, in its own database, and plots both fronts.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import time
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from nacos.joint.result import Result, final_front, latency_model_quality, member
from nacos.outdir import held_input, is_cwd_or_above
from nacos.joint.runs import OptimizeConfig, RunContext

DB_NAME = "nacos.db"
BASELINE_DB = "baseline.db"


class OptimizeError(ValueError):
    """Bad input to ``nacos optimize`` (one line, says what is valid)."""


def _validate(cfg: OptimizeConfig) -> None:
    from nacos import data, spaces
    from nacos.joint.fidelity import FIDELITIES
    from nacos.targets import create as create_target

    if cfg.model is None and cfg.space not in spaces.available():
        raise OptimizeError(f"unknown search space {cfg.space!r}; available: {', '.join(spaces.available())} "
                            "(or --model MODEL.onnx to search a model's operator rewrites)")
    try:
        create_target(cfg.target)
    except (ValueError, NotImplementedError) as exc:
        raise OptimizeError(str(exc)) from None
    if cfg.fidelity not in FIDELITIES:
        raise OptimizeError(f"unknown fidelity {cfg.fidelity!r}; available: {', '.join(FIDELITIES)}")
    if str(cfg.dataset) not in data.available() and not Path(str(cfg.dataset)).exists():
        raise OptimizeError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(data.available())} "
                            "(or a folder of class folders / an .npz file)")
    if str(cfg.dataset) in ("folder", "npz") and not Path(str(cfg.dataset)).exists():
        raise OptimizeError(f"dataset {cfg.dataset!r}: give the path of the folder of class folders or of the .npz")
    for name in ("budget_minutes", "latency_max_ms", "memory_max_mb"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise OptimizeError(f"{name} must be a number > 0, got {value}")
    if cfg.population < 4:
        raise OptimizeError(f"population must be ≥ 4, got {cfg.population}")
    for name in ("epochs", "measure_per_generation", "menu_size"):
        if getattr(cfg, name) < 1:
            raise OptimizeError(f"{name} must be ≥ 1, got {getattr(cfg, name)}")
    for name in ("slots", "tune_trials", "top_kernels"):
        if getattr(cfg, name) < 0:
            raise OptimizeError(f"{name} cannot be negative, got {getattr(cfg, name)}")


def _check_out(out: Path, resume: bool, force: bool, inputs: tuple[str | None, ...] = ()) -> bool:
    """Whether ``out`` holds a run; errors for what cannot be done there. Writes nothing.

    A folder that holds no run must be empty (or missing), as for ``nacos compile``/``gos``, unless ``force``:
    then, like a run started over, it is replaced. ``force`` never deletes the current folder, one above it, or
    one holding an input (``inputs``: the model and dataset paths)."""
    if out.exists() and not out.is_dir():
        raise OptimizeError(f"{out} exists and is not a folder")
    has_run = (out / DB_NAME).exists() or (out / "checkpoint.pkl").exists()
    if resume and not has_run:
        raise OptimizeError(f"{out}: nothing to resume (no {DB_NAME} there)")
    if resume:
        return has_run
    if has_run and not force:
        raise OptimizeError(f"{out} holds a run already: --resume continues it, --force starts over")
    if not has_run and out.exists() and any(out.iterdir()) and not force:
        raise OptimizeError(f"{out} exists and is not empty, and holds no nacos optimize run "
                            "(use --force to overwrite)")
    if force and out.exists() and any(out.iterdir()):
        if is_cwd_or_above(out):
            raise OptimizeError(f"{out} is the current folder or one above it: --force would delete it; "
                                "give the run a folder of its own")
        held = held_input(out, [i for i in inputs if i is not None and Path(i).exists()])
        if held:
            raise OptimizeError(f"{out} holds the input {held}: --force would delete it; give another output folder")
    return has_run


def _prepare_out(out: Path, start_over: bool) -> None:
    """Create ``out`` (after :func:`_check_out`), emptied first when it is started over (``--force``)."""
    if start_over:
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptimizeError(f"{out}: cannot create the folder ({e.strerror or e})") from None


def _absolute(path: str | None) -> str | None:
    """A path as the saved configuration keeps it: absolute, so ``--resume`` works from any folder."""
    return str(Path(path).resolve()) if path is not None and Path(path).exists() else path


def _load_space(cfg: OptimizeConfig, dataset):
    """(space, teacher graph): a named space, or the GOS rewrites of ``cfg.model`` (distilled from the model)."""
    if cfg.model is None:
        from nacos import spaces

        return spaces.create(cfg.space), None
    import nacos
    from nacos.spaces import from_model

    graph = nacos.load(cfg.model)
    try:
        space = from_model(graph)
    except ValueError as e:  # e.g. no operator of the model has a rewrite
        raise OptimizeError(f"--model {cfg.model}: {e}") from None
    return space, graph


def _check_fit(space, ds) -> None:
    """The space's networks must take the dataset's images and give its classes: fail now, not mid-search."""
    try:
        space.to_graph(space.original(), ds.input_shape, ds.num_classes)
    except ValueError as e:
        raise OptimizeError(f"dataset {ds.name} ({ds.num_classes} classes of {ds.input_shape}) does not fit: "
                            f"{e}") from None


def _saved_config(out: Path) -> OptimizeConfig | None:
    """The configuration the run in ``out`` started with; None when there is none."""
    from nacos.joint.store import RunStore

    db = out / DB_NAME
    if not db.is_file():
        return None
    try:
        store = RunStore(str(db), "joint")
        try:
            saved = store.get_meta("config")
        finally:
            store.close()
    except sqlite3.Error as e:
        raise OptimizeError(f"{db}: cannot be read as a run's database ({e})") from None
    return OptimizeConfig(**saved) if saved else None


def _same(name: str, value: Any, saved: Any) -> bool:
    if name in ("dataset", "model"):  # saved absolute when they are paths (see _absolute)
        value = _absolute(None if value is None else str(value))
    return value == saved


def _ignored_on_resume(saved: OptimizeConfig, given: dict[str, Any]) -> list[tuple[str, Any, str, Any]]:
    """What a resume of the run ``saved`` ignores of the options ``given`` explicitly: (name, value given, name
    kept, value kept), in :class:`OptimizeConfig`'s order. A resumed run keeps its whole configuration (its
    search space, budget, genome and constraints define the checkpoint it continues), so every option given that
    differs from the saved one is ignored; ``space`` given to a run of a ``model`` is ignored too."""
    ignored = []
    for f in fields(OptimizeConfig):
        if f.name not in given:
            continue
        value = given[f.name]
        if f.name == "space" and saved.model is not None and not _same("model", given.get("model"), saved.model):
            ignored.append(("space", value, "model", saved.model))  # the run searched a model, not a space
        elif f.name == "model" and value is not None and saved.model is None:
            ignored.append(("model", value, "space", saved.space))
        elif not _same(f.name, value, getattr(saved, f.name)):
            ignored.append((f.name, value, f.name, getattr(saved, f.name)))
    return ignored


def resume_ignored(out: str | Path, given: dict[str, Any]) -> list[tuple[str, Any, str, Any]]:
    """What ``optimize(out=out, resume=True, **given)`` would ignore of ``given`` (see :func:`_ignored_on_resume`);
    empty when ``out`` holds no saved run (``optimize`` then says what is wrong)."""
    out = Path(out)
    saved = _saved_config(out) if out.is_dir() else None
    return _ignored_on_resume(saved, given) if saved is not None else []


def optimize(space: str | None = None, dataset: str | None = None, *, out: str | Path = "nacos-optimize",
             resume: bool = False, force: bool = False, progress: bool = False,
             on_event: Callable[..., None] | None = None, **options: Any) -> Result:
    """Run (or, with ``resume``, continue) a joint search; see :class:`nacos.joint.runs.OptimizeConfig` for the
    options (``model``, ``target``, ``fidelity``, ``epochs``, ``budget_minutes``, ``latency_max_ms``,
    ``memory_max_mb``, ``population``, ``slots``, ``menu_size``, ``measure_per_generation``, ``tune_trials``,
    ``top_kernels``, ``seed``, ``baseline``); ``space`` and ``dataset`` default to ``"hyt"`` and ``"digits"``.

    ``out`` must be missing, empty, or (``resume``/``force``) hold a run; ``force`` replaces a folder holding
    anything else too. A resumed run keeps the configuration it started with: the arguments passed here that
    differ from it are ignored, with a warning naming them."""
    from nacos import data as data_mod
    from nacos.joint.progress import SearchProgress
    from nacos.joint.report import write_outputs
    from nacos.joint.store import RunStore

    out = Path(out)
    unknown = set(options) - {f.name for f in fields(OptimizeConfig)}
    if unknown:
        raise OptimizeError(f"unknown options {sorted(unknown)}")
    given = dict(options)  # what the caller passed: a resume says which of these it ignores
    if space is not None:
        given["space"] = space
    if dataset is not None:
        given["dataset"] = str(dataset)
    cfg = OptimizeConfig(**given)
    # everything that can be wrong is checked before the folder is touched: a failed start leaves no run behind
    _check_out(out, resume, force, inputs=(cfg.model, cfg.dataset))
    saved = _saved_config(out) if resume else None
    if saved is not None:
        ignored = _ignored_on_resume(saved, given)
        if ignored:
            warnings.warn(f"{out}: resuming: the saved run's settings are kept; ignored: "
                          + ", ".join(f"{k}={v!r} (kept {kk}={kv!r})" if kk != k else f"{k}={v!r} (kept {kv!r})"
                                      for k, v, kk, kv in ignored), stacklevel=2)
        cfg = saved  # a resumed run keeps its configuration
    else:
        cfg = replace(cfg, dataset=_absolute(cfg.dataset), model=_absolute(cfg.model))
    _validate(cfg)  # the configuration the run will use: a resume's saved one, else the one given
    start_over = not resume and out.is_dir() and any(out.iterdir())  # --force: _check_out allowed it
    ds = data_mod.load(cfg.dataset)
    space_obj, teacher = _load_space(cfg, ds)
    if cfg.model is not None:  # a model takes one input shape and gives its classes (the named spaces adapt)
        _check_fit(space_obj, ds)
    _prepare_out(out, start_over=start_over)
    store = RunStore(str(out / DB_NAME), "joint")
    if not (resume and store.get_meta("config")):
        store.set_meta("config", cfg.as_dict())
    store.close()
    show = SearchProgress(cfg.budget_minutes * 60, enabled=progress, on_event=on_event)
    payload = _run_joint(cfg, out, ds, space_obj, teacher, show)
    if cfg.baseline:
        from nacos.joint.baseline import two_stage

        payload["baseline"] = two_stage(cfg, out, ds, space_obj, teacher, show)
    write_outputs(payload, out)
    show.stop()
    return Result(payload, out)


def _run_joint(cfg: OptimizeConfig, out: Path, ds, space, teacher, show) -> dict:
    ctx = RunContext(cfg, out, out / DB_NAME, "joint", schedule_genes=True, tune=True, space=space, dataset=ds,
                     teacher=teacher)
    try:
        show.start("joint", ctx.elapsed())
        state = ctx.search(time.time() + cfg.budget_minutes * 60 - ctx.elapsed_before, show)
        return finish(ctx, "joint", state.generation, show)
    finally:
        ctx.close()


def finish(ctx: RunContext, method: str, generations: int, show, rows: list[dict] | None = None,
           final_seconds: float = 120.0) -> dict:
    """The payload of a finished run: the measured front, all measured rows, stats; non-front artifacts are removed.

    The front is chosen on the search's timings (``latency_ms``); then (``compare_default``) its members and their
    default-schedule builds are timed together in interleaved rounds (:func:`final_side_by_side`; default builds
    made for as many members as ``final_seconds`` allows), which gives ``latency_final_ms``,
    ``latency_default_ms`` and ``speedup_vs_default``."""
    cfg = ctx.cfg
    rows = rows if rows is not None else ctx.store.measured()
    front, violations = final_front(rows, cfg.latency_max_ms, cfg.memory_max_mb)
    front_ids = {r["id"] for r in front}
    keep = front_ids | {m["id"] for m in (violations or {}).get("closest", [])}  # the report links to these
    if cfg.compare_default:
        final_side_by_side(ctx, front, time.time() + final_seconds, show, method)
        for r in front:
            ctx.store.add_measured(r["key"], r)
    for r in rows:
        r["front"] = r["id"] in front_ids
        if r["id"] not in keep and r.get("artifact"):
            ctx.measurer.remove_artifact(r["id"])
            r["artifact"] = r["onnx"] = None
            ctx.store.add_measured(r["key"], r)  # a resumed run must not point at the removed folder
    stats = {"evaluations": ctx.store.evaluations(), "generations": generations,
             "measured": sum(1 for r in rows if r.get("latency_ms")), "failed": sum(1 for r in rows if r.get("error")),
             "kernel_measurements": ctx.db.count(), "seconds": round(ctx.elapsed(), 1),
             "training_seconds": round(ctx.store.training_seconds(), 1), "latency_model": latency_model_quality(rows),
             "calibration": {"a": ctx.evaluator.calibration.a, "b_us": ctx.evaluator.calibration.b * 1e6}}
    return {"version": 1, "method": method, "config": {**cfg.as_dict(), "target": ctx.target.name,
                                                        "target_key": ctx.tkey},
            "stats": stats, "pareto": [member(r) for r in front],
            "measured": [dict(member(r), front=r["front"], error=r.get("error")) for r in rows],
            "baseline": None, "budget_violations": violations}


FINAL_ROUNDS = 6   # interleaved rounds of the end-of-run timing (each: every member and its default build once)


def final_side_by_side(ctx: RunContext, front: list[dict], stop_at: float, show, method: str,
                       rounds: int = FINAL_ROUNDS) -> None:
    """Time the front members and their default-schedule builds together, in interleaved rounds.

    The search timed each member once, mid-search (``latency_ms``), on a machine whose speed drifts; those single
    timings are not comparable with each other nor with a default timed later. Here every member's tuned artifact
    and the same trained network compiled with default schedules are timed once per round, all members in the
    same rounds (the order reversed every other round, tuned and default swapped: the first after a pause runs
    slower), and each row gets the medians of those rounds: ``latency_final_ms`` (the member) and
    ``latency_default_ms`` (its default build), and ``speedup_vs_default`` = their ratio. Default builds are made
    while ``stop_at`` allows; a member whose build or timing fails gets None and ``error_default``."""
    import numpy as np

    from nacos.joint import front as front_mod

    built = []
    for r in front:
        if time.time() >= stop_at:
            break
        show.note(f"{method}: building {r['id']} with default schedules")
        try:
            built.append((r, *_tuned_and_default(ctx, r)))
        except Exception as exc:  # noqa: BLE001 — the member stays on the front without the comparison
            _no_final(r, exc)
    if not built:
        return
    show.note(f"{method}: timing {len(built)} front members and their default schedules, {rounds} interleaved rounds")
    times = {r["id"]: ([], []) for r, *_ in built}
    failed: set[str] = set()
    x = ctx.measurer.x
    for i in range(rounds):
        for r, tuned, default in (built if i % 2 == 0 else built[::-1]):
            if r["id"] in failed:
                continue
            t, d = times[r["id"]]
            pair = ((tuned, t), (default, d)) if i % 2 == 0 else ((default, d), (tuned, t))
            try:
                for model, into in pair:
                    into.append(front_mod.time_model(model, x, repeat=3))
            except Exception as exc:  # noqa: BLE001
                failed.add(r["id"])
                _no_final(r, exc)
    for r, *_ in built:
        if r["id"] in failed:
            continue
        t, d = times[r["id"]]
        r["latency_final_ms"] = float(np.median(t)) * 1e3
        r["latency_default_ms"] = float(np.median(d)) * 1e3
        r["speedup_vs_default"] = r["latency_default_ms"] / r["latency_final_ms"]
        r["final_rounds"] = len(t)
        r.pop("error_default", None)


def _no_final(row: dict, exc: Exception) -> None:
    row["latency_final_ms"] = row["latency_default_ms"] = row["speedup_vs_default"] = None
    row["error_default"] = f"{type(exc).__name__}: {exc}"


def _tuned_and_default(ctx: RunContext, row: dict):
    """(the member's compiled artifact, the same trained network compiled with default schedules)."""
    import nacos
    from nacos.joint.search import genome_of

    genome = genome_of(row, ctx.space.name)
    trained = ctx.oracle.trained_graph(genome.arch, ctx.evaluator.graph(genome))
    default = nacos.compile(trained)
    tuned = ctx.measurer.compiled.get(row["id"]) or nacos.Compiled.load(ctx.out / row["artifact"])
    return tuned, default
