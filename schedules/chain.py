"""The default schedule of a chain kernel: a blocked depthwise conv (+ epilogue) feeding a 1×1 conv (+ epilogue)
in one kernel (:data:`schedules.fusion.CHAINS`).

One parallel loop runs over output rows. Each iteration computes the depthwise conv's row for every channel
block into a row buffer (compacted by TVM to one row: C/b · W · b floats, 14–32 KB on MobileNetV2), then the 1×1
conv reads that buffer with the same register tiles as its kernel alone (:func:`schedules.packed.packed_tile`:
output-channel blocks × columns, the lanes innermost). The depthwise output never goes to memory: in
MobileNetV2 the two kernels apart wrote and re-read it (1.2–1.8 MB at 56×56) between calls.

The 1×1 conv reads row r of the depthwise output for its row r (stride 1, no padding), so no row is computed
twice. Timed alone, warm, side by side (2 threads, ad-hoc) against the two default kernels (which then had their
intermediate in cache), the 17 chains of MobileNetV2 ran 0.88–1.03× their time; in the model, where the
intermediate went to memory and back, ``bench/models_vs_runtimes.py --isolated --apart-too`` measured MobileNetV2
at 0.85–0.97× and MobileViT-XXS at 0.92–1.05× the latency of the same model with the kernels apart.

Splitting the output channels in two parallel halves when there are fewer rows than 2 per thread (7×7, 14×14)
computed each depthwise row twice and ran 1.09–1.25× slower on all but one such chain: rows stay the only
parallel loop.
"""

from __future__ import annotations

from schedules.loops import is_reduction, iter_kinds, loop_extents
from schedules.packed import packed_tile
from schedules.tiled import tile_width
from schedules.tvm_env import tvm

Schedule = tvm.s_tir.Schedule


def chain_blocks(sch: Schedule) -> tuple[list[str], str, list[str], str, list[str]] | None:
    """(producers, depthwise block, its epilogue, 1×1 block, its epilogue) when the function is a chain whose
    loops this schedule knows: two reductions, both over blocked outputs (lanes last), the depthwise one with
    two reduction loops (R, S), the 1×1 one with four (C/b, R, S, b); None otherwise."""
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    reds = [n for n in names if is_reduction(sch, sch.get_sblock(n))]
    if len(reds) != 2:
        return None
    first, second = reds
    i, j = names.index(first), names.index(second)
    if j == i + 1 or j == len(names) - 1:
        return None  # the depthwise result needs an epilogue block to write the row buffer, the 1×1 one too
    if iter_kinds(sch, sch.get_sblock(first)) != [0] * 5 + [2] * 2 \
            or iter_kinds(sch, sch.get_sblock(second)) != [0] * 5 + [2] * 4:
        return None
    return names[:i], first, names[i + 1:j], second, names[j + 1:]


def default_knobs(pw_ext, dw_width: int) -> dict[str, int]:
    """The register tiles :func:`schedule_chain` picks by itself: the 1×1 conv's tile as its kernel alone would
    have it (output-channel blocks × columns, :func:`schedules.packed.packed_tile`) and the depthwise row's column
    tile (:func:`schedules.tiled.tile_width`). ``pw_ext``: the 1×1 conv's spatial extents (N, K/b, H, W, b)."""
    tile = packed_tile(list(pw_ext), 4, (2, 3), 1, reductions=4)
    return {"pw_k": tile.get(1, 1), "pw_w": tile.get(3, 1), "dw_w": tile_width(dw_width)}


def schedule_chain(sch: Schedule, knobs: dict | None = None) -> None:
    """Schedule a chain kernel in place (see the module docstring); raises ValueError when the function is not
    one :func:`chain_blocks` recognizes. ``knobs`` (:class:`schedules.chain_space.ChainSpace`'s) override the
    register tiles of :func:`default_knobs`: ``pw_k`` output-channel blocks × ``pw_w`` columns for the 1×1 conv,
    ``dw_w`` columns for the depthwise row; a factor that does not divide its loop leaves a ragged last tile."""
    found = chain_blocks(sch)
    if found is None:
        raise ValueError("not a depthwise → 1×1 chain this schedule knows")
    producers, dw, dw_after, pw, pw_after = found
    for n in producers + dw_after[:-1] + pw_after[:-1]:  # padding read through, bias and activations inlined
        sch.compute_inline(sch.get_sblock(n))
    P, D = sch.get_sblock(pw), sch.get_sblock(dw)
    row_out, out = sch.get_sblock(dw_after[-1]), sch.get_sblock(pw_after[-1])
    sch.set_scope(P, 0, "local")
    sch.set_scope(D, 0, "local")

    # the 1×1 conv: rows in parallel, then output-channel blocks × columns register tiles
    n, k, h, w, ki, c, r, s, cb = sch.get_loops(P)
    ext = loop_extents(sch, [n, k, h, w, ki])
    dw_width = loop_extents(sch, [sch.get_loops(row_out)[-2]])[0]
    knobs = {**default_knobs(ext, dw_width), **(knobs or {})}
    ko, kin = sch.split(k, [None, knobs["pw_k"]])
    wo, wi = sch.split(w, [None, knobs["pw_w"]])
    sch.reorder(n, h, ko, wo, c, r, s, cb, kin, wi, ki)
    rows = sch.fuse(n, h)
    sch.parallel(rows)
    sch.unroll(kin)
    sch.unroll(wi)
    sch.vectorize(ki)
    sch.reverse_compute_at(out, wo)
    loops = sch.get_loops(out)
    sch.vectorize(loops[-1])
    for loop in loops[-3:-1]:
        sch.unroll(loop)
    sch.decompose_reduction(P, c)

    # the depthwise row, inside the same parallel iteration, in tiles of columns × lanes
    sch.compute_at(row_out, rows)
    loops = sch.get_loops(row_out)
    if dw_width > 1:
        cols_o, _ = sch.split(loops[-2], [None, knobs["dw_w"]])
        loops = sch.get_loops(row_out)
        sch.unroll(loops[-2])
    else:  # a row of one column has nothing to tile (and TVM would drop the unit loops of a split)
        cols_o = loops[-2]
    sch.vectorize(loops[-1])
    sch.compute_at(D, cols_o)
    if dw_width > 1:
        cols, lanes, taps_r, taps_s = sch.get_loops(D)[-4:]
        sch.reorder(taps_r, taps_s, cols, lanes)
        sch.unroll(cols)
    else:
        lanes, taps_r, taps_s = sch.get_loops(D)[-3:]
        sch.reorder(taps_r, taps_s, lanes)
    sch.vectorize(lanes)
    sch.decompose_reduction(D, taps_r)
