"""``nacos bench``: one model, every runtime, measured side by side in one process.

    result = run_bench("model.onnx")                     # or a zoo name: "resnet18@224", "mobilevit_xxs@32"
    result["runtimes"]["nacos"]["ratio_to_onnxruntime"]  # < 1: nacos is faster

Runtimes: nacos (default schedules, or the best ones from a tuning database, after an optional ``nacos.tune``),
onnxruntime (the reference), PyTorch eager (zoo models only: an ONNX file has no torch module), TVM Relax untuned
and, with a trial budget, TVM Relax tuned by MetaSchedule (:mod:`nacos.baselines`). Every runtime's outputs are
compared with onnxruntime's before timing; one that does not match is reported and not timed.

The machine is shared and noisy, so runtimes are timed in interleaved rounds (each round calls every runtime in
turn, alternating the order) and compared by their medians; results are ratios to onnxruntime. Each runtime gets
its own number of calls per round (about 20 ms of work), and slow ones (TVM Relax untuned runs whole seconds on
a 224×224 model) shrink the number of rounds to stay within a time budget. Between two runtimes' blocks the
bench sleeps 50 ms (untimed): onnxruntime's worker threads spin-wait after a run, and on 2 cores that made the
TVM runtime timed right after it 5–100× slower (small_cnn: nacos 0.2 ms alone, 2–25 ms right after ORT calls).
Turning ORT's spinning off instead would slow ORT itself (1.5–2× on small models), so it keeps its defaults.

Rendering (rich table, matplotlib chart) is in :mod:`nacos.bench_report`.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ORT = "onnxruntime"


class BenchError(ValueError):
    """Bad input to the bench (unknown model, bad size, missing database); one line."""


@dataclass
class BenchModel:
    """What every runtime is built from: the ONNX bytes, and the torch module when the model is a zoo model."""
    name: str
    onnx_bytes: bytes
    inputs: list[np.ndarray]
    input_shapes: dict[str, tuple]
    torch_module: Any = None
    source: str = "onnx"
    notes: list[str] = field(default_factory=list)


# ---- models ------------------------------------------------------------------------------------------------------
def onnx_bytes_of(module, example: tuple, input_names=("input",)) -> bytes:
    """TorchScript-based ONNX export (opset 17): ``dynamo=False`` because onnxscript is not installed."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=17, input_names=list(input_names))
    return buf.getvalue()


def zoo_model(name: str, size: int | None = None, seed: int = 0):
    """(torch module with seeded random weights and random batch-norm statistics, example input, ONNX bytes) of
    a :data:`nacos.zoo.MODELS` entry; ``size`` replaces the height and width of an image model's input."""
    import torch

    from nacos import zoo

    if name not in zoo.MODELS:
        raise BenchError(f"unknown zoo model {name!r}; known: {', '.join(zoo.MODELS)}")
    ctor, shape = zoo.MODELS[name]
    if size is not None:
        if len(shape) != 4:
            raise BenchError(f"{name} takes a {list(shape)} input: an @SIZE applies only to image models")
        if size < 1:
            raise BenchError(f"{name}@{size}: the size must be positive")
        shape = shape[:2] + (size, size)
    torch.manual_seed(seed)
    module = zoo.randomize_batchnorm_(ctor()).eval()
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))
    return module, example, onnx_bytes_of(module, (example,))


def resolve_model(model: str, input_shapes: dict | None = None, seed: int = 0) -> BenchModel:
    """An ``.onnx`` path or a zoo name (``resnet18``, ``resnet18@224``) as a :class:`BenchModel`."""
    path = Path(model)
    if path.suffix.lower() == ".onnx" or path.exists():
        return _from_file(path, input_shapes, seed)
    name, _, size = model.partition("@")
    if size and not size.isdigit():
        raise BenchError(f"{model!r}: expected NAME@SIZE with an integer size, e.g. resnet18@224")
    if input_shapes:
        raise BenchError("--input-shape applies to ONNX files; give a zoo model's size as NAME@SIZE")
    module, example, data = zoo_model(name, int(size) if size else None, seed)
    return BenchModel(f"{name}@{example.shape[-1]}" if example.dim() == 4 else name, data, [example.numpy()],
                      {"input": tuple(example.shape)}, module, "zoo")


