"""Measurement: records, the builder (schedule + compile + export in worker processes) and the runner interface.

    MeasureInput(workload, point) ──Builder.build──▶ BuildResult(artifact .so | error)
                                  ──Runner.run────▶ MeasureResult(latency | error)

Everything that can fail (a point TVM rejects, LLVM, a kernel that crashes, hangs or computes a wrong answer) runs
in a persistent worker process and comes back as a record with an ``error``; the search never sees an exception.
The reference output of each workload — the *unscheduled* PrimFunc compiled for the host, on seeded random inputs
— is computed once per workload (by the builder, cached on disk) and every measured schedule is checked against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from schedules.space import Point
from schedules.workers import JobResult, WorkerPool
from schedules.workload import Workload

ERROR_KINDS = ("schedule", "build", "reference", "crash", "timeout", "wrong", "run")


@dataclass(frozen=True)
class MeasureInput:
    """A candidate. ``compiled`` is its machine code's counts (:mod:`schedules.compiled`, JSON) once it was built:
    models that read compiled code use it; it is not part of the candidate's identity."""

    workload: Workload
    point: Point
    compiled: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BuildResult:
    input: MeasureInput
    artifact: str | None = None      # path of the exported shared library
    reference: str | None = None     # .npz with the inputs and the expected output
    error: str | None = None
    build_s: float = 0.0
    packed: tuple = ()               # (param, dim, lanes): inputs the kernel reads pre-packed (layout knob)
    compiled: str | None = None      # machine-code counts of the artifact (schedules.compiled), JSON


@dataclass(frozen=True)
class MeasureResult:
    """One measurement. ``latency`` is the median of ``costs`` (seconds); None when ``error`` is set."""

    workload_key: str
    point: Point
    latency: float | None
    costs: tuple[float, ...] = ()
    error: str | None = None
    build_s: float = 0.0
    run_s: float = 0.0
    runner: str = ""
    created: float = field(default_factory=time.time)
    compiled: str | None = None      # machine-code counts of the build measured (schedules.compiled), JSON

    @property
    def ok(self) -> bool:
        return self.error is None and self.latency is not None

    @property
    def error_kind(self) -> str | None:
        if self.error is None:
            return None
        head = self.error.split(":", 1)[0].strip()
        return head if head in ERROR_KINDS else "run"


def failed(build: BuildResult, error: str, runner: str = "", run_s: float = 0.0) -> MeasureResult:
    inp = build.input
    return MeasureResult(inp.workload.key, inp.point, None, (), error, build.build_s, run_s, runner)


def classify(job: JobResult, default: str) -> str:
    """Prefix a worker error with its kind (crash/timeout come from the worker machinery itself)."""
    err = job.error or ""
    if err.startswith(("crash:", "timeout:")):
        return err
    if err.startswith("ScheduleError"):
        return "schedule: " + err
    if err.startswith("WrongResult"):
        return "wrong: " + err.split(":", 1)[1].strip()
    return f"{default}: {err}"


# ---- jobs run inside workers ---------------------------------------------------------------------------------
def _target(workload: Workload):
    from schedules.tvm_env import tvm

    return tvm.target.Target(json.loads(workload.target))


def build_job(workload_json: str, point_json: str, out_path: str,
              cross_cc: str | None) -> tuple[float, list, str | None]:
    """Schedule, compile and export one candidate; returns the seconds it took, its packed inputs and its machine
    code's counts (:func:`schedules.compiled.counts_of_library`)."""
    from schedules.compiled import counts_of_library
    from schedules.packed import packed_inputs
    from schedules.space import space_for
    from schedules.tvm_env import tvm

    t0 = time.perf_counter()
    w = Workload.from_json(workload_json)
    func, hint = w.lower()
    sch = space_for(w).apply(func, Point.from_json(point_json), hint)
    tgt = _target(w)
    with tgt:
        ex = tvm.compile(sch.mod, tgt)
    tmp = out_path + ".tmp.so"
    if cross_cc:
        from tvm.contrib import cc

        ex.export_library(tmp, fcompile=cc.cross_compiler(cross_cc))
    else:
        ex.export_library(tmp)
    os.replace(tmp, out_path)
    # the machine code's counts, for models that read it: host (x86-64) builds only, a cross build's code is not
    try:
        counts = None if cross_cc else counts_of_library(out_path)
    except Exception:  # noqa: BLE001 — optional data: an unreadable disassembly never fails a build
        counts = None
    return time.perf_counter() - t0, packed_inputs(sch.mod["main"]), counts


def random_inputs(workload: Workload, seed: int = 0) -> list:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for t in workload.input_types():
        shape = t.shape or (1,)
        if np.issubdtype(np.dtype(t.dtype), np.floating):
            out.append(rng.standard_normal(shape).astype(t.dtype))
        else:
            out.append(rng.integers(0, 8, shape).astype(t.dtype))
    return out


def reference_job(workload_json: str, out_path: str, seed: int) -> float:
    """Inputs and the unscheduled kernel's output, compiled for the host, saved as ``.npz``."""
    import numpy as np

    from schedules.tvm_env import host_target, tvm

    t0 = time.perf_counter()
    w = Workload.from_json(workload_json)
    func, _ = w.lower()
    lib = tvm.compile(tvm.IRModule({"main": func}), host_target())
    inputs = random_inputs(w, seed)
    dev = tvm.cpu()
    out_t = w.output_type()
    out = tvm.runtime.tensor(np.full(out_t.shape or (1,), np.nan, out_t.dtype), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in inputs], out)
    tmp = out_path + ".tmp.npz"
    np.savez(tmp, expected=out.numpy(), **{f"in{k}": a for k, a in enumerate(inputs)})
    os.replace(tmp, out_path)
    return time.perf_counter() - t0


