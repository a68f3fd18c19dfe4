"""Shared helpers of the bench scripts: side-by-side timing, ONNX export of torch models, JSON output.

The machine is shared and noisy, so runtimes are never timed one after the other: each *round* calls every
runtime in turn (``number`` calls each), and the medians over rounds are compared. Ratios, not absolute times,
are what the benches report as results.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def interleaved(runners: dict[str, Callable[[], object]], rounds: int = 15, number: int = 5,
                warmup: int = 3, pause_s: float = 0.05) -> dict[str, dict]:
    """Median seconds per call of each runner, measured in interleaved rounds.

    An untimed pause separates runtimes: onnxruntime's worker threads keep spinning after a call and slowed the
    next TVM call 5–100× here."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))  # no runner always goes first
        for name in order:
            fn = runners[name]
            time.sleep(pause_s)
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - t0) / number)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "rounds": len(v)}
            for k, v in samples.items()}


def torch_to_onnx_bytes(module, example: tuple, input_names=("input",)) -> bytes:
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=17, input_names=list(input_names))
    return buf.getvalue()


def ort_session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def machine() -> dict:
    from schedules.tvm_env import num_threads, tvm

    return {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "threads": num_threads(),
            "cores": os.cpu_count()}


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=_json_default))
    print(f"wrote {path}")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)
