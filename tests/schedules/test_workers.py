"""Worker processes: whatever happens to a worker (or to its parent) comes back as data, and nothing is left over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from schedules import workers
from schedules.workers import Worker

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1:2] == ["Z"] for line in f if line.startswith("State:"))  # a zombie
    except FileNotFoundError:
        return True


def test_a_worker_killed_by_a_signal_without_a_name_is_reported():
    w = Worker("rt-signal", block_torch=False)
    try:
        assert w.call("builtins:len", ([1],), timeout=60).ok
        threading.Timer(1.0, os.kill, (w.pid, 40)).start()  # a real-time signal: signal.Signals(40) fails
        res = w.call("time:sleep", (30,), timeout=60)
        assert not res.ok and res.error.startswith("crash: worker died (signal 40)")
    finally:
        w.close()


def test_without_a_writable_log_folder_the_worker_still_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(workers.tempfile, "tempdir", str(tmp_path))
    (tmp_path / f"nacos-workers-{os.getuid()}").write_text("a file where the folder should be")
    w = Worker("no-log", block_torch=False)
    try:
        res = w.call("builtins:len", ([1, 2],), timeout=60)
        assert res.ok and res.value == 2 and w.log_path is None
    finally:
        w.close()


def test_a_worker_busy_with_a_hanging_job_ends_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import os, sys, time
        from schedules.workers import Worker
        w = Worker("orphan", block_torch=False)
        w.call("builtins:len", ([1],), 60)
        w.submit("time:sleep", (3600,))  # a hanging kernel
        print(w.pid, flush=True)
        time.sleep(0.5)
        os.kill(os.getpid(), 9)  # the tune is killed: kill -9, the OOM killer, a CI timeout
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.time() + 15
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.2)
    if not _gone(pid):
        os.kill(pid, 9)
        raise AssertionError("the worker outlived its killed parent")


def test_a_worker_that_died_while_idle_is_restarted_for_the_next_job():
    # e.g. killed by the OOM killer, or crashed in teardown after it had answered: the next job starts a fresh one
    w = Worker("idle-death", block_torch=False)
    try:
        assert w.call("builtins:len", ([1, 2],), timeout=60).value == 2
        os.kill(w.pid, 9)
        w._proc.wait(10)
        res = w.call("builtins:len", ([1, 2, 3],), timeout=60)
        assert res.ok and res.value == 3
        assert w.restarts == 1
    finally:
        w.close()


def test_a_pool_keeps_the_other_workers_deadlines_while_one_restarts():
    from schedules.workers import WorkerPool

    pool = WorkerPool(2, "pool-deadlines", block_torch=False)
    pool.start()
    try:
        # job 0 overruns and costs worker 0 its process; while it restarts, job 3 overruns on the other worker
        res = pool.map("time:sleep", [(5,), (0.1,), (0.1,), (5,), (0.1,)], timeout=2)
        assert [r.error is not None and r.error.startswith("timeout") for r in res] == [True, False, False, True,
                                                                                       False]
        crashed = pool.map("os:abort", [(), ()], timeout=30)
        assert all(r.error.startswith("crash") for r in crashed)
        assert [r.value for r in pool.map("builtins:len", [([1],), ([1, 2],), ([1, 2, 3],)], timeout=60)] == [1, 2, 3]
        assert pool.map("builtins:len", [], timeout=10) == []
    finally:
        pool.close()
