"""Measurement in isolated, persistent workers: crashes, hangs and wrong answers are recorded, the tune goes on.

One builder and one runner are shared by the tests of this module (each worker pays ``import tvm`` once).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from schedules.database import Database
from schedules.measure import LocalBuilder, MeasureInput
from schedules.runner import LocalRunner
from schedules.space import space_for
from schedules.tuner import tune_workload
from schedules.workload import workload_from_op

WORKLOAD = workload_from_op("conv", [(1, 4, 8, 8), (8, 4, 3, 3), (8,)], {"pads": (1, 1, 1, 1)}, ("relu",))


@pytest.fixture(scope="module")
def builder():
    b = LocalBuilder(workers=1, timeout=60)
    b.start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def runner():
    r = LocalRunner(timeout=30, repeat=3, min_repeat_ms=5, cache_flush=True)
    r.start()
    yield r
    r.close()


def test_crash_and_hang_are_recorded_and_the_tune_completes(builder, tmp_path):
    # measurement 1 segfaults, measurement 2 hangs (killed at the timeout); the others run normally
    runner = LocalRunner(timeout=4, repeat=3, min_repeat_ms=5, fault_plan={1: "segv", 2: "hang"})
    try:
        best = tune_workload(WORKLOAD, 7, tmp_path / "f.db", runner, "random", builder, batch_size=4)
    finally:
        runner.close()
    assert best.trials == 7 and best.new == 7 and best.failures == 2
    assert best.best_latency is not None and best.default_latency is not None
    with Database(tmp_path / "f.db") as db:
        records = db.records(WORKLOAD)
    kinds = [r.error_kind for r in records]
    assert kinds[0] is None and kinds[1:3] == ["crash", "timeout"]
    assert "SIGSEGV" in records[1].error
    assert all(k is None for k in kinds[3:])  # the restarted worker measured the rest
    assert runner.worker.restarts == 2


def test_every_schedule_is_checked_against_the_reference(builder, runner, tmp_path):
    space = space_for(WORKLOAD)
    build = builder.build([MeasureInput(WORKLOAD, space.default())])[0]
    assert build.error is None and os.path.exists(build.artifact)
    good = runner.run([build])[0]
    assert good.ok and len(good.costs) == 3 and good.latency == float(np.median(good.costs))
    # the same kernel against a corrupted expected output counts as wrong
    with np.load(build.reference) as data:
        arrays = dict(data)
    arrays["expected"] = arrays["expected"] + 1.0
    np.savez(tmp_path / "bad.npz", **arrays)
    bad = runner.run([dataclasses.replace(build, reference=str(tmp_path / "bad.npz"))])[0]
    assert not bad.ok and bad.error_kind == "wrong" and "reference" in bad.error
    assert runner.worker.restarts == 0


def test_worker_errors_are_data(runner):
    w = runner.worker
    res = w.call("schedules.measure:reference_job", ("not json", "/nonexistent/x.npz", 0), timeout=60)
    assert not res.ok and "JSONDecodeError" in res.error
    res = w.call("builtins:len", ([1, 2, 3],), timeout=60)
    assert res.ok and res.value == 3  # the same worker is still alive and reused
    assert w.restarts == 0



def test_an_infinite_reference_value_does_not_disable_the_check():
    # the tolerance grew with the largest expected value: one +inf in the reference made it infinite, and then
    # any finite output passed
    from schedules.runner import TimingConfig, WrongResult, check_and_time
    from schedules.tvm_env import tvm

    te = tvm.te
    a = te.placeholder((8,), "float32", name="A")
    b = te.compute((8,), lambda i: a[i] + 1.0, name="B")
    lib = tvm.compile(te.create_prim_func([a, b]), "llvm").mod
    x = np.arange(8, dtype=np.float32)
    x[3] = np.inf  # the reference and the kernel both give +inf there
    cfg = TimingConfig(repeat=1, min_repeat_ms=0)
    assert len(check_and_time(lib, tvm.cpu(), [x], x + 1, cfg)) == 1
    wrong = x + 1
    wrong[5] = 100.0  # the kernel writes 6.0 there
    with pytest.raises(WrongResult):
        check_and_time(lib, tvm.cpu(), [x], wrong, cfg)
