"""The local runner: one persistent worker process loads each built kernel, checks it, and times it.

Timing uses TVM's ``time_evaluator`` (one discarded warm-up call, then ``repeat`` repeats of at least
``min_repeat_ms`` each); the median of the repeats is the latency. With ``cache_flush`` the CPU caches are flushed
before every repeat (``cache_flush_cpu_non_first_arg``: weights and output start cold, the input stays warm).

Runs are serial — one kernel at a time on an otherwise idle machine — and a kernel that crashes or hangs only
costs its worker, which is restarted for the next candidate.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from schedules.measure import BuildResult, Callback, MeasureResult, Runner, classify, failed
from schedules.workers import Worker

FAULTS = ("abort", "hang", "segv")


class WrongResult(RuntimeError):
    """The kernel ran but its output differs from the unscheduled reference."""


@dataclass(frozen=True)
class TimingConfig:
    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 20
    cache_flush: bool = False
    rtol: float = 1e-3
    atol: float = 1e-3


def load_reference(path: str, cache: dict, packed: tuple = ()):
    """(inputs, expected) numpy arrays of a reference file, cached per path (one load per workload); inputs in
    ``packed`` ((param, dim, lanes)) are re-laid out as the compiler would for a packed-layout kernel."""
    import numpy as np

    from schedules.packed import pack_constant

    key = (path, tuple(packed))
    if key not in cache:
        with np.load(path) as data:
            inputs = [data[f"in{k}"] for k in range(len(data.files) - 1)]
            expected = data["expected"]
        for param, dim, lanes in packed:
            inputs[param] = pack_constant(inputs[param], dim, lanes)
        if len(cache) > 64:
            cache.clear()
        cache[key] = (inputs, expected)
    return cache[key]


def check_and_time(func_module, dev, inputs, expected, cfg: TimingConfig) -> list[float]:
    """Run once on a NaN-filled output and compare with ``expected``; then time. Returns per-repeat seconds."""
    import numpy as np

    from schedules.tvm_env import tvm

    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    out = tvm.runtime.tensor(np.full(expected.shape, np.nan, expected.dtype), dev)
    func_module["main"](*args, out)
    got = out.numpy()
    # the absolute tolerance follows the output's magnitude (long fp32 sums), measured on its finite values: an
    # infinite reference value made it infinite, and then any finite output passed
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max()) if finite.size else 1.0)
    if not np.allclose(got, expected, rtol=cfg.rtol, atol=cfg.atol * scale, equal_nan=True):
        with np.errstate(invalid="ignore"):  # inf − inf where both are infinite
            err = float(np.nanmax(np.abs(got - expected))) if np.isfinite(got).any() else float("nan")
        raise WrongResult(f"output differs from the unscheduled reference (max abs error {err:.3g})")
    timer = func_module.time_evaluator("main", dev, number=cfg.number, repeat=cfg.repeat,
                                       min_repeat_ms=cfg.min_repeat_ms,
                                       f_preproc="cache_flush_cpu_non_first_arg" if cfg.cache_flush else "")
    return [float(c) for c in timer(*args, out).results]


_REFERENCES: dict = {}


def local_run_job(artifact: str, reference: str, packed: tuple, cfg: TimingConfig,
                  fault: str | None) -> list[float]:
    """Runs inside the runner worker. ``fault`` (tests only) makes the kernel crash or hang on purpose."""
    if fault == "abort":
        os.abort()
    if fault == "segv":
        import ctypes

        ctypes.string_at(0)
    if fault == "hang":
        while True:
            time.sleep(3600)
    from schedules.tvm_env import tvm

    lib = tvm.runtime.load_module(artifact)
    inputs, expected = load_reference(reference, _REFERENCES, packed)
    return check_and_time(lib, tvm.cpu(), inputs, expected, cfg)


class WorkerRunner(Runner):
    """A runner that times each built candidate through one persistent worker: subclasses give the job."""

    worker: Worker
    config: TimingConfig
    name = "worker"

    @property
    def caches(self) -> str:
        return "cold" if self.config.cache_flush else "warm"

    def _job(self, build: BuildResult):
        raise NotImplementedError

    def start(self) -> None:
        self.worker.start()

    def run(self, builds: Sequence[BuildResult], callback: Callback | None = None) -> list[MeasureResult]:
        out = []
        for b in builds:
            res = failed(b, b.error, self.name) if b.error is not None else to_result(b, self._job(b), self.name)
            out.append(res)
            if callback:
                callback(res)
        return out

    def close(self) -> None:
        self.worker.close()


class LocalRunner(WorkerRunner):
    """Measures on this machine in one persistent, restartable worker.

    ``fault_plan`` (tests only) maps the index of a measurement made by this runner (0, 1, …) to a fault
    (``"abort"``, ``"segv"`` or ``"hang"``) that its worker performs instead of running the kernel.
    """

    name = "local"

    def __init__(self, timeout: float = 30.0, number: int = 1, repeat: int = 5, min_repeat_ms: int = 20,
                 cache_flush: bool = False, rtol: float = 1e-3, atol: float = 1e-3,
                 fault_plan: dict[int, str] | None = None) -> None:
        self.timeout = timeout
        self.config = TimingConfig(number, repeat, min_repeat_ms, cache_flush, rtol, atol)
        self.worker = Worker("runner")
        self.fault_plan = dict(fault_plan or {})
        if any(f not in FAULTS for f in self.fault_plan.values()):
            raise ValueError(f"faults must be among {FAULTS}")
        self.count = 0

    def _job(self, build: BuildResult):
        fault = self.fault_plan.get(self.count)
        self.count += 1
        return self.worker.call("schedules.runner:local_run_job", (build.artifact, build.reference, build.packed,
                                                                   self.config, fault), self.timeout)


def to_result(build: BuildResult, job, runner: str) -> MeasureResult:
    if not job.ok:
        return failed(build, classify(job, "run"), runner, job.seconds)
    costs = tuple(job.value)
    inp = build.input
    return MeasureResult(inp.workload.key, inp.point, statistics.median(costs), costs, None, build.build_s,
                         job.seconds, runner)
