"""Features of a (workload, schedule point) pair for the learned cost model — computed analytically.

The loop nest a point produces is known from the knobs alone (:mod:`schedules.apply` builds exactly
outer · mid · r_outer · r_inner · tile in the chosen order), so nothing is lowered or compiled here: extents,
vector width, parallel extent and load balance, unrolled body size, accumulator registers, and — from the main
stage's index expressions — the bytes each loop level touches (per cache level) and its arithmetic intensity.
Extracting a few thousand candidates takes milliseconds, which is what a model-guided search needs.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from schedules.kernel import Access, KernelShape, kernel_shape
from schedules.space import FUSE_LAST_APART, Point

L1_BYTES = 32 * 1024
L2_BYTES = 512 * 1024
L3_BYTES = 32 * 1024 * 1024  # znver3: 32 MB per CCX (shared)
VREGS = 16                   # AVX2 ymm registers
FMA_PIPES = 2
LEVELS = ("reg", "rin", "mid", "task")

FEATURE_NAMES = (
    # workload
    "log_flops", "log_spatial", "log_reduce", "n_spatial", "n_reduce", "log_last_extent", "injective",
    # tiling and loop structure
    "log_outer", "log_mid", "log_tile", "log_rin", "log_rout", "order_MR", "order_RM", "order_RRM",
    "acc_none", "acc_outer", "acc_inner", "log_acc_elems", "acc_vregs", "acc_spill",
    # parallel / vector / unroll
    "par", "log_par_extent", "balance", "vec", "log_vec_width", "vec_full_regs", "vec_tail",
    "unroll", "log_unrolled", "log_auto_unroll", "epi_fuse", "pad_at", "pad_inline", "inline", "layout_packed",
    # memory access of the innermost spatial axis
    "inner_contiguous", "inner_broadcast", "inner_strided",
    # footprint and intensity per loop level
    *(f"{kind}_{lvl}" for lvl in LEVELS for kind in ("log_bytes", "log_intensity", "over_l1", "over_l2")),
    # derived: what the loop nest actually does on this CPU (AVX2, 16 vector registers, 2 FMA pipes)
    "lane_util", "log_vec_instr", "log_par_per_core", "par_short", "acc_reg_ratio", "acc_over_regs",
    "rin_contiguous", "rin_strided", "log_rin_stride", "log_reg_bytes_per_flop", "unrolled_over_64",
    "log_inner_trip", "over_l3_task", "pad_root", "log_serial_iters", "est_log_cycles",
    # iterations computed past the edge by ragged register tiles (fraction of the output)
    "tile_waste",
    # depthwise → 1×1 chains (schedules.chain_space): the depthwise row's column tile and its ragged waste
    "chain", "chain_log_dw_cols", "chain_dw_waste",
)
INDEX = {n: k for k, n in enumerate(FEATURE_NAMES)}


def _log(x: float) -> float:
    return math.log2(max(float(x), 1.0))


def footprint(acc: Access, extents: Sequence[int]) -> float:
    """Elements of ``acc``'s tensor touched while the loop axes run over ``extents`` (spatial then reduce)."""
    n = 1.0
    for dim, coefs in zip(acc.dims, acc.coefs):
        span = 1.0 + sum(c * (e - 1) for c, e in zip(coefs, extents))
        n *= min(float(dim), span)
    return n


def _stride(acc: Access, axis: int) -> float:
    """Element stride of ``acc`` (row-major) when loop axis ``axis`` advances by one."""
    stride, step = 0.0, 1.0
    for dim, coefs in zip(reversed(acc.dims), reversed(acc.coefs)):
        stride += coefs[axis] * step
        step *= dim
    return stride


def _cores(target: str) -> int:
    try:
        return int(json.loads(target).get("num-cores", 1))
    except (ValueError, AttributeError):
        return 1


