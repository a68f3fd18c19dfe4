"""Timing each runtime in a process of its own, with every other runtime's process stopped while it runs.

In one process, runtimes share the 2 cores with each other's idle thread pools: TVM's workers spin-wait up to
300 000 yields after a parallel region, onnxruntime's spin after a run, and whichever runtime is timed next runs
next to them. On this machine that moved the in-process medians of the same model by up to 3× between runs
(onnxruntime on MobileNetV2 at 224: 8.7 to 24.3 ms in the bench process).

Here every runtime is built in its own worker process (spawned, so no state is inherited); the parent stops all
of them (SIGSTOP: their threads cannot run, spinning or not) and resumes only the one being timed, in interleaved
rounds with the order alternating (:func:`nacos.benchmark.interleave`, as in process). Only POSIX has SIGSTOP.

    times = measure_isolated("mobilenet_v2@224", ["nacos", "onnxruntime"], threads=2, db="tuned.db")
"""

from __future__ import annotations

import os
import signal
import time
import traceback

RUNTIMES = ("nacos", "nacos-nchw", "nacos-apart", "onnxruntime", "pytorch")


def _build(name: str, model: str, input_shapes, seed: int, db: str | None, threads: int):
    """The runtime ``name`` as a no-argument callable (built inside the worker)."""
    from nacos.benchmark import ORT, _nacos_runtime, _ort_session, _torch_runtime, resolve_model

    spec = resolve_model(model, input_shapes, seed)
    if name in ("nacos", "nacos-nchw", "nacos-apart"):
        fn = _nacos_runtime(spec, db, 0, {}, lambda msg: None, layout="nchw" if name == "nacos-nchw" else None,
                            chains=False if name == "nacos-apart" else None)
        return lambda: fn(*spec.inputs)
    if name == ORT:
        sess = _ort_session(spec.onnx_bytes, threads)
        feed = {i.name: x for i, x in zip(sess.get_inputs(), spec.inputs)}
        return lambda: sess.run(None, feed)
    if name == "pytorch" and spec.torch_module is not None:
        fn = _torch_runtime(spec, threads)
        return lambda: fn()
    raise ValueError(f"no isolated runtime {name!r} for {model} (choose from {', '.join(RUNTIMES)})")


def _worker(conn, name: str, model: str, input_shapes, seed: int, db: str | None, threads: int) -> None:
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM starts in this process
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    try:
        call = _build(name, model, input_shapes, seed, db, threads)
        call()
        call()
    except Exception:  # noqa: BLE001 — reported to the parent, which leaves this runtime out
        conn.send(("error", traceback.format_exc(limit=3).strip().splitlines()[-1]))
        return
    conn.send(("ready", None))
    while True:
        n = conn.recv()
        if n is None:
            return
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        conn.send(("time", (time.perf_counter() - t0) / n))


def measure_isolated(model: str, names, threads: int, db: str | None = None, input_shapes=None, seed: int = 0,
                     rounds: int = 15, round_s: float = 0.02, settle_s: float = 0.05,
                     budget_s: float = 120.0) -> tuple[dict[str, dict], list[str]]:
    """({runtime: median_s, min_s, max_s, rounds, number}, notes) for ``names`` timed in processes of their own;
    ``db``: the tuning database nacos reads (it is not tuned here)."""
    import multiprocessing

    from nacos.benchmark import interleave

    if not hasattr(signal, "SIGSTOP"):
        return {}, ["isolated timing needs POSIX signals (SIGSTOP); skipped"]
    ctx = multiprocessing.get_context("spawn")
    workers, notes = {}, []
    try:
        for name in names:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, name, model, input_shapes, seed, db, threads),
                               daemon=True)
            proc.start()
            child.close()  # the worker holds the only other end: its death ends recv() with EOFError, not a hang
            try:
                kind, value = parent.recv()  # one at a time: building two models at once would share the cores
            except EOFError:
                proc.join(5)
                kind, value = "error", f"its process died while building (exit code {proc.exitcode})"
            if kind == "error":
                notes.append(f"{name}: not timed in isolation ({value})")
                proc.join(5)
                continue
            os.kill(proc.pid, signal.SIGSTOP)
            workers[name] = (proc, parent)

        def timed(name: str, n: int) -> float:
            proc, conn = workers[name]
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(settle_s)  # untimed: its own threads settle after being resumed
            conn.send(n)
            try:
                _, seconds = conn.recv()
            except EOFError:
                raise RuntimeError(f"{name}: its process died while being timed (exit code "
                                   f"{proc.exitcode})") from None
            os.kill(proc.pid, signal.SIGSTOP)
            return seconds

        calls = {name: timed(name, 1) for name in workers}
        times = interleave({k: (lambda n, k=k: timed(k, n)) for k in workers}, calls, rounds, budget_s, round_s,
                           block_overhead_s=settle_s)
    finally:
        for proc, conn in workers.values():
            try:
                os.kill(proc.pid, signal.SIGCONT)
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
    return times, notes
