"""A reasonable schedule for any lowered group, derived from its loop structure (not from the op name).

TVM's no-schedule path is 20–80× slower than onnxruntime here, so every kernel gets, at least, parallel outer
loops and vectorized inner loops:

* the *main* block (the largest reduction) gets a register tile: the innermost spatial loop is split into vector
  lanes, one more spatial loop that some input does not depend on (so its loads are reused across the tile) is split
  into an unrolled tile, the reduction loops move outside the tile, the accumulators live in a local buffer when an
  epilogue follows (else in the output), and the outer spatial loops are fused and run in parallel but for a
  tile's column loop along output rows, which runs inside (:func:`columns_apart`);
* a small window (depthwise conv, pool) gets a tile of a few rows × one vector when its rows fill whole vectors
  and are read contiguously, else ("light") only its outer loops run in parallel and LLVM vectorizes the rest;
* elementwise epilogues of the main block (bias, activation, residual add) are computed inside its parallel loop,
  right after each tile is finished, so the intermediate never goes to memory;
* every other block (padding, softmax stages, pure elementwise kernels) is fused, vectorized and parallelized on
  its own (padding is kept as its own stage: inlined into a vectorized loop it was 30× slower here).

Every step is tried on a copy of the schedule and skipped if TVM rejects it, so a schedule never fails to build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schedules.tvm_env import tvm, vector_lanes

Schedule = tvm.s_tir.Schedule

VECTOR_LANES = vector_lanes("float32")  # 16 with AVX-512, 8 with AVX2
PARALLEL_MIN_WORK = 1 << 15  # below this many multiply-adds a parallel loop costs more (≈1.2 µs) than it saves


@dataclass(frozen=True)
class MainHint:
    """What the lowering knows about the main block's accesses."""

    block: str
    reuse_axes: tuple[int, ...]   # positions of spatial axes absent from at least one input access
    unit_stride_last: bool = False  # the innermost spatial axis reads memory contiguously in every input
    packable: tuple[tuple[int, int, int], ...] = ()  # (axis, param index, dim): see lowering.packable_axes
    plain_last: bool = False  # every read of the innermost spatial axis is exactly that axis, in a last dimension


PACKING_ATTR = "nacos.packed_inputs"


