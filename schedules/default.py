"""A reasonable schedule for any lowered group, derived from its loop structure (not from the op name).

TVM's no-schedule path is 20–80× slower than onnxruntime here, so every kernel gets, at least, parallel outer
loops and vectorized inner loops:

* the *main* block (the largest reduction) gets a register tile: the innermost spatial loop is split into vector
  lanes, one more spatial loop that some input does not depend on (so its loads are reused across the tile) is split
  into an unrolled tile, the reduction loops move outside the tile, the accumulators live in a local buffer when an
  epilogue follows (else in the output), and the outer spatial loops are fused and run in parallel but for a
  tile's column loop along output rows, which runs inside (:func:`schedules.tiled.columns_apart`);
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

from schedules.loops import (PARALLEL_MIN_WORK, VECTOR_LANES, Schedule, block_extents, is_reduction,
                             iter_kinds, loop_extents, loop_work, loops_by_kind, try_on_copy,
                             vectorize_innermost)
from schedules.packed import PACKING_ATTR, packed_choice, schedule_packed
from schedules.rowwise import rowwise_kernel, schedule_rowwise
from schedules.tiled import schedule_reduction


@dataclass(frozen=True)
class MainHint:
    """What the lowering knows about the main block's accesses."""

    block: str
    reuse_axes: tuple[int, ...]   # positions of spatial axes absent from at least one input access
    unit_stride_last: bool = False  # the innermost spatial axis reads memory contiguously in every input
    packable: tuple[tuple[int, int, int], ...] = ()  # (axis, param index, dim): see lowering.packable_axes
    plain_last: bool = False  # every read of the innermost spatial axis is exactly that axis, in a last dimension


def schedule_injective(sch: Schedule, block) -> None:
    """Vectorize the innermost loop in whole vectors, fuse the outer loops and run them in parallel when big.

    Only the innermost loop is vectorized: fusing every loop first makes each lane recompute its multi-dimensional
    index with divisions, which was 10× slower than no schedule for a padding stage here."""
    loops = sch.get_loops(block)
    ext = loop_extents(sch, loops)
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
    for lp, k in zip(sch.get_loops(block), iter_kinds(sch, block)):
        if k != 0:
            total *= loop_extents(sch, [lp])[0]
    return total


def schedule_light(sch: Schedule, block) -> None:
    """Parallel outer spatial loops only; the rest is left to LLVM, which vectorized small-window reductions
    (depthwise 3×3, pooling) better than an explicit tile here, especially with strided windows."""
    spatial, _ = loops_by_kind(sch, block)
    if len(spatial) > 1 and loop_work(sch, block) >= PARALLEL_MIN_WORK:
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
    spatial, reduce = loops_by_kind(sch, block)
    outer, tile = list(spatial[:-2]), []
    if rows > 1:
        o, i = sch.split(spatial[-2], [None, rows])
        outer.append(o)
        tile.append(i)
    else:
        outer.append(spatial[-2])
    column, lane = sch.split(spatial[-1], [None, VECTOR_LANES])
    r_ext = loop_extents(sch, reduce)
    # extent-1 reduction loops (a depthwise conv's one input channel) first, as the search space orders them
    r_loops = [lp for lp, e in zip(reduce, r_ext) if e == 1] + [lp for lp, e in zip(reduce, r_ext) if e > 1]
    sch.reorder(*outer, column, *r_loops, *tile, lane)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if loop_work(sch, block) >= PARALLEL_MIN_WORK:
        sch.parallel(fused)
    for lp in tile:
        sch.unroll(lp)
    sch.vectorize(lane)
    if r_loops:
        sch.decompose_reduction(block, r_loops[0])


