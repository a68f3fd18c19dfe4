"""The row-wise strategy of :mod:`schedules.default`: kernels whose stages each work on one row of the output's
last axis (softmax, layer norm) run every stage inside one parallel loop over rows, vectorized along the row."""

from __future__ import annotations

from schedules.loops import PARALLEL_MIN_WORK, VECTOR_LANES, Schedule, is_reduction, loop_extents, loop_work


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
    length = loop_extents(sch, sch.get_loops(sch.get_sblock(names[-1])))[-1]
    lanes = _row_lanes(length)
    reductions = [n for n in names if is_reduction(sch, sch.get_sblock(n))]
    partial = []
    for n in reductions:
        # rows of 49 tokens: 7 partial results each; MobileViT-XXS's 4×4×49×49 softmax ran 1.15–1.28× as fast as with
        # the tiled strategy in four side-by-side timings
        _, ki = sch.split(sch.get_loops(sch.get_sblock(n))[-1], [None, _partial_lanes(length)])
        partial.append(sch.rfactor(ki, 0))
    out = sch.get_sblock(names[-1])
    loops = sch.get_loops(out)
    row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    if loop_work(sch, out) >= PARALLEL_MIN_WORK:
        sch.parallel(row)
    inner = [sch.get_sblock(n) for n in names[:-1]]
    staged = [b for b in sch.get_child_blocks(root) if sch.get(b).name_hint != names[-1]]  # partials included
    for b in reversed(staged):  # consumers first: each producer then lands before its consumers
        sch.compute_at(b, row)
    for b in inner + [out]:
        if is_reduction(sch, b) or len(sch.get_loops(b)) < 2:
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
