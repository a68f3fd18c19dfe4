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


def _start_board(shim_parent, tracker_port: int = 9190, tracker_port_end: int = 9290, server_port: int = 9300):
    """A tracker and one server registered under KEY, both on 127.0.0.1: (tracker, server, "host:port")."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    # the tracker and the server each run in a child that imports tvm; without torch that takes half the time
    shim = shim_parent / "no_torch"
    (shim / "torch").mkdir(parents=True, exist_ok=True)
    (shim / "torch" / "__init__.py").write_text("raise ImportError('torch is not needed by an RPC server')\n")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim)] + [p for p in sys.path if p])
    try:
        tracker = Tracker(host="127.0.0.1", port=tracker_port, port_end=tracker_port_end, silent=True)
        server = rpc.Server(host="127.0.0.1", port=server_port, port_end=server_port + 100, key=KEY, silent=True,
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
    return tracker, server, f"127.0.0.1:{tracker.port}"


def _stop_board(tracker, server) -> None:
    server.terminate()
    tracker.terminate()


@pytest.fixture(scope="module")
def tracker_addr(tmp_path_factory):
    tracker, server, addr = _start_board(tmp_path_factory.mktemp("board"))
    yield addr
    _stop_board(tracker, server)


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


def test_a_board_lost_mid_run_stops_the_tune_without_recording_failures_and_a_rerun_resumes(tmp_path):
    """The tracker and the board go away in the middle of a tune: it stops with a clear error instead of storing
    every later candidate as failed, and once the board is back, a rerun of the same tune finishes it."""
    from schedules.rpc import TrackerError

    with socket.socket() as s:  # a port of our own: the module's tracker may hold 9190
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    board = _start_board(tmp_path, port, port + 1, 9500)

    class LosesTheBoard(RPCRunner):
        jobs = 0

        def _job(self, build):
            if self.jobs == 3:
                _stop_board(*board[:2])
            self.jobs += 1
            return super()._job(build)

    w = workload_from_op("dense", [(4, 64), (32, 64), (32,)], {}, ("relu",))
    db = tmp_path / "rpc.db"
    builder = LocalBuilder(workers=1)
    runner = LosesTheBoard(board[2], KEY, timeout=60, repeat=3, min_repeat_ms=5, reconnect_s=2, probe_timeout=5)
    try:
        with pytest.raises(TrackerError, match="lost the device .* 3 measurements made before are kept"):
            tune_workload(w, 6, db, runner, "random", builder, batch_size=3, validate=False)
        with Database(db) as d:
            assert d.count() == 3 and all(r.ok for r in d.records(w))
        runner.close()
        board = _start_board(tmp_path, port, port + 1, 9500)
        runner = RPCRunner(board[2], KEY, timeout=60, repeat=3, min_repeat_ms=5)
        again = tune_workload(w, 6, db, runner, "random", builder, batch_size=3, validate=False)
    finally:
        runner.close()
        builder.close()
        _stop_board(*board[:2])
    assert again.trials == 6 and again.failures == 0 and again.new == 3