def choose_strategy(sch: Schedule, block, hint: MainHint | None) -> str:  # noqa: D401
    """"spatial" (lanes on the innermost output axis) when it reads memory contiguously and fills whole vectors,
    else "packed" (lanes on a packed constant's axis) when possible, else "spatial" anyway."""
    if packed_choice(sch, block, hint) is None:
        return "spatial"
    kinds = iter_kinds(sch, block)
    last = [e for e, k in zip(loop_extents(sch, sch.get_loops(block)), kinds) if k == 0][-1]
    contiguous = hint is not None and hint.unit_stride_last and last % VECTOR_LANES == 0
    return "spatial" if contiguous and PREFER_SPATIAL else "packed"


PREFER_SPATIAL = False  # packed measured as fast or faster on every conv/dense shape tried here (1 thread)


def default_schedule(func, hint: MainHint | None = None, strategy: str = "auto") -> Schedule:
    """A schedule for a lowered group (see the module docstring). ``strategy``: auto | spatial | packed."""
    sch = Schedule(func)
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    names = [sch.get(b).name_hint for b in blocks]
    if rowwise_kernel([block_extents(sch, b) for b in blocks]):
        tried = try_on_copy(sch, schedule_rowwise)
        if tried is not sch:
            return tried
    reductions = [n for n, b in zip(names, blocks) if is_reduction(sch, b)]
    if len(reductions) == 2:  # a depthwise → 1×1 chain (schedules.fusion.CHAINS) has its own schedule
        from schedules.chain import chain_blocks, schedule_chain

        if chain_blocks(sch) is not None:
            tried = try_on_copy(sch, schedule_chain)
            if tried is not sch:
                return tried
    main = hint.block if hint and hint.block in names else (max(
        reductions, key=lambda n: loop_work(sch, sch.get_sblock(n))) if reductions else None)
    done: set[str] = set()
    packings: list = []
    if main is not None:
        after = names[names.index(main) + 1:]
        epilogue_ok = after and all(not is_reduction(sch, sch.get_sblock(n)) for n in after)
        mode = choose_strategy(sch, sch.get_sblock(main), hint) if strategy == "auto" else strategy
        lanes_ready = hint is not None and hint.plain_last and hint.unit_stride_last
        if lanes_ready and _reduce_points(sch, sch.get_sblock(main)) <= SMALL_REDUCTION:
            # blocked depthwise: the padding condition is the same for every lane of a vector, so reading through
            # it costs a uniform branch, while a separate padded copy took half (stride 1) to 70% (stride 2) of
            # the kernel's time. With a long reduction (3×3 convs over many channels) the branch in the inner
            # loop cost more than the copy (1.2–1.7× slower), so those keep the padded stage.
            for n in names[:names.index(main)]:
                inlined = try_on_copy(sch, lambda s, n=n: s.compute_inline(s.get_sblock(n)))
                if inlined is not sch:
                    sch = inlined
                    done.add(n)
        rows = 0
        if strategy == "auto" and mode != "packed" and not lanes_ready \
                and _reduce_points(sch, sch.get_sblock(main)) <= SMALL_REDUCTION:
            rows = window_rows(*block_extents(sch, sch.get_sblock(main)), hint is not None and hint.unit_stride_last)
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
                vectorize_innermost(s2, out, depth, unroll=True)
            tile_main(s, main_block, epilogue)

        def alone(s: Schedule) -> None:
            if mode == "light":
                schedule_light(s, s.get_sblock(main))
            elif mode == "window":
                schedule_window(s, s.get_sblock(main), rows)
            else:
                tile_main(s, s.get_sblock(main))

        tried = try_on_copy(sch, with_epilogue) if epilogue_ok else sch
        if tried is not sch:
            sch, done = tried, {main, *after}
        else:
            new = try_on_copy(sch, alone)
            if new is not sch:
                sch, done = new, {main}
            else:
                packings.clear()
    for n in names:
        if n in done:
            continue

        def one(s: Schedule, n=n) -> None:
            b = s.get_sblock(n)
            if is_reduction(s, b):
                schedule_reduction(s, b)
            else:
                schedule_injective(s, b)
        sch = try_on_copy(sch, one)
    if packings:
        sch = Schedule(sch.mod["main"].with_attr(PACKING_ATTR, packings))
    return sch