def pack_constant(array, axis: int, lanes: int):
    """The compile-time re-layout that :func:`schedule_packed` assumes: ``axis`` split into blocks of ``lanes``
    (zero-padded), the block moved to the last dimension — e.g. W[K, C, R, S] → W[K/8, C, R, S, 8]."""
    import numpy as np

    a = np.asarray(array)
    ext = a.shape[axis]
    pad = (-ext) % lanes
    if pad:
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, pad)
        a = np.pad(a, widths)
    shape = a.shape[:axis] + (a.shape[axis] // lanes, lanes) + a.shape[axis + 1:]
    return np.ascontiguousarray(np.moveaxis(a.reshape(shape), axis + 1, -1))


def packed_inputs(func) -> list[tuple[int, int, int]]:
    """(param index, axis, lanes) of each constant a scheduled PrimFunc expects pre-packed."""
    attr = func.attrs.get(PACKING_ATTR) if func.attrs is not None else None
    return [tuple(int(v) for v in item) for item in attr] if attr is not None else []


def _divisor(extent: int, choices=(VECTOR_LANES * 2, VECTOR_LANES)) -> int:
    for c in choices:
        if extent % c == 0:
            return c
    if extent <= VECTOR_LANES:
        return extent
    for c in range(VECTOR_LANES, 3, -1):
        if extent % c == 0:
            return c
    return 1


def _iter_kinds(sch: Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _loops_by_kind(sch: Schedule, block) -> tuple[list, list]:
    """(spatial loops, reduction loops) of a block, each in nest order."""
    loops = sch.get_loops(block)
    kinds = _iter_kinds(sch, block)
    return [lp for lp, k in zip(loops, kinds) if k == 0], [lp for lp, k in zip(loops, kinds) if k != 0]


def _extents(sch: Schedule, loops) -> list[int]:
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        out.append(int(ext) if hasattr(ext, "value") or isinstance(ext, int) else int(ext.value))
    return out


def _try(sch: Schedule, fn) -> Schedule:
    """Apply ``fn`` to a copy; keep the copy if TVM accepted every primitive."""
    trial = sch.copy()
    try:
        fn(trial)
    except Exception:  # noqa: BLE001 — any rejected primitive means: keep the schedule as it was
        return sch
    return trial


def _work(sch: Schedule, block) -> int:
    total = 1
    for e in _extents(sch, sch.get_loops(block)):
        total *= e
    return total


def schedule_injective(sch: Schedule, block) -> None:
    """Vectorize the innermost loop in whole vectors, fuse the outer loops and run them in parallel when big.

    Only the innermost loop is vectorized: fusing every loop first makes each lane recompute its multi-dimensional
    index with divisions, which was 10× slower than no schedule for a padding stage here."""
    loops = sch.get_loops(block)
    ext = _extents(sch, loops)
    total = 1
    for e in ext:
        total *= e
    outer = list(loops[:-1])
    inner = loops[-1]
    half = VECTOR_LANES // 2
    # half vectors when whole ones do not divide a long row (softmax over 196 tokens): unvectorized, the exp
    # polynomial ran at ~6 ns per element
    part = VECTOR_LANES if ext[-1] % VECTOR_LANES == 0 else \
        half if half > 1 and ext[-1] % half == 0 and ext[-1] > VECTOR_LANES * 2 else 0
    if part and part < ext[-1]:
        o, i = sch.split(inner, [None, part])
        sch.vectorize(i)
        outer.append(o)
    elif part or ext[-1] <= VECTOR_LANES * 2 and ext[-1] > 1 and len(loops) > 1:
        sch.vectorize(inner)
    elif len(loops) == 1:
        outer.append(inner)
    # the innermost loop stays out of the fused parallel loop: fused, it recomputes its index with a division
    if outer and total >= PARALLEL_MIN_WORK:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)


SMALL_REDUCTION = 64  # depthwise convs and pools: too little work per output for a register tile to pay off


def _reduce_points(sch: Schedule, block) -> int:
    total = 1
    for lp, k in zip(sch.get_loops(block), _iter_kinds(sch, block)):
        if k != 0:
            total *= _extents(sch, [lp])[0]
    return total


def schedule_light(sch: Schedule, block) -> None:
    """Parallel outer spatial loops only; the rest is left to LLVM, which vectorized small-window reductions
    (depthwise 3×3, pooling) better than an explicit tile here, especially with strided windows."""
    spatial, _ = _loops_by_kind(sch, block)
    if len(spatial) > 1 and _work(sch, block) >= PARALLEL_MIN_WORK:
        outer = spatial[:-1]
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


# rows of a small window's register tile (schedule_window), the first that divides the row axis. Against the light
# schedule, timed side by side (2 threads, stride 1): depthwise 3×3 over 96×56×56 1.4–1.6×, over 32×112×112 1.2–1.5×,
# depthwise 5×5 1.3–1.4×, a 2-channel grouped 3×3 1.6–1.9×, 3×3 max and average pools 1.15–1.25×; 4 rows and 2 rows
# within noise of each other (4 ahead on 5 of these 7)
WINDOW_ROWS = (4, 2)


def window_rows(spatial, reduce, unit_stride_last: bool) -> int:
    """Rows of :func:`schedule_window`'s tile for a small window (depthwise conv, pool) whose rows fill whole vectors
    and are read contiguously (stride 1), else 0 (strided windows keep the light schedule, which was faster)."""
    if len(spatial) < 2 or not unit_stride_last or spatial[-1] % VECTOR_LANES or \
            math.prod(reduce) > SMALL_REDUCTION:
        return 0
    return next((r for r in WINDOW_ROWS if spatial[-2] % r == 0), 1)


def schedule_window(sch: Schedule, block, rows: int) -> None:
    """A small window over rows of whole vectors: a tile of ``rows`` output rows × one vector, the whole window
    unrolled around it by LLVM (its loops innermost but for the tile), the accumulators in the output. The fused
    parallel loop stops at the row axis and the column loop runs inside it: fused in as well, the kernel ran
    1.5–1.6× slower (its loads then recompute a column index by division)."""
    spatial, reduce = _loops_by_kind(sch, block)
    outer, tile = list(spatial[:-2]), []
    if rows > 1:
        o, i = sch.split(spatial[-2], [None, rows])
        outer.append(o)
        tile.append(i)
    else:
        outer.append(spatial[-2])
    column, lane = sch.split(spatial[-1], [None, VECTOR_LANES])
    r_ext = _extents(sch, reduce)
    # extent-1 reduction loops (a depthwise conv's one input channel) first, as the search space orders them
    r_loops = [lp for lp, e in zip(reduce, r_ext) if e == 1] + [lp for lp, e in zip(reduce, r_ext) if e > 1]
    sch.reorder(*outer, column, *r_loops, *tile, lane)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if _work(sch, block) >= PARALLEL_MIN_WORK:
        sch.parallel(fused)
    for lp in tile:
        sch.unroll(lp)
    sch.vectorize(lane)
    if r_loops:
        sch.decompose_reduction(block, r_loops[0])


def tail_tile(rows: int, length: int) -> tuple[int, int]:
    """(rows, vectors) of :func:`schedule_vector_tail`'s tile: the most accumulators within
    :data:`ACC_REGISTERS`, the rows dividing ``rows``, the vectors fitting in a row of ``length``."""
    best = (1, 1)
    for vecs in (1, 2):
        if vecs * VECTOR_LANES <= length:
            r = next(r for r in range(ACC_REGISTERS // vecs, 0, -1) if rows % r == 0)
            if r * vecs > best[0] * best[1]:
                best = (r, vecs)
    return best


def schedule_vector_tail(sch: Schedule, block, row_axis: int | None) -> None:
    """A reduction whose output rows fill no whole number of vectors (196 or 49 tokens of attention's Q·Kᵀ):
    the row is partitioned into whole vectors and a part-vector tail, each with its own register tile of
    :func:`tail_tile` rows (along ``row_axis``) — instead of a vector as wide as a divisor of the row (7 lanes of 8).
    The accumulators are the output itself (no epilogue). Timed side by side (2 threads) against the 7-lane tile:
    MobileViT-XXS's 4×4×196×196 Q·Kᵀ 1.84× as fast (4 rows × 2 vectors), its 49-token one 1.25× (7 × 1)."""
    spatial, reduce = _loops_by_kind(sch, block)
    ext = _extents(sch, spatial)
    rows, vecs = tail_tile(ext[row_axis], ext[-1]) if row_axis is not None else (1, min(2, ext[-1] // VECTOR_LANES))
    outer, inner = list(spatial[:-1]), []
    if rows > 1:
        o, i = sch.split(spatial[row_axis], [None, rows])
        outer[row_axis] = o
        inner.append(i)
    sch.reorder(*outer, spatial[-1], *inner, *reduce)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if _work(sch, block) >= PARALLEL_MIN_WORK:
        sch.parallel(fused)
    lanes = vecs * VECTOR_LANES
    whole = ext[-1] - ext[-1] % lanes
    parts = sch.loop_partition(spatial[-1], [whole, None])
    for k, part in enumerate(parts):
        piece = sch.get_child_blocks(part)[0]
        own = sch.get_loops(piece)[-(1 + len(inner) + len(reduce)):]  # the part's columns, row tile, reductions
        columns, tile, red = own[0], own[1:1 + len(inner)], own[1 + len(inner):]
        if k == 0:  # whole vectors: a loop over them outside the reductions
            columns, vector = sch.split(columns, [None, lanes])
            sch.reorder(columns, *red, *tile, vector)
        else:  # the tail: one part vector
            vector = columns
            sch.reorder(*red, *tile, vector)
        for lp in tile:
            sch.unroll(lp)
        if _extents(sch, [vector])[0] > 1:
            sch.vectorize(vector)
        if red:
            sch.decompose_reduction(piece, red[0])


def schedule_reduction(sch: Schedule, block, reuse_axes: tuple[int, ...] = (), epilogue=None,
                       row_tile: bool = False, vector_tail: bool = False) -> None:
    """Register-tiled reduction (see the module docstring). ``row_tile``: tile the innermost reuse axis as wide as
    the registers allow (blocked layouts, where that axis is the next contiguous one) instead of the longest one
    by 8/4/2. ``vector_tail``: rows read contiguously that fill no whole number of vectors are partitioned into
    whole vectors and a tail (:func:`schedule_vector_tail`) when no epilogue follows."""
    spatial, reduce = _loops_by_kind(sch, block)
    ext = _extents(sch, spatial)
    if not spatial:
        return
    if vector_tail and epilogue is None and ext[-1] > VECTOR_LANES and ext[-1] % VECTOR_LANES and reduce:
        rows = [a for a in reuse_axes if a < len(spatial) - 1 and ext[a] > 1]
        schedule_vector_tail(sch, block, max(rows) if rows else None)
        return
    lanes = _divisor(ext[-1]) if ext[-1] >= 4 else 1
    outer_loops, tile = [], []
    tile_axis = None
    candidates = [a for a in reuse_axes if a < len(spatial) - 1 and ext[a] > 1]
    if candidates:
        tile_axis = max(candidates) if row_tile else max(candidates, key=lambda a: ext[a])
    for a, lp in enumerate(spatial):
        if a == len(spatial) - 1 and lanes > 1:
            o, i = sch.split(lp, [None, lanes])
            outer_loops.append(o)
            tile.append(("vector", i))
        elif a == tile_axis:
            factor = _tile_width(ext[a], lanes) if row_tile else row_factor(ext[a], lanes)
            if factor > 1:
                o, i = sch.split(lp, [None, factor])
                outer_loops.append(o)
                tile.insert(0, ("unroll", i))
            else:
                outer_loops.append(lp)
        else:
            outer_loops.append(lp)
    _finish_tiled(sch, block, outer_loops, reduce, tile, epilogue,
                  serial=columns_apart(_extents(sch, outer_loops), tile_axis if row_tile else None))


def columns_apart(outer_extents, row_axis: int | None) -> int:
    """How many trailing outer loops (of ``outer_extents``, one per spatial axis) stay out of the fused parallel
    loop: the column-tile loop of a register tile that runs along output rows (``row_axis``) and the loops after it
    (a blocked layout's lane axis), when there are at least two column tiles and every loop after them is a single
    iteration; else 0. As
    :func:`schedule_window` does for plain rows: fused in, each load and padding test recomputes its column index
    by division. Timed side by side (2 threads), apart against fused: MobileNetV2's blocked depthwise convs
    1.35–3.1× as fast, its blocked 1×1 convs 1.04–2.5× (most where the reduction is short), its 3×3 stem 2.2×;
    ResNet-18's convs 0.96–1.36× (1.2× on its 7×7 stem, level on the long reductions over 14 and 7 columns); NCHW
    1×1 convs with packed weights 1.05–1.70×, NCHW 3×3 convs 1.00–1.04×."""
    if not row_axis or len(outer_extents) - row_axis > 2:
        return 0
    ext = list(outer_extents[row_axis:])
    return len(ext) if ext[0] >= 2 and all(e == 1 for e in ext[1:]) else 0


def _finish_tiled(sch: Schedule, block, outer_loops, reduce, tile, epilogue, in_output: bool = True,
                  serial: int = 0) -> None:
    """Reduction loops outside the register tile, outer loops fused (parallel) but for the last ``serial``,
    accumulators in the output itself when ``in_output`` (the vector lanes run along its contiguous last axis) and
    no epilogue reads them, else in a local buffer. Accumulating in the output, the innermost reduction loop is
    split into unrolled steps of :data:`REDUCTION_UNROLL` when it divides."""
    r_inner = []
    if epilogue is None and in_output and reduce:
        steps = reduction_steps(_extents(sch, reduce[-1:])[0])
        if steps > 1:
            o, i = sch.split(reduce[-1], [None, steps])
            reduce, r_inner = [*reduce[:-1], o], [i]
    sch.reorder(*outer_loops, *reduce, *r_inner, *[lp for _, lp in tile])
    serial = min(serial, len(outer_loops) - 1)
    joined = outer_loops[:len(outer_loops) - serial]
    fused = sch.fuse(*joined) if len(joined) > 1 else joined[0]
    attach = outer_loops[-1] if serial else fused
    depth = len(sch.get_loops(block)) - len(reduce) - len(r_inner) - len(tile)  # loops shared with the epilogue
    if _work(sch, block) >= PARALLEL_MIN_WORK:
        sch.parallel(fused)
    if epilogue is not None:
        epilogue(sch, block, attach, depth)
    elif not in_output:  # lanes across a strided output axis: a local tile, transposed on the way out
        cw = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(cw, attach)
        _vectorize_innermost(sch, cw, depth)
    # else the tile accumulates in the output itself: a local accumulator copied out after each tile was slower
    # on each of 8 epilogue-free kernels timed side by side (the bench models' matmuls and two 1×1 convs, the
    # kernel suite's matmul and dense): 1.06–2.4×, attention's Q·Kᵀ (a 16-long reduction) most of all
    for kind, lp in tile:
        if kind == "vector":
            sch.vectorize(lp)
        else:
            sch.unroll(lp)
    for lp in r_inner:
        sch.unroll(lp)
    if reduce:
        # after the loop annotations: the decomposed update block no longer counts as a reduction block
        sch.decompose_reduction(block, reduce[0])


# reduction steps unrolled around a tile that accumulates in the output. Against the rolled loop, timed side by
# side (2 threads): a 128×128 matmul 1.09× and 1.6× as fast in two runs, MobileViT-XXS's 16×16·16×24 matmul
# 1.21×, its other matmuls and the kernel suite's attention matmul level (within 2 %)
REDUCTION_UNROLL = 8


def reduction_steps(extent: int) -> int:
    """Unrolled steps of an innermost reduction of ``extent`` around a tile that accumulates in the output:
    :data:`REDUCTION_UNROLL` when it divides a longer loop, else 1 (left rolled)."""
    return REDUCTION_UNROLL if extent % REDUCTION_UNROLL == 0 and extent > REDUCTION_UNROLL else 1


def _vectors(lanes: int) -> int:
    return max(1, -(-lanes // VECTOR_LANES))


ACC_REGISTERS = 12 if VECTOR_LANES <= 8 else 24  # vector accumulators of a register tile (of 16 / 32 registers)


def row_factor(extent: int, lanes: int) -> int:
    """Rows of the spatial strategy's register tile along the longest reuse axis: 8, 4 or 2 rows of ``lanes``
    (one or two vectors), the accumulators within :data:`ACC_REGISTERS`."""
    return next((f for f in (8, 4, 2) if extent % f == 0 and f * _vectors(lanes) <= ACC_REGISTERS), 1)


def _tile_width(extent: int, lanes: int = VECTOR_LANES) -> int:
    """Register-tile width along the output row: accumulators = width × the vectors of ``lanes``, within
    :data:`ACC_REGISTERS`. Rows of two vectors used to get 8 rows, all 16 AVX2 registers: a 128×128 matmul's
    default ran at 79 GFLOP/s where a tuned tile reached 137."""
    limit = ACC_REGISTERS // _vectors(lanes)
    for t in range(min(limit, extent), 1, -1):
        if extent % t == 0 and t >= 4:
            return t
    return min(extent, limit) if extent <= limit else 1


def packed_choice(sch: Schedule, block, hint: MainHint | None):
    """(vector axis, param index, dim) for the packed strategy, or None when no constant input allows it."""
    if hint is None or not hint.packable:
        return None
    return pick_packed(hint.packable, _block_extents(sch, block)[0], hint.unit_stride_last)


def pick_packed(options, ext, unit_stride_last: bool):
    """Among packable (axis, param, dim) ``options``, those whose axis fills whole vectors: an already blocked
    lane axis first (NCHW[b]c weights: the lanes are contiguous without re-layout), else the longest axis; None
    if no axis fills whole vectors. Shared with :func:`schedules.kernel.kernel_shape`, which reads the same choice
    from the instructions."""
    full = [o for o in options if ext[o[0]] % VECTOR_LANES == 0]
    ready = [o for o in full if o[0] == len(ext) - 1 and unit_stride_last]
    if ready:
        return ready[0]
    return max(full, key=lambda o: ext[o[0]]) if full else None


# (output-channel blocks, output row) register tiles for blocked weights, best first: 8–12 accumulators, each
# broadcast input value reused across 2–4 weight vectors. Timed on ResNet-18's and MobileNetV2's 3×3 and 1×1
# NCHW8c convs (1 thread) against a one-block row tile of 7–8: faster where they divide. AVX-512's 32 registers
# would allow wider tiles (not measured).
BLOCK_TILES = ((2, 4), (3, 4))
# Rows that no tile above divides take 2 blocks × 4 or 5 columns anyway, whichever wastes fewer columns (4 on a
# tie): the last tile of each row is ragged (a predicate keeps its columns in bounds). Timed side by side (2
# threads) against the tiles used before:
# * 7 columns (ResNet-18's last stage, MobileNetV2's and MobileViT's 7×7 convs) take 2 × 4: on the 13 distinct
#   7-column blocked convs of the three bench models, 1.02–1.35× as fast as a 1-block × 7-column row, none slower;
# * 14 columns take 2 × 5 (3 tiles, one column wasted): on the 9 distinct 14-column blocked convs of ResNet-18
#   and MobileNetV2, against 4 blocks × 2 columns, 1.26× (ResNet-18's 256-channel 3×3 conv), 1.39× (its strided
#   one) and 0.97–1.18× on the 1×1 convs. Four weight vectors per two columns re-read the weights from L2 too
#   often; 2 × 4 (two wasted columns) lost to 4 × 2 on most 1×1 convs, and 2 × 6 or 4 × 3 (12 accumulators +
#   weights + a broadcast: more than AVX2's 16 registers) lost to all.
RAGGED_TILES = ((2, 4), (2, 5))
NARROW_TILE = (4, 2)  # 2-column rows


def block_axis(packable, choice) -> int | None:
    """A second spatial axis that only the packed constant reads, as a plain index (the output-channel block of
    NCHW[b]c weights W[K/b, C/b, R, S, b, b]); None if there is none."""
    if choice is None:
        return None
    axis, param, _ = choice
    others = [a for a, p, _ in packable if p == param and a != axis]
    return others[0] if others else None


def packed_tile(ext, axis: int, reuse_axes, block: int | None, reductions: int = 1) -> dict[int, int]:
    """{spatial axis: register-tile factor} of the packed strategy: the vector lanes on ``axis``, a row of
    outputs along the innermost other reuse axis (contiguous outputs, sliding-window input reuse) and, with
    blocked weights, a few output-channel blocks (:data:`BLOCK_TILES`, else :data:`RAGGED_TILES`). Without
    blocked weights, a kernel with one reduction axis (dense, matmul) spans two vectors of lanes when that tile
    holds more accumulators: MobileViT-XXS's dense layers over 196 rows took 4 rows × 2 vectors (8 accumulators)
    instead of 7 × 1 and ran 1.15–1.38× as fast (ad-hoc, side by side). An NCHW 3×3 conv over 28 columns
    (``reductions`` 3) ran 0.82× as fast that way, so convs keep rows of one vector."""
    tile = {axis: VECTOR_LANES}
    rows = [a for a in reuse_axes if a not in (axis, block) and ext[a] > 1]
    row = max(rows) if rows else None
    if row is not None and block is not None:
        width = ext[row]
        exact = [(kt, rt) for kt, rt in BLOCK_TILES if ext[block] % kt == 0 and width % rt == 0]
        ragged = [(kt, rt) for kt, rt in RAGGED_TILES if ext[block] % kt == 0 and width > rt]
        ragged.sort(key=lambda t: -(-width // t[1]) * t[1] - width)  # wasted columns; stable: 4 on a tie
        narrow = [NARROW_TILE] if ext[block] % NARROW_TILE[0] == 0 and width % NARROW_TILE[1] == 0 else []
        choice = next(iter(exact + ragged + narrow), None)
        if choice is not None:
            tile.update({block: choice[0], row: choice[1]})
            return tile
    if row is not None:
        one = _tile_width(ext[row])  # rows of one vector
        two = _tile_width(ext[row], 2 * VECTOR_LANES) \
            if reductions == 1 and ext[axis] % (2 * VECTOR_LANES) == 0 else 1
        if two > 1 and 2 * two > one:  # more accumulators in rows of two vectors (196 rows: 4 × 2, not 7 × 1)
            tile.update({axis: 2 * VECTOR_LANES, row: two})
        elif one > 1:
            tile[row] = one
    return tile


def packed_row(factors: dict[int, int], axis: int, block: int | None) -> int | None:
    """The row axis of :func:`packed_tile`'s register tile (the tiled axis besides the lanes and the channel
    blocks), None if it has none."""
    rows = [a for a, f in factors.items() if a not in (axis, block) and f > 1]
    return rows[0] if rows else None


def _with_arity(fn, rank: int):
    """transform_layout wants a callable with one named parameter per dimension (an IndexMap object built with
    IndexMap.from_func fails its iterator analysis here), so wrap a variadic function."""
    wrappers = {1: lambda a: fn(a), 2: lambda a, b: fn(a, b), 3: lambda a, b, c: fn(a, b, c),
                4: lambda a, b, c, d: fn(a, b, c, d), 5: lambda a, b, c, d, e: fn(a, b, c, d, e),
                6: lambda a, b, c, d, e, f: fn(a, b, c, d, e, f)}
    return wrappers[rank]


def schedule_packed(sch: Schedule, block, hint: MainHint, choice, epilogue=None) -> list:
    """Vector lanes over an axis that only a constant input reads (output channels of a conv, columns of a dense):
    that constant is re-laid out at compile time so the lanes are contiguous, the other inputs are broadcast, and
    a row of outputs (the innermost other spatial axis), with blocked weights times a few output-channel blocks,
    forms the register tile (:func:`packed_tile`). Returns the packing record."""
    axis, param, dim = choice
    spatial, reduce = _loops_by_kind(sch, block)
    ext = _extents(sch, spatial)
    factors = packed_tile(ext, axis, hint.reuse_axes, block_axis(hint.packable, choice), len(reduce))
    lanes = factors[axis]  # the constant is packed in blocks of the tile's lanes (one or two vectors)
    name = sch.mod["main"].params[param].name
    read_idx = next(k for k, region in enumerate(sch.get(block).reads) if region.source.name == name)
    rank = len(sch.get(block).reads[read_idx].source.shape)

    def index_map(*idx):
        return [*idx[:dim], idx[dim] // lanes, *idx[dim + 1:], idx[dim] % lanes]

    already_blocked = dim == rank - 1 and int(sch.get(block).reads[read_idx].source.shape[dim]) == lanes
    if not already_blocked:
        sch.transform_layout(block, name, _with_arity(index_map, rank))
    outer, tile = [], []
    for a, lp in enumerate(spatial):
        if a in factors:
            o, i = sch.split(lp, [None, factors[a]])
            outer.append(o)
            tile.append(("vector" if a == axis else "unroll", i))
        else:
            outer.append(lp)
    tile.sort(key=lambda t: t[0] == "vector")  # the vector lanes innermost, the unrolled loops in axis order
    _finish_tiled(sch, block, outer, reduce, tile, epilogue, in_output=axis == len(spatial) - 1,
                  serial=columns_apart(_extents(sch, outer),
                                       packed_row(factors, axis, block_axis(hint.packable, choice))))
    return None if already_blocked else [param, dim, lanes]


def _row_lanes(length: int) -> int:
    """Vector width along a row of ``length``: whole vectors, else half vectors, else none."""
    return next((w for w in (VECTOR_LANES, VECTOR_LANES // 2) if w > 1 and length % w == 0 and length > w), 1)


def _partial_lanes(length: int) -> int:
    """Partial results per row of a row reduction (rfactor): :func:`_row_lanes`, else — rows that no vector or half
    vector divides (49 tokens) — the largest divisor above half a vector and up to two vectors (7 for 49)."""
    lanes = _row_lanes(length)
    if lanes > 1 or length <= VECTOR_LANES:
        return lanes
    return next((d for d in range(2 * VECTOR_LANES, VECTOR_LANES // 2, -1) if length % d == 0), 1)


def rowwise_kernel(blocks: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> bool:
    """Whether a kernel's blocks — (spatial extents, reduction extents) each, in order — are per-row stages
    over the last axis of the output (softmax, layer norm): every reduction reduces one row to one value, every
    other block is either per element or per row, and rows split into vectors."""
    out, _ = blocks[-1]
    if len(out) < 2 or not any(red for _, red in blocks):
        return False
    rows, length = out[:-1], out[-1]
    return all((red == (length,) and sp == rows) if red else sp in (out, rows) for sp, red in blocks) \
        and _partial_lanes(length) > 1  # rows of a prime length: vectors across rows did better


def schedule_rowwise(sch: Schedule) -> None:
    """Every stage of a row-wise kernel (:func:`rowwise_kernel`) computed inside one parallel loop over rows, each
    row's stages vectorized along it (per-element stages in whole vectors and a part-vector tail when whole
    vectors do not divide the row). Row reductions (max, sum) are split into one partial result per vector
    lane by rfactor so they run as vector operations too; left whole, LLVM keeps a strict-order float reduction scalar
    (softmax ran at ~4 GFLOP/s here)."""
    root = sch.get_sblock("root")
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(root)]
    length = _extents(sch, sch.get_loops(sch.get_sblock(names[-1])))[-1]
    lanes = _row_lanes(length)
    reductions = [n for n in names if _is_reduction(sch, sch.get_sblock(n))]
    partial = []
    for n in reductions:
        # rows of 49 tokens: 7 partial results each; MobileViT-XXS's 4×4×49×49 softmax ran 1.15–1.28× as fast as with
        # the tiled strategy in four side-by-side timings
        _, ki = sch.split(sch.get_loops(sch.get_sblock(n))[-1], [None, _partial_lanes(length)])
        partial.append(sch.rfactor(ki, 0))
    out = sch.get_sblock(names[-1])
    loops = sch.get_loops(out)
    row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    if _work(sch, out) >= PARALLEL_MIN_WORK:
        sch.parallel(row)
    inner = [sch.get_sblock(n) for n in names[:-1]]
    staged = [b for b in sch.get_child_blocks(root) if sch.get(b).name_hint != names[-1]]  # partials included
    for b in reversed(staged):  # consumers first: each producer then lands before its consumers
        sch.compute_at(b, row)
    for b in inner + [out]:
        if _is_reduction(sch, b) or len(sch.get_loops(b)) < 2:
            continue  # whole reductions (a few partial results each) and per-row scalars stay scalar
        if lanes < VECTOR_LANES < length:
            # whole vectors over most of the row and one part-vector tail (196 = 24·8 + 4): the per-element
            # stages, exp above all, ran 1.36× as fast as in half vectors on MobileViT-XXS's 196-token softmax
            main, tail = sch.loop_partition(sch.get_loops(b)[-1], [length - length % VECTOR_LANES, None])
            _, i = sch.split(main, [None, VECTOR_LANES])
            sch.vectorize(i)
            sch.vectorize(tail)
        elif lanes > 1:
            _, i = sch.split(sch.get_loops(b)[-1], [None, lanes])
            sch.vectorize(i)
    for b in partial:  # loops: row, lane (spatial), chunk (reduce) → the lanes innermost, as one vector
        lp = sch.get_loops(b)
        sch.reorder(lp[-1], lp[-2])
        sch.vectorize(sch.get_loops(b)[-1])
        sch.decompose_reduction(b, sch.get_loops(b)[1])


EPILOGUE_UNROLL = 16  # most vector rows of a fused epilogue's tile unrolled (see _vectorize_innermost)


def _vectorize_innermost(sch: Schedule, block, below: int, unroll: bool = False) -> None:
    """Vectorize the block's innermost loop if it is nested deeper than ``below`` loops (the shared outer nest).
    With ``unroll``, also unroll the loops between (up to :data:`EPILOGUE_UNROLL` rows): a fused epilogue's
    activation is a long dependent chain per vector (SiLU's exp polynomial and division: ~25 operations), and
    only unrolled rows let the core overlap the chains (in ad-hoc side-by-side timings most of MobileViT-XXS's
    SiLU kernels ran a few per cent faster, up to 14 %; none was more than 3 % slower)."""
    loops = sch.get_loops(block)
    if len(loops) <= below:
        return
    ext = _extents(sch, [loops[-1]])[0]
    if 1 < ext <= 64:
        sch.vectorize(loops[-1])
    rows = loops[below:-1]
    if unroll and rows and math.prod(_extents(sch, rows)) <= EPILOGUE_UNROLL:
        for lp in rows:
            sch.unroll(lp)


def _block_extents(sch: Schedule, block) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(spatial extents, reduction extents) of a block's loops."""
    ext = _extents(sch, sch.get_loops(block))
    kinds = _iter_kinds(sch, block)
    return tuple(e for e, k in zip(ext, kinds) if k == 0), tuple(e for e, k in zip(ext, kinds) if k != 0)


def _is_reduction(sch: Schedule, block) -> bool:
    return any(k != 0 for k in _iter_kinds(sch, block))


def choose_strategy(sch: Schedule, block, hint: MainHint | None) -> str:  # noqa: D401
    """"spatial" (lanes on the innermost output axis) when it reads memory contiguously and fills whole vectors,
    else "packed" (lanes on a packed constant's axis) when possible, else "spatial" anyway."""
    if packed_choice(sch, block, hint) is None:
        return "spatial"
    kinds = _iter_kinds(sch, block)
    last = [e for e, k in zip(_extents(sch, sch.get_loops(block)), kinds) if k == 0][-1]
    contiguous = hint is not None and hint.unit_stride_last and last % VECTOR_LANES == 0
    return "spatial" if contiguous and PREFER_SPATIAL else "packed"


PREFER_SPATIAL = False  # packed measured as fast or faster on every conv/dense shape tried here (1 thread)


def default_schedule(func, hint: MainHint | None = None, strategy: str = "auto") -> Schedule:
    """A schedule for a lowered group (see the module docstring). ``strategy``: auto | spatial | packed."""
    sch = Schedule(func)
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    names = [sch.get(b).name_hint for b in blocks]
    if rowwise_kernel([_block_extents(sch, b) for b in blocks]):
        tried = _try(sch, schedule_rowwise)
        if tried is not sch:
            return tried
    reductions = [n for n, b in zip(names, blocks) if _is_reduction(sch, b)]
    if len(reductions) == 2:  # a depthwise → 1×1 chain (schedules.fusion.CHAINS) has its own schedule
        from schedules.chain import chain_blocks, schedule_chain

        if chain_blocks(sch) is not None:
            tried = _try(sch, schedule_chain)
            if tried is not sch:
                return tried
    main = hint.block if hint and hint.block in names else (max(
        reductions, key=lambda n: _work(sch, sch.get_sblock(n))) if reductions else None)
    done: set[str] = set()
    packings: list = []
    if main is not None:
        after = names[names.index(main) + 1:]
        epilogue_ok = after and all(not _is_reduction(sch, sch.get_sblock(n)) for n in after)
        mode = choose_strategy(sch, sch.get_sblock(main), hint) if strategy == "auto" else strategy
        lanes_ready = hint is not None and hint.plain_last and hint.unit_stride_last
        if lanes_ready and _reduce_points(sch, sch.get_sblock(main)) <= SMALL_REDUCTION:
            # blocked depthwise: the padding condition is the same for every lane of a vector, so reading through
            # it costs a uniform branch, while a separate padded copy took half (stride 1) to 70% (stride 2) of
            # the kernel's time. With a long reduction (3×3 convs over many channels) the branch in the inner
            # loop cost more than the copy (1.2–1.7× slower), so those keep the padded stage.
            for n in names[:names.index(main)]:
                inlined = _try(sch, lambda s, n=n: s.compute_inline(s.get_sblock(n)))
                if inlined is not sch:
                    sch = inlined
                    done.add(n)
        rows = 0
        if strategy == "auto" and mode != "packed" and not lanes_ready \
                and _reduce_points(sch, sch.get_sblock(main)) <= SMALL_REDUCTION:
            rows = window_rows(*_block_extents(sch, sch.get_sblock(main)), hint is not None and hint.unit_stride_last)
            mode = "window" if rows else "light"

        def tile_main(s: Schedule, block, epilogue=None) -> None:
            packings.clear()
            if mode in ("light", "window"):
                raise ValueError(f"{mode} mode schedules the main block on its own")
            choice = packed_choice(s, block, hint) if mode == "packed" else None
            if choice is not None:
                record = schedule_packed(s, block, hint, choice, epilogue)
                if record is not None:
                    packings.append(record)
            else:
                schedule_reduction(s, block, hint.reuse_axes if hint else (), epilogue, row_tile=lanes_ready,
                                   vector_tail=hint is not None and hint.unit_stride_last)

        def with_epilogue(s: Schedule) -> None:
            for n in after[:-1]:
                s.compute_inline(s.get_sblock(n))
            main_block = s.get_sblock(main)
            s.set_scope(main_block, 0, "local")

            def epilogue(s2, blk, fused, depth):
                out = s2.get_sblock(after[-1])
                s2.reverse_compute_at(out, fused)
                _vectorize_innermost(s2, out, depth, unroll=True)
            tile_main(s, main_block, epilogue)

        def alone(s: Schedule) -> None:
            if mode == "light":
                schedule_light(s, s.get_sblock(main))
            elif mode == "window":
                schedule_window(s, s.get_sblock(main), rows)
            else:
                tile_main(s, s.get_sblock(main))

        tried = _try(sch, with_epilogue) if epilogue_ok else sch
        if tried is not sch:
            sch, done = tried, {main, *after}
        else:
            new = _try(sch, alone)
            if new is not sch:
                sch, done = new, {main}
            else:
                packings.clear()
    for n in names:
        if n in done:
            continue

        def one(s: Schedule, n=n) -> None:
            b = s.get_sblock(n)
            if _is_reduction(s, b):
                schedule_reduction(s, b)
            else:
                schedule_injective(s, b)
        sch = _try(sch, one)
    if packings:
        sch = Schedule(sch.mod["main"].with_attr(PACKING_ATTR, packings))
    return sch