# ---- builders --------------------------------------------------------------------------------------------------
class _Closeable:
    """``with`` support for builders and runners: ``close`` releases their worker processes."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Builder(_Closeable):
    """Turns measure inputs into build results (never raises for a bad candidate)."""

    def build(self, inputs: Sequence[MeasureInput]) -> list[BuildResult]:
        raise NotImplementedError


class LocalBuilder(Builder):
    """Builds in ``workers`` persistent processes (default: one per core, at most 2 on this machine).

    ``cross_cc`` names a cross compiler (e.g. ``aarch64-linux-gnu-g++``) for boards measured over RPC.
    """

    def __init__(self, workers: int | None = None, timeout: float = 60.0, reference_timeout: float = 900.0,
                 workdir: str | None = None, seed: int = 0, cross_cc: str | None = None) -> None:
        n = workers or max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else (os.cpu_count() or 1)))
        self.pool = WorkerPool(n, "builder")
        self.timeout = timeout
        self.reference_timeout = reference_timeout
        self._own = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="nacos-build-")
        os.makedirs(self.workdir, exist_ok=True)
        self.seed = seed
        self.cross_cc = cross_cc
        self._ref_errors: dict[str, str] = {}

    def start(self) -> None:
        self.pool.start()

    def _reference(self, workloads: list[Workload]) -> None:
        todo = [w for w in workloads if w.key not in self._ref_errors
                and not os.path.exists(self.reference_path(w))]
        jobs = [(w.to_json(), self.reference_path(w), self.seed) for w in todo]
        for w, res in zip(todo, self.pool.map("schedules.measure:reference_job", jobs, self.reference_timeout)):
            if not res.ok:  # a crash or timeout of the reference is a reference error too: the workload's
                err = classify(res, "reference")
                self._ref_errors[w.key] = err if err.startswith("reference:") else f"reference: {err}"

    def reference_path(self, w: Workload) -> str:
        return os.path.join(self.workdir, f"ref-{w.key}-{self.seed}.npz")

    def build(self, inputs: Sequence[MeasureInput]) -> list[BuildResult]:
        workloads = list({i.workload.key: i.workload for i in inputs}.values())
        self._reference(workloads)
        jobs, slots = [], []
        results: list[BuildResult | None] = [None] * len(inputs)
        for k, inp in enumerate(inputs):
            err = self._ref_errors.get(inp.workload.key)
            if err:
                results[k] = BuildResult(inp, error=err)
                continue
            digest = hashlib.sha256(inp.point.to_json().encode()).hexdigest()[:16]
            path = os.path.join(self.workdir, f"{inp.workload.key}-{digest}-{time.time_ns()}.so")
            jobs.append((inp.workload.to_json(), inp.point.to_json(), path, self.cross_cc))
            slots.append((k, path))
        for (k, path), res in zip(slots, self.pool.map("schedules.measure:build_job", jobs, self.timeout)):
            inp = inputs[k]
            if res.ok:
                seconds, packed, counts = res.value
                results[k] = BuildResult(inp, path, self.reference_path(inp.workload), None, float(seconds),
                                         tuple(tuple(p) for p in packed), counts)
            else:
                results[k] = BuildResult(inp, error=classify(res, "build"), build_s=res.seconds)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.pool.close()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---- runners -----------------------------------------------------------------------------------------------------
Callback = Callable[[MeasureResult], None]


class Runner(_Closeable):
    """Runs built candidates and reports one :class:`MeasureResult` each (``callback`` as soon as it is known)."""

    name = "runner"
    caches = "warm"  # how its timings find the CPU caches: "warm" or "cold" (a database holds one kind)

    def run(self, builds: Sequence[BuildResult], callback: Callback | None = None) -> list[MeasureResult]:
        raise NotImplementedError


def measure(builder: Builder, runner: Runner, inputs: Sequence[MeasureInput],
            callback: Callback | None = None) -> list[MeasureResult]:
    """Build then run ``inputs``; artifacts are deleted once measured. Each result carries its build's machine-code
    counts (``compiled``), callbacks included."""
    return run_builds(runner, builder.build(inputs), callback)


def run_builds(runner: Runner, builds: Sequence[BuildResult], callback: Callback | None = None) -> list[MeasureResult]:
    """:func:`measure`'s second half: run ``builds``, attach their machine-code counts, delete the artifacts."""
    counts = {(b.input.workload.key, b.input.point): b.compiled for b in builds if b.compiled}

    def with_counts(r: MeasureResult) -> MeasureResult:
        c = counts.get((r.workload_key, r.point))
        return replace(r, compiled=c) if c and r.compiled is None else r

    try:
        results = runner.run(builds, None if callback is None else lambda r: callback(with_counts(r)))
        return [with_counts(r) for r in results]
    finally:
        discard(builds)


def discard(builds: Sequence[BuildResult]) -> None:
    """Delete the artifacts of ``builds``."""
    for b in builds:
        if b.artifact and os.path.exists(b.artifact):
            os.unlink(b.artifact)
