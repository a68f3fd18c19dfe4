"""The RPC runner: measure on a remote board through a TVM RPC tracker (``tvm.rpc``).

Set up on the board ``python -m tvm.exec.rpc_server --tracker HOST:9190 --key BOARD`` and, anywhere, a tracker
``python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190``; then ``RPCRunner("HOST:9190", "BOARD")``
(build for the board's target with ``LocalBuilder(cross_cc=...)``). Each built library is uploaded, loaded and
timed on the board; its output is copied back and checked against the reference here.

The client side runs in a persistent local worker that keeps one tracker session open across measurements; a
hanging board costs that worker (killed at the timeout, restarted, the session re-requested), and the timeout is
recorded like any other failure.

A lost connection is not the kernel's failure. After any other failed run the runner asks the tracker for a fresh
session: when it gets one, the candidate is run once more and that result is recorded; when the tracker or the
board stays unreachable for ``reconnect_s``, the run stops with :class:`TrackerError` and records nothing for the
candidate, so the database never holds a point that failed for want of a board, and a rerun resumes.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Sequence

from schedules.measure import BuildResult, Callback, MeasureResult, failed
from schedules.runner import TimingConfig, WorkerRunner, check_and_time, load_reference, to_result
from schedules.workers import Worker

_SESSIONS: dict = {}   # (host, port, key) -> (session, when it was requested)
SESSION_RENEW = 0.75  # a session older than this share of its timeout is replaced before the next measurement
_REFERENCES: dict = {}


def _session(host: str, port: int, key: str, session_timeout: float):
    """The open session, or a new one when it is missing or near its end: the tracker's ``session_timeout``
    counts from the request, not from the last use, and a measurement in an expired session would fail."""
    from tvm import rpc

    k = (host, port, key)
    remote, since = _SESSIONS.get(k, (None, 0.0))
    if remote is None or time.monotonic() - since > SESSION_RENEW * session_timeout:
        tracker = rpc.connect_tracker(host, port)
        remote = tracker.request(key, priority=1, session_timeout=session_timeout)
        _SESSIONS[k] = (remote, time.monotonic())
    return remote


class TrackerError(ConnectionError):
    """The tracker cannot be reached, or has no device under the key: raised before anything is measured, so
    that no measurement is recorded as failed for want of a connection."""


def tracker_keys(host: str, port: int) -> list[str]:
    """Runs inside the client worker: the device keys the tracker has queues for."""
    from tvm import rpc

    summary = rpc.connect_tracker(host, port).summary()
    return sorted(summary.get("queue_info", {}))


def probe_job(host: str, port: int, key: str, session_timeout: float) -> bool:
    """Runs inside the client worker: get a working session (a fresh one if the last was dropped)."""
    try:
        _session(host, port, key, session_timeout).cpu()
    except Exception:
        _SESSIONS.pop((host, port, key), None)
        raise
    return True


def rpc_run_job(host: str, port: int, key: str, session_timeout: float, artifact: str, reference: str,
                packed: tuple, cfg: TimingConfig) -> list[float]:
    """Runs inside the client worker: upload, load, check against the reference, time on the remote device."""
    try:
        remote = _session(host, port, key, session_timeout)
        remote.upload(artifact)
        name = os.path.basename(artifact)
        lib = remote.load_module(name)
        inputs, expected = load_reference(reference, _REFERENCES, packed)
        try:
            return check_and_time(lib, remote.cpu(), inputs, expected, cfg)
        finally:
            try:
                remote.remove(name)
            except Exception:  # noqa: BLE001 — leftover files on the board are harmless
                pass
    except Exception as e:
        if type(e).__name__ != "WrongResult":
            _SESSIONS.pop((host, port, key), None)  # the session may be broken: request a fresh one next time
        raise


class RPCRunner(WorkerRunner):
    """Measures on the device registered as ``key`` with the tracker at ``tracker`` ("host:port")."""

    name = "rpc"

    def __init__(self, tracker: str, key: str, timeout: float = 60.0, session_timeout: float = 600.0,
                 number: int = 1, repeat: int = 5, min_repeat_ms: int = 20, cache_flush: bool = False,
                 rtol: float = 1e-3, atol: float = 1e-3, reconnect_s: float = 120.0,
                 probe_timeout: float = 30.0) -> None:
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"tracker {tracker!r}: expected HOST:PORT, e.g. 127.0.0.1:9190")
        if reconnect_s < 0 or probe_timeout <= 0:
            raise ValueError("reconnect_s must be >= 0 and probe_timeout > 0")
        self.host, self.port, self.key = host, int(port), key
        self.timeout, self.session_timeout = timeout, session_timeout
        self.reconnect_s, self.probe_timeout = reconnect_s, probe_timeout
        self.recorded = 0  # results handed back by this runner: the lost-connection error says how many are safe
        self.config = TimingConfig(number, repeat, min_repeat_ms, cache_flush, rtol, atol)
        self.worker = Worker("rpc-client")
        self.name = f"rpc:{key}"

    def start(self) -> None:
        """Start the client worker and check that the tracker answers and knows the device's key."""
        where = f"RPC tracker {self.host}:{self.port}"
        try:
            socket.create_connection((self.host, self.port), timeout=10).close()
        except OSError as e:
            raise TrackerError(f"{where}: cannot connect ({e.strerror or e})") from None
        super().start()
        res = self.worker.call("schedules.rpc:tracker_keys", (self.host, self.port), timeout=60)
        if not res.ok:
            raise TrackerError(f"{where}: no answer to a summary request ({res.error})")
        if self.key not in res.value:
            raise TrackerError(f"{where}: no device registered under the key {self.key!r} "
                               f"(registered: {', '.join(res.value) or 'none'})")

    def run(self, builds: Sequence[BuildResult], callback: Callback | None = None) -> list[MeasureResult]:
        out = []
        for b in builds:
            if b.error is not None:
                res = failed(b, b.error, self.name)
            else:
                job = self._job(b)
                if not job.ok and not job.error.startswith("WrongResult"):
                    self._reconnect(job.error)  # raises TrackerError when the board stays out of reach
                    if not job.error.startswith("timeout:"):  # a hang is the kernel's; anything else may not be
                        job = self._job(b)
                res = to_result(b, job, self.name)
            out.append(res)
            self.recorded += 1
            if callback:
                callback(res)
        return out

    def _reconnect(self, error: str) -> None:
        """Wait until the tracker hands out a session of the board again, for at most ``reconnect_s``."""
        deadline = time.monotonic() + self.reconnect_s
        while True:
            probe = self.worker.call("schedules.rpc:probe_job",
                                     (self.host, self.port, self.key, self.session_timeout), self.probe_timeout)
            if probe.ok:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        raise TrackerError(
            f"RPC tracker {self.host}:{self.port}: lost the device {self.key!r} in the middle of the run (after a "
            f"failed measurement: {_first_line(error)}; no session for {self.reconnect_s:.0f} s: "
            f"{_first_line(probe.error)}). The {self.recorded} measurements made before are kept (the database "
            "holds them); run the same command again to resume")

    def _job(self, build: BuildResult):
        return self.worker.call("schedules.rpc:rpc_run_job",
                                (self.host, self.port, self.key, self.session_timeout, build.artifact,
                                 build.reference, build.packed, self.config), self.timeout)


def _first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "no message"
    return line if len(line) <= limit else line[:limit] + "…"