def _reduction_features(f: dict, sh: KernelShape, p: Point, lanes: int, cores: int) -> None:
    n, nr = len(sh.spatial), len(sh.reduce)
    packed = p.get("layout") == "packed" and sh.packed is not None
    vaxis = sh.packed[0] if packed else n - 1
    mids = [p[f"s{i}"][0] for i in range(n)]
    tiles = [p[f"s{i}"][1] for i in range(n)]
    outers = [-(-e // (m * t)) for e, m, t in zip(sh.spatial, mids, tiles)]  # ragged tiles: the last one partial
    f["tile_waste"] = math.prod(o * m * t for o, m, t in zip(outers, mids, tiles)) / math.prod(sh.spatial) - 1.0
    rin = [p[f"r{j}"] for j in range(nr)]
    rout = [e // r for e, r in zip(sh.reduce, rin)]
    order, acc = p["order"], p["acc"]
    apart = FUSE_LAST_APART[p.get("fuse_last", 1)] if n > 1 else 0
    outer = math.prod(outers[:n - min(apart, n - 1)])
    f.update(log_outer=_log(outer), log_mid=_log(math.prod(mids)), log_tile=_log(math.prod(tiles)),
             log_rin=_log(math.prod(rin)), log_rout=_log(math.prod(rout)))
    f[f"order_{order}"] = 1.0
    f[f"acc_{acc}"] = 1.0
    acc_elems = 0 if acc == "none" else math.prod(tiles) * (math.prod(mids) if acc == "outer" else 1)
    f["log_acc_elems"] = _log(acc_elems)
    vregs = math.prod(tiles) / max(1, lanes)
    f["acc_vregs"], f["acc_spill"] = vregs, float(vregs > 12)
    # The innermost tile loop is vectorized whether or not the schedule says so: without vec=1, LLVM's loop
    # and SLP vectorizers do it (vec=0 builds of the 3×3 conv hold ymm/xmm FMAs, no scalar ones). Sampled
    # schedules with vec=0 ran about as fast as those with vec=1 (medians within 0.25 log2 on 3 suite kernels
    # × 448 points, docs/performance.md), so vec_w counts the lanes the tile can fill either way, and "vec"
    # stays a flag for whatever the explicit form changes.
    vec_w = tiles[vaxis]
    f.update(vec=float(p["vec"] and tiles[vaxis] > 1), log_vec_width=_log(vec_w),
             vec_full_regs=float(vec_w % lanes == 0), vec_tail=float(vec_w % lanes) / lanes)
    unrolled = math.prod(tiles) // (tiles[vaxis] if p["vec"] else 1) if p["unroll"] else 1
    if p["unroll"] == 2:
        unrolled *= math.prod(rin)
    f.update(unroll=float(p["unroll"]), log_unrolled=_log(unrolled), log_auto_unroll=_log(1 + p["auto_unroll"]),
             epi_fuse=float(p.get("epi") == "fuse"), pad_at=float(p.get("pad") == "at"),
             pad_inline=float(p.get("pad") == "inline"), layout_packed=float(packed))
    _parallel(f, outer, p["par"], cores)
    f["pad_root"] = float(p.get("pad") == "root")
    reads = sh.accesses[:-1]
    _derived(f, sh, tiles, rin, vec_w, lanes, outer if p["par"] else 1, cores, vregs,
             unrolled, reads, nr, n)
    # a packed constant is the one read that uses the packed axis, and packing makes that read contiguous
    strides = [min(_stride(a, vaxis), 1.0) if packed else _stride(a, vaxis) for a in reads]
    f.update(inner_contiguous=sum(s == 1 for s in strides), inner_broadcast=sum(s == 0 for s in strides),
             inner_strided=sum(s > 1 for s in strides))
    mt = [m * t for m, t in zip(mids, tiles)]
    ones = [1] * nr
    levels = {"reg": tiles + ones, "rin": tiles + rin, "task": mt + list(sh.reduce),
              "mid": {"MR": tiles + list(sh.reduce), "RM": mt + rin, "RRM": mt + ones}[order]}
    for lvl, ext in levels.items():
        nbytes = sum(footprint(a, ext) * a.itemsize for a in sh.accesses)
        flops = 2.0 * math.prod(ext)
        f[f"log_bytes_{lvl}"] = _log(nbytes)
        f[f"log_intensity_{lvl}"] = math.log2(max(flops / max(nbytes, 1.0), 1e-3))
        f[f"over_l1_{lvl}"] = float(nbytes > L1_BYTES)
        f[f"over_l2_{lvl}"] = float(nbytes > L2_BYTES)


def _derived(f: dict, sh: KernelShape, tiles, rin, vec_w: int, lanes: int, par_extent: int, cores: int,
             vregs: float, unrolled: int, reads, nr: int, n: int) -> None:
    """What the nest does on the CPU: lanes used, vector instructions per core, register pressure, contiguity of
    the innermost reduction, bytes loaded per FLOP in the register tile, and a crude cycle estimate."""
    util = vec_w / (math.ceil(vec_w / lanes) * lanes) if vec_w > 1 else 1.0 / lanes
    eff_lanes = lanes * util
    cores_used = min(cores, par_extent) * (f.get("balance", 1.0) if par_extent > 1 else 1.0)
    vec_instr = sh.flops / (2.0 * eff_lanes)
    f.update(lane_util=util, log_vec_instr=_log(vec_instr), log_par_per_core=_log(par_extent / max(cores, 1)),
             par_short=float(par_extent < cores), acc_reg_ratio=vregs / VREGS, acc_over_regs=float(vregs > VREGS - 2),
             unrolled_over_64=float(unrolled > 64), log_inner_trip=_log(math.prod(tiles)),
             log_serial_iters=_log(math.prod(sh.spatial) * math.prod(sh.reduce) / max(vec_w, 1) / max(cores_used, 1)))
    if nr:
        # the innermost reduction axis that actually loops (r_inner > 1), else the last one
        j = max((k for k in range(nr) if rin[k] > 1), default=nr - 1)
        st = [abs(_stride(a, n + j)) for a in reads]
        f.update(rin_contiguous=sum(x == 1 for x in st), rin_strided=sum(x > 1 for x in st),
                 log_rin_stride=_log(max(st) if st else 1))
        ext = list(tiles) + [1] * nr
        nbytes = sum(footprint(a, ext) * a.itemsize for a in reads)
        f["log_reg_bytes_per_flop"] = math.log2(max(nbytes / (2.0 * math.prod(tiles)), 1e-3))
    f["over_l3_task"] = float(2 ** f.get("log_bytes_task", 0.0) > L3_BYTES)
    # cycles ≈ vector FMAs / (pipes × cores), doubled when the accumulators spill, plus a load term
    cycles = vec_instr * (1.0 + f.get("tile_waste", 0.0)) / (FMA_PIPES * max(cores_used, 1.0))
    if vregs > VREGS - 2:
        cycles *= 1 + (vregs - VREGS + 2) / VREGS
    cycles *= 1 + 0.25 * 2 ** f.get("log_reg_bytes_per_flop", 0.0)
    f["est_log_cycles"] = _log(cycles)


def _chain_features(f: dict, space, point, lanes: int, cores: int) -> None:
    """A chain's loops are fixed (rows in parallel, register tiles of the 1×1 conv and of the depthwise row):
    only its tiles vary, so the features are those of the 1×1 conv's tile, plus the depthwise columns."""
    p = space.repair(point)
    k, w, dw = p["pw_k"], p["pw_w"], p["dw_w"]
    _, _, rows, width, block = space.pw_shape
    dw_width = space.dw_shape[3]
    acc = k * w * math.ceil(block / lanes)
    waste = -(-width // w) * w / width - 1.0
    dw_waste = -(-dw_width // dw) * dw / dw_width - 1.0
    _parallel(f, rows, 1, cores)
    cores_used = min(cores, rows) * f["balance"]
    vec_instr = 2 ** f["log_flops"] / (2.0 * lanes)  # the chain's FLOPs as vector FMAs
    f.update(chain=1.0, chain_log_dw_cols=_log(dw), chain_dw_waste=dw_waste, tile_waste=waste,
             log_tile=_log(k * w * block), log_inner_trip=_log(k * w), log_unrolled=_log(k * w), unroll=1.0,
             acc_vregs=acc, acc_spill=float(acc > 12), acc_reg_ratio=acc / VREGS, acc_over_regs=float(acc > VREGS - 2),
             vec=1.0, log_vec_width=_log(block), lane_util=1.0, vec_full_regs=float(block % lanes == 0),
             log_vec_instr=_log(vec_instr), log_par_per_core=_log(rows / max(cores, 1)),
             par_short=float(rows < cores), layout_packed=1.0,
             est_log_cycles=_log(vec_instr * (1.0 + waste) / (FMA_PIPES * max(cores_used, 1.0))))


def _parallel(f: dict, extent: int, par: int, cores: int) -> None:
    f["par"] = float(par)
    f["log_par_extent"] = _log(extent if par else 1)
    if par and extent > 0:
        f["balance"] = extent / (math.ceil(extent / cores) * cores)
    else:
        f["balance"] = 1.0 / cores


def extract(workload, point: Point, lanes: int | None = None) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES`` order) of one candidate."""
    from schedules.loops import VECTOR_LANES

    from schedules.space import space_for

    lanes = lanes or VECTOR_LANES
    sh = kernel_shape(workload)
    space = space_for(workload)
    point = space.knob_point(point)
    f: dict[str, float] = {
        "log_flops": _log(sh.flops), "log_spatial": _log(math.prod(sh.spatial)),
        "log_reduce": _log(math.prod(sh.reduce)), "n_spatial": len(sh.spatial), "n_reduce": len(sh.reduce),
        "log_last_extent": _log(sh.spatial[-1]), "injective": float(sh.kind == "injective")}
    cores = _cores(workload.target)
    if space.kind == "chain":
        _chain_features(f, space, point, lanes, cores)
    elif sh.kind == "reduction":
        _reduction_features(f, sh, point, lanes, cores)
    else:
        total = math.prod(sh.spatial)
        lw, un = point["lanes"], point["unroll"]
        f.update(vec=float(lw > 1), log_vec_width=_log(lw), vec_full_regs=float(lw % lanes == 0),
                 vec_tail=float(lw % lanes) / lanes, unroll=float(un > 1), log_unrolled=_log(un),
                 inline=float(point.get("inline", 0)), log_outer=_log(total // (lw * un)))
        _parallel(f, total // (lw * un), point["par"], cores)
        util = lw / (math.ceil(lw / lanes) * lanes) if lw > 1 else 1.0 / lanes
        par_ext = total // (lw * un) if point["par"] else 1
        f.update(lane_util=util, log_vec_instr=_log(total / max(lw, 1)),
                 log_par_per_core=_log(par_ext / max(cores, 1)), par_short=float(par_ext < cores),
                 log_serial_iters=_log(total / max(lw, 1) / max(1, min(cores, par_ext))),
                 est_log_cycles=_log(total / max(lw, 1) / max(1, min(cores, par_ext))))
    row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for name, value in f.items():
        row[INDEX[name]] = value
    return row


def extract_many(candidates: Sequence) -> np.ndarray:
    """Features of ``(workload, point)`` pairs or :class:`schedules.measure.MeasureInput` records."""
    rows = [extract(*((c.workload, c.point) if hasattr(c, "point") else c)) for c in candidates]
    return np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
