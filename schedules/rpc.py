"""The RPC runner: measure on a remote board through a TVM RPC tracker (``tvm.rpc``).

Set up on the board ``python -m tvm.exec.rpc_server --tracker HOST:9190 --key BOARD`` and, anywhere, a tracker
``python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190``; then ``RPCRunner("HOST:9190", "BOARD")``
(build for the board's target with ``LocalBuilder(cross_cc=...)``). Each built library is uploaded, loaded and
timed on the board; its output is copied back and checked against the reference here.

The client side runs in a persistent local worker that keeps one tracker session open across measurements; a
hanging board or a lost session costs that worker (killed at the timeout, restarted, the session re-requested),
and the failure is recorded like any other.
"""

from __future__ import annotations

import os
import socket
import time

from schedules.measure import BuildResult
from schedules.runner import TimingConfig, WorkerRunner, check_and_time, load_reference
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
                 rtol: float = 1e-3, atol: float = 1e-3) -> None:
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"tracker {tracker!r}: expected HOST:PORT, e.g. 127.0.0.1:9190")
        self.host, self.port, self.key = host, int(port), key
        self.timeout, self.session_timeout = timeout, session_timeout
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

    def _job(self, build: BuildResult):
        return self.worker.call("schedules.rpc:rpc_run_job",
                                (self.host, self.port, self.key, self.session_timeout, build.artifact,
                                 build.reference, build.packed, self.config), self.timeout)
