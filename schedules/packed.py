"""The packed strategy of :mod:`schedules.default`: vector lanes over an axis that only a constant input reads
(a conv's output channels, a dense layer's columns), that constant re-laid out at compile time
(:func:`pack_constant`) so the lanes are contiguous, and a register tile of a row of outputs times, with blocked
NCHW[b]c weights, a few output-channel blocks (:func:`packed_tile`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedules.loops import VECTOR_LANES, Schedule, block_extents, loop_extents, loops_by_kind, with_arity
from schedules.tiled import columns_apart, finish_tiled, tile_width

if TYPE_CHECKING:
    from schedules.default import MainHint

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


def packed_choice(sch: Schedule, block, hint: MainHint | None):
    """(vector axis, param index, dim) for the packed strategy, or None when no constant input allows it."""
    if hint is None or not hint.packable:
        return None
    return pick_packed(hint.packable, block_extents(sch, block)[0], hint.unit_stride_last)


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
        one = tile_width(ext[row])  # rows of one vector
        two = tile_width(ext[row], 2 * VECTOR_LANES) \
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


def schedule_packed(sch: Schedule, block, hint: MainHint, choice, epilogue=None) -> list:
    """Vector lanes over an axis that only a constant input reads (output channels of a conv, columns of a dense):
    that constant is re-laid out at compile time so the lanes are contiguous, the other inputs are broadcast, and
    a row of outputs (the innermost other spatial axis), with blocked weights times a few output-channel blocks,
    forms the register tile (:func:`packed_tile`). Returns the packing record."""
    axis, param, dim = choice
    spatial, reduce = loops_by_kind(sch, block)
    ext = loop_extents(sch, spatial)
    factors = packed_tile(ext, axis, hint.reuse_axes, block_axis(hint.packable, choice), len(reduce))
    lanes = factors[axis]  # the constant is packed in blocks of the tile's lanes (one or two vectors)
    name = sch.mod["main"].params[param].name
    read_idx = next(k for k, region in enumerate(sch.get(block).reads) if region.source.name == name)
    rank = len(sch.get(block).reads[read_idx].source.shape)

    def index_map(*idx):
        return [*idx[:dim], idx[dim] // lanes, *idx[dim + 1:], idx[dim] % lanes]

    already_blocked = dim == rank - 1 and int(sch.get(block).reads[read_idx].source.shape[dim]) == lanes
    if not already_blocked:
        sch.transform_layout(block, name, with_arity(index_map, rank))
    outer, tile = [], []
    for a, lp in enumerate(spatial):
        if a in factors:
            o, i = sch.split(lp, [None, factors[a]])
            outer.append(o)
            tile.append(("vector" if a == axis else "unroll", i))
        else:
            outer.append(lp)
    tile.sort(key=lambda t: t[0] == "vector")  # the vector lanes innermost, the unrolled loops in axis order
    finish_tiled(sch, block, outer, reduce, tile, epilogue, in_output=axis == len(spatial) - 1,
                  serial=columns_apart(loop_extents(sch, outer),
                                       packed_row(factors, axis, block_axis(hint.packable, choice))))
    return None if already_blocked else [param, dim, lanes]
