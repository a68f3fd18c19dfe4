"""Persistent, isolated worker processes for building and running kernels.

``import tvm`` costs 3–5 s here, so a worker is started once and reused for many jobs; it is restarted only after
it crashed (a segfaulting kernel, ``os.abort``) or overran a job's timeout (then it is killed: a hanging kernel
cannot be interrupted any other way). Either outcome comes back as a :class:`JobResult` with an error — never as an
exception — so the search goes on.

A job is a module-level function named by ``"module:function"`` plus picklable arguments; the worker imports the
module on first use. Workers block ``torch`` (``import tvm`` would otherwise import it: 5.4 s → 2.7 s per start)
because nothing a worker does needs it.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class JobResult:
    """What one job gave back: a value, or an error message (and then ``value`` is None)."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _exit_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    """A worker busy with a hanging job never reads the EOF that tells it its parent is gone (killed): this
    thread ends the process then, so no orphan keeps a core busy under the next measurements."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_main(conn, block_torch: bool, env: dict) -> None:  # pragma: no cover - runs in the child
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    os.environ.update(env)
    if block_torch:
        sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
    import schedules.tvm_env  # noqa: F401  (pay the TVM import once, before the first job)

    conn.send(("ready", os.getpid()))
    cache: dict[str, Any] = {}
    while True:
        try:
            fn_name, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away (or was killed): nothing left to do
        try:
            fn = cache.get(fn_name)
            if fn is None:
                module, _, attr = fn_name.partition(":")
                fn = cache[fn_name] = getattr(importlib.import_module(module), attr)
            conn.send((None, fn(*args)))
        except BaseException as e:  # noqa: BLE001 — every failure of a job is reported as data
            msg = f"{type(e).__name__}: {e}".strip()
            conn.send((msg[:2000] or type(e).__name__, None))


def _child_entry(argv: list[str]) -> None:  # pragma: no cover - runs in the child
    _worker_main(Connection(int(argv[0])), argv[1] == "1", json.loads(argv[2]))