def _from_file(path: Path, input_shapes: dict | None, seed: int) -> BenchModel:
    import onnx

    from ir.frontends import ModelImportError
    from nacos.baselines import onnx_inputs

    if not path.is_file():
        raise BenchError(f"{path}: no such file")
    if path.suffix.lower() != ".onnx":
        raise BenchError(f"{path}: expected an .onnx file or a zoo model name")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001 — protobuf's errors vary
        raise ModelImportError(f"{path.name}: not a valid ONNX file: {e}") from None
    try:
        specs = onnx_inputs(model, input_shapes)
    except ValueError as e:
        raise BenchError(f"{path.name}: {e}") from None
    rng = np.random.default_rng(seed)
    inputs, notes = [], []
    for name, shape, dtype in specs:
        if np.dtype(dtype).kind == "f":
            inputs.append(rng.standard_normal(shape).astype(dtype))
        else:  # indices, masks: zeros are always in range
            inputs.append(np.zeros(shape, dtype))
            notes.append(f"input {name!r} ({dtype}) is all zeros")
    notes.append("PyTorch eager: not measured (an ONNX file has no torch module; use a zoo name such as "
                 "resnet18@224)")
    return BenchModel(path.stem, data, inputs, {n: s for n, s, _ in specs}, None, "onnx", notes)


# ---- measuring ---------------------------------------------------------------------------------------------------
def measure(runners: dict[str, Callable[[], object]], rounds: int = 15, budget_s: float = 120.0,
            round_s: float = 0.02, settle_s: float = 0.05) -> dict[str, dict]:
    """Median seconds per call of each runner, in interleaved rounds (see the module docstring); ``settle_s`` is
    the untimed pause before each runner's block, for the previous runtime's spinning threads to go idle."""
    calls = {}
    for name, fn in runners.items():  # warm up, then calibrate with one timed call
        fn()
        time.sleep(settle_s)
        t0 = time.perf_counter()
        fn()
        calls[name] = time.perf_counter() - t0

    def block(fn):  # n calls after the settle pause; seconds per call
        def timed(n: int) -> float:
            time.sleep(settle_s)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t0) / n
        return timed
    return interleave({k: block(fn) for k, fn in runners.items()}, calls, rounds, budget_s, round_s)


