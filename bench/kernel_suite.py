"""The kernel suite of bench/kernels.py: each entry one fused group (an op with its epilogue) with its FLOPs and
its PyTorch eager reference, the full suite and a quick one for tests, and the fp32 peak the GFLOP/s are compared
with. bench/cost_model_quality.py tunes the same kernels (``--suite-trials``)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Kernel:
    """One suite entry: ``op`` on ``shapes`` (input order of the workload), its FLOPs (2 per multiply-add)."""

    name: str
    op: str
    shapes: tuple
    attrs: dict = field(default_factory=dict)
    epilogue: tuple = ()
    constant_weights: bool = True
    conv: bool = False

    def workload(self):
        from schedules.workload import workload_from_op

        return workload_from_op(self.op, self.shapes, self.attrs, self.epilogue,
                                constant_weights=self.constant_weights)

    @property
    def flops(self) -> int:
        s = self.shapes
        if self.op == "conv":
            n, c, h, w = s[0]
            k, cg, r, q = s[1]
            return 2 * n * k * h * w * cg * r * q  # stride 1, "same" padding in this suite
        if self.op == "conv2d_nchwc":  # x (N, C/b, H, W, b), w (K/b', C/b, R, S, b, b')
            n, cb, h, w, b = s[0]
            kb, _, r, q, _, bo = s[1]
            return 2 * n * kb * bo * h * w * cb * b * r * q
        if self.op == "dense":
            return 2 * s[0][0] * s[1][0] * s[0][1]
        a, b = s
        return 2 * math.prod(a[:-1]) * b[-1] * a[-1]

    def torch(self, arrays):
        """PyTorch eager reference of the whole kernel (epilogue included) on ``arrays``."""
        import torch
        import torch.nn.functional as F

        t = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        if self.op == "conv2d_nchwc":  # the op's own PyTorch reference (a re-laid-out F.conv2d)
            from ir.registry import get_op

            y = get_op(self.op).torch(self.attrs, *t)
        elif self.op == "conv":
            pad = self.attrs.get("pads", (0,) * 4)[0]
            y = F.conv2d(t[0], t[1], t[2] if len(t) > 2 else None, padding=pad, groups=self.attrs.get("groups", 1))
        elif self.op == "dense":
            y = F.linear(t[0], t[1], t[2] if len(t) > 2 else None)
        else:
            y = torch.matmul(t[0], t[1])
        for e in self.epilogue:
            y = getattr(torch, e)(y)
        return y


P1 = {"pads": (1, 1, 1, 1)}
FULL = (
    Kernel("conv3x3_64x56", "conv", ((1, 64, 56, 56), (64, 64, 3, 3), (64,)), P1, ("relu",), conv=True),
    Kernel("conv3x3_128x28", "conv", ((1, 128, 28, 28), (128, 128, 3, 3), (128,)), P1, ("relu",), conv=True),
    # the first one in the blocked NCHW8c layout that nacos compiles conv chains to (ir.passes.select_layout)
    Kernel("conv3x3_64x56_nchw8c", "conv2d_nchwc", ((1, 8, 56, 56, 8), (8, 8, 3, 3, 8, 8), (8, 8)), P1, ("relu",),
           conv=True),
    Kernel("depthwise3x3_96x56", "conv", ((1, 96, 56, 56), (96, 1, 3, 3)), {**P1, "groups": 96}, conv=True),
    Kernel("pointwise_64to256x56", "conv", ((1, 64, 56, 56), (256, 64, 1, 1)), conv=True),
    Kernel("dense_512to1000", "dense", ((1, 512), (1000, 512), (1000,))),
    Kernel("matmul_128", "matmul", ((128, 128), (128, 128)), constant_weights=False),
    Kernel("attn_qk_4x64x32", "matmul", ((4, 64, 32), (4, 32, 64)), constant_weights=False),
)
QUICK = (
    Kernel("conv3x3_16x16", "conv", ((1, 16, 16, 16), (32, 16, 3, 3), (32,)), P1, ("relu",), conv=True),
    Kernel("depthwise3x3_32x16", "conv", ((1, 32, 16, 16), (32, 1, 3, 3)), {**P1, "groups": 32}, conv=True),
    Kernel("dense_128to64", "dense", ((1, 128), (64, 128), (64,))),
    Kernel("attn_qk_2x16x8", "matmul", ((2, 16, 8), (2, 8, 16)), constant_weights=False),
)


def named_kernels(names: str) -> tuple[Kernel, ...]:
    """The suite entries (full and quick) named in the comma-separated ``names``; ValueError names any unknown one."""
    wanted = names.split(",")
    unknown = sorted(set(wanted) - {k.name for k in FULL + QUICK})
    if unknown:
        raise ValueError(f"unknown kernel {', '.join(unknown)} in {names!r}; known: "
                         f"{', '.join(k.name for k in FULL + QUICK)}")
    return tuple(k for k in FULL + QUICK if k.name in wanted)


def fp32_peak(threads: int) -> dict:
    """Assumed fp32 peak: 2 FMA pipes × fp32 lanes (16 with AVX-512, else 8) × 2 FLOP × clock × threads; the clock
    is the median ``cpu MHz`` of /proc/cpuinfo (2.45 GHz when it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        info = ""
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    clock = statistics.median(mhz) / 1e3 if mhz else 2.45
    lanes = 16 if "avx512f" in info else 8
    per_core = 2 * lanes * 2 * clock
    return {"clock_ghz": clock, "clock_source": "/proc/cpuinfo cpu MHz (median)", "fma_pipes": 2,
            "fp32_lanes": lanes, "gflops_per_core": per_core, "cores": threads, "gflops": per_core * threads}