def _log_dir() -> str | None:
    """A folder of this user's (another user's ``nacos-workers`` would not be writable); None if none can be made."""
    path = os.path.join(tempfile.gettempdir(), f"nacos-workers-{os.getuid()}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _log_tail(path: str | None, lines: int = 3) -> str:
    """The last meaningful lines a dead worker wrote (e.g. TVM's "Segmentation fault" banner)."""
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        text = [ln.strip() for ln in f.read()[-20000:].splitlines() if ln.strip()]
    keep = [ln for ln in text if not ln.startswith(("File ", "at ", "!!!!"))]
    return " | ".join(keep[-lines:])[:500]


class Worker:
    """One persistent child process; :meth:`call` runs a job in it with a timeout."""

    def __init__(self, name: str = "worker", block_torch: bool = True, env: dict | None = None) -> None:
        self.name = name
        self.block_torch = block_torch
        self.env = dict(env or {})
        self._proc = None
        self._conn = None
        self.starts = 0
        self.log_path: str | None = None

    @property
    def restarts(self) -> int:
        """How many times the process was started again after a crash, a timeout or a kill."""
        return max(0, self.starts - 1)

    # ---- life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process (non-blocking): the TVM import overlaps with other workers' starts.

        A plain ``python -c`` child talking over a socket pair, not ``multiprocessing``'s spawn: spawn re-runs the
        parent's main script in the child, which breaks scripts without an ``if __name__ == "__main__"`` guard.
        """
        if self._proc is not None:
            return
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        code = "import sys; from schedules.workers import _child_entry; _child_entry(sys.argv[1:])"
        # the child's output (TVM's crash backtraces included) goes to a log file, whose tail a crash report quotes;
        # without a writable one it is dropped (crash reports then lack the tail), and the worker still runs
        folder = _log_dir()
        self.log_path = os.path.join(folder, f"{self.name}-{os.getpid()}-{id(self):x}.log") if folder else None
        try:
            log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        except OSError:
            self.log_path, log = None, subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child.fileno()), "1" if self.block_torch else "0",
                 json.dumps(self.env)], pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
            child.close()
        self.starts += 1
        self._conn = Connection(parent.detach())
        self._ready = False

    def _wait_ready(self, wait_s: float = START_TIMEOUT_S) -> str | None:
        """None once the worker said "ready" (waiting up to ``wait_s``); else kill it and say why."""
        if self._ready:
            return None
        if not self._conn.poll(wait_s):
            self.kill()
            return f"{self.name} did not start within {START_TIMEOUT_S:.0f} s"
        try:
            self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.poll() if self._proc else None
            self.kill()
            return f"{self.name} died while starting (exit code {code})"
        self._ready = True
        return None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """Kill this worker's own process (by its pid) and forget it; the next job starts a fresh one."""
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.kill()
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)

    # ---- jobs --------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Started, and its "ready" message received (it has imported TVM and waits for jobs)."""
        return self._proc is not None and self._ready and self._proc.poll() is None

    def launch(self) -> None:
        """Make sure a process is running or starting (non-blocking)."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:  # died while idle (OOM killer, a crash after answering): start afresh
                self.kill()
            self.start()

    def submit(self, fn: str, args: Sequence) -> str | None:
        """Send a job; returns an error if the worker could not be started."""
        self.launch()
        err = self._wait_ready()
        if err:
            return err
        try:
            self._conn.send((fn, tuple(args)))
        except (OSError, BrokenPipeError) as e:
            self.kill()
            return f"{self.name} unreachable: {e}"
        return None

    def collect(self, timeout: float, started: float) -> JobResult:
        """The answer to the job sent last; kills the worker on timeout or crash."""
        remaining = max(0.0, started + timeout - time.perf_counter())
        try:
            if not self._conn.poll(remaining):
                self.kill()
                return JobResult(error=f"timeout: no answer within {timeout:g} s (worker killed)",
                                 seconds=time.perf_counter() - started)
            error, value = self._conn.recv()
        except (EOFError, OSError):
            proc = self._proc
            code = None
            if proc is not None:
                try:
                    code = proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()
            how = f"signal {_signal_name(-code)}" if code is not None and code < 0 else f"exit code {code}"
            tail = _log_tail(self.log_path)
            return JobResult(error=f"crash: worker died ({how})" + (f": {tail}" if tail else ""),
                             seconds=time.perf_counter() - started)
        return JobResult(value=value, error=error, seconds=time.perf_counter() - started)

    def call(self, fn: str, args: Sequence = (), timeout: float = 60.0) -> JobResult:
        err = self.submit(fn, args)  # waits for a (re)started worker's TVM import: not part of the job's time
        if err:
            return JobResult(error=err)
        return self.collect(timeout, time.perf_counter())


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return str(number)


class WorkerPool:
    """``n`` workers running independent jobs in parallel (builds); results in submission order."""

    def __init__(self, n: int, name: str = "builder", block_torch: bool = True) -> None:
        self.workers = [Worker(f"{name}{k}", block_torch) for k in range(max(1, n))]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def map(self, fn: str, jobs: Sequence[Sequence], timeout: float) -> list[JobResult]:
        """Run ``jobs`` on the free workers. A worker being (re)started — after a crash or a timeout, which cost
        it its process — is waited for alongside the busy ones, so their answers and deadlines are kept while it
        imports TVM; a worker that fails to start fails the next job with the reason."""
        results: list[JobResult | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        busy: dict[int, tuple[int, float]] = {}  # worker index -> (job index, start time)
        starting: dict[int, float] = {}          # worker index -> when its start was first waited for
        while pending or busy:
            for w_idx, w in enumerate(self.workers):
                if w_idx in busy or w_idx in starting or not pending:
                    continue
                if not w.ready:
                    w.launch()
                    starting[w_idx] = time.perf_counter()
                    continue
                j = pending.pop(0)
                err = w.submit(fn, jobs[j])
                if err:
                    results[j] = JobResult(error=err)
                else:
                    busy[w_idx] = (j, time.perf_counter())
            if not busy and not starting:
                continue
            now = time.perf_counter()
            deadline = min([s + timeout for _, s in busy.values()] + [s + START_TIMEOUT_S for s in starting.values()])
            conns = {self.workers[i]._conn: i for i in list(busy) + list(starting)}
            answered = {conns[c] for c in wait(list(conns), timeout=max(0.0, deadline - now))}
            now = time.perf_counter()
            for i in [i for i, since in starting.items() if i in answered or since + START_TIMEOUT_S <= now]:
                del starting[i]  # "ready", EOF, or no word in time: _wait_ready tells which, killing a failed one
                err = self.workers[i]._wait_ready(0.0)
                if err and pending:
                    results[pending.pop(0)] = JobResult(error=err)
            for i in [i for i, (_, started) in busy.items() if i in answered or started + timeout <= now]:
                j, started = busy.pop(i)  # an answer, EOF from a crash, or an overrun: collect() tells which
                results[j] = self.workers[i].collect(timeout, started)
        return [r for r in results if r is not None]

    def close(self) -> None:
        for w in self.workers:
            w.close()