def interleave(blocks: dict[str, Callable[[int], float]], calls: dict[str, float], rounds: int = 15,
               budget_s: float = 120.0, round_s: float = 0.02, block_overhead_s: float = 0.0) -> dict[str, dict]:
    """The interleaved rounds of :func:`measure` (and of :func:`nacos.bench_isolated.measure_isolated`):
    ``blocks[name](n)`` times ``n`` calls and returns seconds per call; ``calls``: one calibration call's seconds
    per runtime, which sets each runtime's calls per round (about ``round_s`` of work) and, with the untimed
    ``block_overhead_s`` per block, how many rounds fit in ``budget_s``."""
    number = {k: int(min(100, max(1, round(round_s / max(t, 1e-7))))) for k, t in calls.items()}
    per_round = sum(number[k] * calls[k] + block_overhead_s for k in blocks)
    rounds = max(3, min(rounds, int(budget_s / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {k: [] for k in blocks}
    for r in range(rounds):
        order = list(blocks) if r % 2 == 0 else list(reversed(blocks))  # no runner always goes first
        for name in order:
            samples[name].append(blocks[name](number[name]))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "rounds": len(v),
                "number": number[k]} for k, v in samples.items()}


def max_abs_error(got: list, ref: list) -> float:
    if len(got) != len(ref):
        return float("inf")
    errs = [float(np.max(np.abs(np.asarray(g, np.float64).reshape(np.shape(r)) - r))) if np.size(r) else 0.0
            for g, r in zip(got, ref)]
    return max(errs, default=0.0)


# ---- the bench ---------------------------------------------------------------------------------------------------
def _nacos_runtime(spec: BenchModel, db: str | None, trials: int, info: dict, say,
                   layout: str | None = None, chains: bool | None = None) -> Callable:
    """nacos' compiled model (tuned first with ``trials`` > 0; best schedules from ``db``); fills ``info``.
    ``chains=False``: depthwise → 1×1 chains compiled as two kernels (:data:`schedules.fusion.CHAINS`)."""
    import nacos

    graph = nacos.load(_onnx_model(spec), input_shapes=spec.input_shapes or None)
    if trials > 0:
        db_path = db or os.path.join(tempfile.mkdtemp(prefix="nacos-bench-"), "tune.db")
        if not db:
            spec.notes.append(f"nacos: tuned into a temporary database {db_path} (pass --db to keep it)")
        say(f"tuning nacos ({trials} trials)")
        report = nacos.tune(graph, trials=trials, db=db_path, layout=layout)
        info.update(tune_seconds=round(report.seconds, 2), new_measurements=report.new_measurements)
        db = db_path
    schedules = None
    if db:
        from schedules.database import Database

        schedules = Database(db).schedules(graph, layout=layout, chains=chains)
    say(f"compiling {spec.name} with nacos ({len(graph.compute_nodes)} nodes)")
    t0 = time.perf_counter()
    compiled = nacos.compile(graph, schedules=schedules, layout=layout, chains=chains)
    info.update(compile_s=round(time.perf_counter() - t0, 2), kernels=len(compiled.kernels),
                tuned_kernels=getattr(compiled.stats, "tuned", 0), db=db, trials=trials, graph=graph)
    return compiled


def _onnx_model(spec: BenchModel):
    import onnx

    return onnx.load_from_string(spec.onnx_bytes)


def run_bench(model: str, db: str | None = None, trials: int = 0, threads: int | None = None,
              metaschedule_trials: int = 0, input_shapes: dict | None = None, rounds: int = 15,
              budget_s: float = 120.0, relax: bool = True, seed: int = 0,
              progress: Callable[[str], None] | None = None, nchw_too: bool = False, isolated: bool = False,
              apart_too: bool = False) -> dict:
    """Build every runtime for ``model``, check it against onnxruntime, time them side by side; a JSON-able dict.

    ``nchw_too`` adds ``nacos-nchw``: the same model compiled without the blocked layout (tuned for it too when
    ``trials`` > 0), to show what layout selection is worth. ``apart_too`` adds ``nacos-apart``: the same model
    with each depthwise → 1×1 chain compiled as two kernels (:data:`schedules.fusion.CHAINS`; schedules from the
    same database, which holds no measurements of those kernels apart unless tuned with ``NACOS_CHAINS=0``),
    to show what the chains are worth. With tuned schedules (``db`` or ``trials``),
    ``nacos-untuned`` — the same graph with the default schedules — is timed too: what the tuning is worth.

    ``isolated`` also times nacos, onnxruntime and PyTorch each in a process of its own, the others stopped
    (:mod:`nacos.bench_isolated`): ``isolated_median_ms`` and ``isolated_ratio_to_onnxruntime`` per runtime.

    ``threads`` (default: the usable cores) is used by every runtime; TVM reads it when it starts, so a process
    that already started TVM with another count keeps that count (reported in ``notes``).
    """
    if trials < 0 or metaschedule_trials < 0:
        raise BenchError("trial budgets cannot be negative")
    if threads is not None and threads < 1:
        raise BenchError(f"--threads {threads}: must be at least 1")
    if db and trials == 0 and not Path(db).exists():
        raise BenchError(f"{db}: no such tuning database")
    if "tvm" not in sys.modules:  # TVM reads both when its runtime starts
        if threads is not None:
            os.environ["TVM_NUM_THREADS"] = str(threads)
        # TVM pins its workers to cores by default; on this shared 2-core box a pinned worker waits whenever
        # another process holds its core (small_cnn: 0.4–2.7 ms pinned vs 0.18–0.21 ms unpinned, load 4).
        # ORT and PyTorch do not pin, so unpinned is the like-for-like setting.
        os.environ.setdefault("TVM_BIND_THREADS", "0")
    from schedules.tvm_env import num_threads

    say = progress or (lambda msg: None)
    load = os.getloadavg()[0]  # other processes on the box, before this bench adds its own
    spec = resolve_model(model, input_shapes, seed)
    threads = threads or num_threads()
    if load > (os.cpu_count() or 1) - 0.5:
        spec.notes.append(f"the machine was busy (1-min load {load:.1f} on {os.cpu_count()} cores): multi-threaded "
                          f"runtimes suffer most; compare ratios only between runs under similar load")
    if num_threads() != threads:
        spec.notes.append(f"TVM's runtime had already started with {num_threads()} threads (asked: {threads})")

    from nacos.baselines import relax_metaschedule, relax_untuned

    nacos_info: dict = {}
    built: dict[str, Callable] = {"nacos": _nacos_runtime(spec, db, trials, nacos_info, say)}
    graph = nacos_info.pop("graph")
    if nacos_info.get("db"):
        # the same graph with the default schedules, timed beside the tuned one: what the tuning is worth
        import nacos

        say("compiling nacos with its default schedules (nacos-untuned)")
        built["nacos-untuned"] = nacos.compile(graph)
    if nchw_too:
        nchw_info: dict = {}
        built["nacos-nchw"] = _nacos_runtime(spec, db, trials, nchw_info, say, layout="nchw")
        nacos_info["nchw"] = {k: v for k, v in nchw_info.items() if k != "graph"}
    if apart_too:
        apart_info: dict = {}
        built["nacos-apart"] = _nacos_runtime(spec, nacos_info.get("db"), 0, apart_info, say, chains=False)
        nacos_info["apart"] = {k: v for k, v in apart_info.items() if k != "graph"}
    sess = _ort_session(spec.onnx_bytes, threads)
    feed = {i.name: x for i, x in zip(sess.get_inputs(), spec.inputs)}
    built[ORT] = lambda *xs: sess.run(None, feed)
    if spec.torch_module is not None:
        built["pytorch"] = _torch_runtime(spec, threads)
    ms_info: dict = {}
    if relax:
        say("compiling TVM Relax (untuned)")
        built["relax-untuned"] = relax_untuned(spec.onnx_bytes, spec.input_shapes)
    if metaschedule_trials:
        say(f"tuning TVM Relax with MetaSchedule ({metaschedule_trials} trials)")
        with tempfile.TemporaryDirectory(prefix="nacos-ms-") as work:
            runner = relax_metaschedule(spec.onnx_bytes, spec.input_shapes, trials=metaschedule_trials, work_dir=work)
        built["relax-metaschedule"] = runner
        ms_info = {"trials": metaschedule_trials, "tuning_s": round(runner.tuning_seconds, 2), **runner.info}

    say("checking every runtime against onnxruntime")
    ref = [np.asarray(o) for o in sess.run(None, feed)]
    scale = max((float(np.max(np.abs(r))) for r in ref if r.size), default=1.0)
    tol = 1e-3 * max(1.0, scale)
    rows: dict[str, dict] = {}
    timed: dict[str, Callable] = {}
    for name, fn in built.items():
        err = max_abs_error(fn(*spec.inputs), ref)
        rows[name] = {"max_abs_err_vs_onnxruntime": err, "matches": bool(err <= tol)}
        if err <= tol:
            timed[name] = (lambda f=fn: f(*spec.inputs))
        else:
            spec.notes.append(f"{name}: output differs from onnxruntime (max |err| {err:.3g} > {tol:.3g}); not timed")
    say(f"timing {len(timed)} runtimes side by side")
    times = measure(timed, rounds=rounds, budget_s=budget_s)
    base = times[ORT]["median_s"]
    for name, t in times.items():
        rows[name].update(median_ms=t["median_s"] * 1e3, min_ms=t["min_s"] * 1e3, max_ms=t["max_s"] * 1e3,
                          rounds=t["rounds"], calls_per_round=t["number"], ratio_to_onnxruntime=t["median_s"] / base)
    if isolated:
        from nacos.bench_isolated import RUNTIMES, measure_isolated

        say("timing nacos, onnxruntime and PyTorch again, each in a process of its own")
        iso, iso_notes = measure_isolated(model, [n for n in timed if n in RUNTIMES], threads, nacos_info.get("db"),
                                          input_shapes, seed, rounds=rounds, budget_s=budget_s)
        spec.notes.extend(iso_notes)
        for name, t in iso.items():
            rows[name].update(isolated_median_ms=t["median_s"] * 1e3, isolated_rounds=t["rounds"])
            if ORT in iso:
                rows[name]["isolated_ratio_to_onnxruntime"] = t["median_s"] / iso[ORT]["median_s"]
    return {
        "bench": "nacos bench", "model": spec.name, "source": spec.source,
        "inputs": {k: list(v) for k, v in spec.input_shapes.items()},
        "graph_hash": graph.structural_hash(), "threads": threads, "tolerance": tol,
        "runtimes": rows, "nacos": nacos_info, "metaschedule": ms_info, "notes": spec.notes,
        "machine": _machine(threads, load),
    }


def _ort_session(data: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _torch_runtime(spec: BenchModel, threads: int) -> Callable:
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(spec.inputs[0])
    module = spec.torch_module

    def run(*_):
        with torch.no_grad():
            return [module(x).numpy()]
    return run


def _machine(threads: int, load: float) -> dict:
    import platform

    from schedules.tvm_env import tvm

    return {"python": platform.python_version(), "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
            "cores": os.cpu_count(), "threads": threads, "tvm_bind_threads": os.environ.get("TVM_BIND_THREADS", "1"),
            "load_avg_1min_at_start": round(load, 2)}
