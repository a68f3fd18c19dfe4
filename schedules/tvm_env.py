"""The one place that imports TVM: thread count, host target, and array conversion.

TVM's runtime uses one thread on this machine unless ``TVM_NUM_THREADS`` is set before it starts, so it is set
here (to the number of usable cores) unless the user already chose a value.
"""

from __future__ import annotations

import os

os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                              else (os.cpu_count() or 1)))

# TVM pins its worker threads to cores by default; on a shared machine that made kernels 2–10× slower when
# another process held a pinned core (onnxruntime and PyTorch do not pin). Users can still set it to 1.
os.environ.setdefault("TVM_BIND_THREADS", "0")

import numpy as np  # noqa: E402
import tvm  # noqa: E402,F401  (re-exported)
import tvm.s_tir  # noqa: E402,F401
import tvm.te  # noqa: E402,F401
import tvm.tirx  # noqa: E402,F401

ALIGNMENT = 64


def num_threads() -> int:
    return int(os.environ["TVM_NUM_THREADS"])


def host_target(num_cores: int | None = None) -> "tvm.target.Target":
    """The host CPU with its real ``mcpu``: generic x86-64 code was 3–10× slower here."""
    return tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                              "num-cores": int(num_cores or num_threads())})


def not_runnable_here(spec) -> str | None:
    """Why kernels built for ``spec`` cannot run on this machine (another kind, another CPU architecture), or
    None when they can."""
    t = make_target(spec)
    if t.kind.name != "llvm":
        return f"its kind is {t.kind.name}, not this CPU's llvm"
    triple = t.attrs.get("mtriple")
    here = tvm.target.codegen.llvm_get_system_triple()
    if triple and str(triple).split("-")[0] != here.split("-")[0]:
        return f"it builds for {triple}, and this machine is {here}"
    return None


def make_target(spec=None) -> "tvm.target.Target":
    if spec is None or spec in ("host", "llvm", "cpu"):
        return host_target()
    if isinstance(spec, tvm.target.Target):
        return spec
    if isinstance(spec, dict):
        return tvm.target.Target(spec)
    raise ValueError(f"unknown target {spec!r}: use 'host', a tvm.target.Target or a target dict")


def aligned(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose data starts on a 64-byte boundary (unaligned inputs can crash TVM)."""
    array = np.asarray(array)
    if array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return array
    buf = np.empty(array.nbytes + ALIGNMENT, dtype=np.uint8)
    offset = (-buf.ctypes.data) % ALIGNMENT
    out = buf[offset: offset + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def to_device(array: np.ndarray, device=None):
    return tvm.runtime.tensor(np.ascontiguousarray(array), device or tvm.cpu())


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def vector_lanes(dtype: str = "float32") -> int:
    """SIMD lanes of this CPU for ``dtype``: 512-bit registers with AVX-512, 256-bit with AVX2, else 128-bit."""
    flags = _cpu_flags()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    return max(1, bits // (8 * np.dtype(dtype).itemsize))
