"""The RPC runner measures through a TVM RPC tracker, against a tracker and a server started here on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from schedules.database import Database
from schedules.measure import LocalBuilder
from schedules.rpc import RPCRunner
from schedules.tuner import tune_workload
from schedules.workload import workload_from_op

KEY = "nacos-test-board"


@pytest.fixture(scope="module")
def tracker_addr(tmp_path_factory):
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    # the tracker and the server each run in a child that imports tvm; without torch that takes half the time
    shim = tmp_path_factory.mktemp("no_torch")
    (shim / "torch").mkdir()
    (shim / "torch" / "__init__.py").write_text("raise ImportError('torch is not needed by an RPC server')\n")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim)] + [p for p in sys.path if p])
    try:
        tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
        server = rpc.Server(host="127.0.0.1", port=9300, port_end=9400, key=KEY, silent=True,
                            tracker_addr=("127.0.0.1", tracker.port))
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    deadline = time.time() + 60
    while KEY not in str(rpc.connect_tracker("127.0.0.1", tracker.port).summary()):
        assert time.time() < deadline, "the RPC server never registered with the tracker"
        time.sleep(0.2)
    yield f"127.0.0.1:{tracker.port}"
    server.terminate()
    tracker.terminate()


def test_tune_over_rpc_records_remote_measurements(tracker_addr, tmp_path):
    w = workload_from_op("dense", [(4, 64), (32, 64), (32,)], {}, ("relu",))
    runner = RPCRunner(tracker_addr, KEY, timeout=60, repeat=3, min_repeat_ms=5)
    builder = LocalBuilder(workers=1)
    try:
        best = tune_workload(w, 4, tmp_path / "rpc.db", runner, "random", builder, batch_size=4)
    finally:
        runner.close()
        builder.close()
    assert best.trials == 4 and best.failures == 0 and best.best_latency > 0
    with Database(tmp_path / "rpc.db") as db:
        records = db.records(w)
    assert {r.runner for r in records} == {f"rpc:{KEY}"}
    assert all(len(r.costs) in (3, 6, 9) for r in records)  # 3 repeats, more if re-measured as a best


def test_bad_tracker_address_is_a_clear_error():
    with pytest.raises(ValueError, match="HOST:PORT"):
        RPCRunner("localhost", KEY)


def test_a_session_is_renewed_before_the_tracker_ends_it(tracker_addr):
    # the session timeout counts from the request: a long tune outlives it (by default after 10 minutes)
    w = workload_from_op("dense", [(4, 64), (32, 64), (32,)], {}, ("relu",))
    runner = RPCRunner(tracker_addr, KEY, timeout=60, session_timeout=4, repeat=3, min_repeat_ms=5)
    builder = LocalBuilder(workers=1)
    try:
        from schedules.measure import MeasureInput
        from schedules.space import space_for

        builds = builder.build([MeasureInput(w, space_for(w).default())])
        first = runner.run(builds)[0]
        time.sleep(5)  # past the session's end
        second = runner.run(builds)[0]
    finally:
        runner.close()
        builder.close()
    assert first.ok and second.ok, second.error


def test_a_tracker_that_cannot_be_used_is_an_error_before_anything_is_measured(tracker_addr, tmp_path):
    from schedules.rpc import TrackerError

    w = workload_from_op("dense", [(4, 64), (32, 64), (32,)], {}, ("relu",))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    for runner, message in ((RPCRunner(f"127.0.0.1:{free}", KEY), "cannot connect"),
                            (RPCRunner(tracker_addr, "no-such-board"), "no device registered")):
        builder = LocalBuilder(workers=1)
        try:
            with pytest.raises(TrackerError, match=message):
                tune_workload(w, 4, tmp_path / "rpc.db", runner, "random", builder)
        finally:
            runner.close()
            builder.close()
    with Database(tmp_path / "rpc.db") as db:
        assert db.count() == 0  # nothing recorded as failed: a rerun with a working tracker measures them all
