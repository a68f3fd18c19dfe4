"""The register-tiled reduction strategy of :mod:`schedules.default`: lanes along the output's innermost axis, an
unrolled row of outputs along a reuse axis, the reductions outside the tile, the outer loops fused and parallel
(:func:`schedule_reduction`), and rows that fill no whole vectors split into whole vectors and a tail
(:func:`schedule_vector_tail`). :mod:`schedules.packed` finishes its tiles the same way (:func:`finish_tiled`)."""

from __future__ import annotations

from schedules.loops import (PARALLEL_MIN_WORK, VECTOR_LANES, Schedule, lane_divisor, loop_extents, loop_work,
                             loops_by_kind, vectorize_innermost)


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
    spatial, reduce = loops_by_kind(sch, block)
    ext = loop_extents(sch, spatial)
    rows, vecs = tail_tile(ext[row_axis], ext[-1]) if row_axis is not None else (1, min(2, ext[-1] // VECTOR_LANES))
    outer, inner = list(spatial[:-1]), []
    if rows > 1:
        o, i = sch.split(spatial[row_axis], [None, rows])
        outer[row_axis] = o
        inner.append(i)
    sch.reorder(*outer, spatial[-1], *inner, *reduce)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if loop_work(sch, block) >= PARALLEL_MIN_WORK:
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
        if loop_extents(sch, [vector])[0] > 1:
            sch.vectorize(vector)
        if red:
            sch.decompose_reduction(piece, red[0])


def schedule_reduction(sch: Schedule, block, reuse_axes: tuple[int, ...] = (), epilogue=None,
                       row_tile: bool = False, vector_tail: bool = False) -> None:
    """Register-tiled reduction (see :mod:`schedules.default`). ``row_tile``: tile the innermost reuse axis as wide as
    the registers allow (blocked layouts, where that axis is the next contiguous one) instead of the longest one
    by 8/4/2. ``vector_tail``: rows read contiguously that fill no whole number of vectors are partitioned into
    whole vectors and a tail (:func:`schedule_vector_tail`) when no epilogue follows."""
    spatial, reduce = loops_by_kind(sch, block)
    ext = loop_extents(sch, spatial)
    if not spatial:
        return
    if vector_tail and epilogue is None and ext[-1] > VECTOR_LANES and ext[-1] % VECTOR_LANES and reduce:
        rows = [a for a in reuse_axes if a < len(spatial) - 1 and ext[a] > 1]
        schedule_vector_tail(sch, block, max(rows) if rows else None)
        return
    lanes = lane_divisor(ext[-1]) if ext[-1] >= 4 else 1
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
            factor = tile_width(ext[a], lanes) if row_tile else row_factor(ext[a], lanes)
            if factor > 1:
                o, i = sch.split(lp, [None, factor])
                outer_loops.append(o)
                tile.insert(0, ("unroll", i))
            else:
                outer_loops.append(lp)
        else:
            outer_loops.append(lp)
    finish_tiled(sch, block, outer_loops, reduce, tile, epilogue,
                  serial=columns_apart(loop_extents(sch, outer_loops), tile_axis if row_tile else None))


def columns_apart(outer_extents, row_axis: int | None) -> int:
    """How many trailing outer loops (of ``outer_extents``, one per spatial axis) stay out of the fused parallel
    loop: the column-tile loop of a register tile that runs along output rows (``row_axis``) and the loops after it
    (a blocked layout's lane axis), when there are at least two column tiles and every loop after them is a single
    iteration; else 0. As
    :func:`schedules.default.schedule_window` does for plain rows: fused in, each load and padding test recomputes its column index
    by division. Timed side by side (2 threads), apart against fused: MobileNetV2's blocked depthwise convs
    1.35–3.1× as fast, its blocked 1×1 convs 1.04–2.5× (most where the reduction is short), its 3×3 stem 2.2×;
    ResNet-18's convs 0.96–1.36× (1.2× on its 7×7 stem, level on the long reductions over 14 and 7 columns); NCHW
    1×1 convs with packed weights 1.05–1.70×, NCHW 3×3 convs 1.00–1.04×."""
    if not row_axis or len(outer_extents) - row_axis > 2:
        return 0
    ext = list(outer_extents[row_axis:])
    return len(ext) if ext[0] >= 2 and all(e == 1 for e in ext[1:]) else 0


def finish_tiled(sch: Schedule, block, outer_loops, reduce, tile, epilogue, in_output: bool = True,
                  serial: int = 0) -> None:
    """Reduction loops outside the register tile, outer loops fused (parallel) but for the last ``serial``,
    accumulators in the output itself when ``in_output`` (the vector lanes run along its contiguous last axis) and
    no epilogue reads them, else in a local buffer. Accumulating in the output, the innermost reduction loop is
    split into unrolled steps of :data:`REDUCTION_UNROLL` when it divides."""
    r_inner = []
    if epilogue is None and in_output and reduce:
        steps = reduction_steps(loop_extents(sch, reduce[-1:])[0])
        if steps > 1:
            o, i = sch.split(reduce[-1], [None, steps])
            reduce, r_inner = [*reduce[:-1], o], [i]
    sch.reorder(*outer_loops, *reduce, *r_inner, *[lp for _, lp in tile])
    serial = min(serial, len(outer_loops) - 1)
    joined = outer_loops[:len(outer_loops) - serial]
    fused = sch.fuse(*joined) if len(joined) > 1 else joined[0]
    attach = outer_loops[-1] if serial else fused
    depth = len(sch.get_loops(block)) - len(reduce) - len(r_inner) - len(tile)  # loops shared with the epilogue
    if loop_work(sch, block) >= PARALLEL_MIN_WORK:
        sch.parallel(fused)
    if epilogue is not None:
        epilogue(sch, block, attach, depth)
    elif not in_output:  # lanes across a strided output axis: a local tile, transposed on the way out
        cw = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(cw, attach)
        vectorize_innermost(sch, cw, depth)
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


def vectors_of(lanes: int) -> int:
    return max(1, -(-lanes // VECTOR_LANES))


ACC_REGISTERS = 12 if VECTOR_LANES <= 8 else 24  # vector accumulators of a register tile (of 16 / 32 registers)


def row_factor(extent: int, lanes: int) -> int:
    """Rows of the spatial strategy's register tile along the longest reuse axis: 8, 4 or 2 rows of ``lanes``
    (one or two vectors), the accumulators within :data:`ACC_REGISTERS`."""
    return next((f for f in (8, 4, 2) if extent % f == 0 and f * vectors_of(lanes) <= ACC_REGISTERS), 1)


def tile_width(extent: int, lanes: int = VECTOR_LANES) -> int:
    """Register-tile width along the output row: accumulators = width × the vectors of ``lanes``, within
    :data:`ACC_REGISTERS`. Rows of two vectors used to get 8 rows, all 16 AVX2 registers: a 128×128 matmul's
    default ran at 79 GFLOP/s where a tuned tile reached 137."""
    limit = ACC_REGISTERS // vectors_of(lanes)
    for t in range(min(limit, extent), 1, -1):
        if extent % t == 0 and t >= 4:
            return t
    return min(extent, limit) if extent <= limit else 1
