"""Apply a schedule-space point to a lowered group: knob values → ``tvm.s_tir.Schedule`` primitives.

The main block gets the knobs (see :mod:`schedules.space`); every other block (producers left at root, unfused
epilogues, the other stages of softmax or layer norm) gets :mod:`schedules.default`'s per-block schedule. The
primitive sequence for the space's default point is the one :func:`schedules.default.default_schedule` issues,
so tuning never starts from something worse than the default.

A primitive TVM rejects raises :class:`ScheduleError` (the measurement records it as a failed candidate).
"""

from __future__ import annotations

import math

from schedules.default import schedule_injective
from schedules.loops import is_reduction, loop_extents, try_on_copy, vectorize_innermost, with_arity
from schedules.packed import PACKING_ATTR
from schedules.rowwise import schedule_rowwise
from schedules.tiled import schedule_reduction
from schedules.kernel import KernelShape
from schedules.space import FUSE_LAST_APART, Point
from schedules.tvm_env import tvm

Schedule = tvm.s_tir.Schedule


class ScheduleError(RuntimeError):
    """TVM rejected a primitive for this point (a bug in :meth:`ScheduleSpace.repair` if it ever happens)."""


def apply_point(func, shape: KernelShape, point: Point) -> Schedule:
    sch = Schedule(func)
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    if names != list(shape.blocks):
        raise ScheduleError(f"lowered blocks {names} differ from the instruction's {list(shape.blocks)}")
    step = "start"
    try:
        packings = []
        if point.get("rows") == "rowwise":
            schedule_rowwise(sch)
            done = set(shape.blocks)
        elif shape.kind == "injective":
            done = _apply_injective(sch, shape, point)
        else:
            done, packings = _apply_reduction(sch, shape, point)
        step = "other blocks"
        for n in shape.blocks:
            if n not in done:
                sch = try_on_copy(sch, lambda s, n=n: _default_block(s, n))
    except Exception as e:  # noqa: BLE001 — TVM raises its own error types for rejected primitives
        raise ScheduleError(f"{step}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}") from None
    if packings:  # tells the compiler (and the runner) which constants to pre-pack, as default_schedule does
        sch = Schedule(sch.mod["main"].with_attr(PACKING_ATTR, packings))
    return sch


def _default_block(sch: Schedule, name: str) -> None:
    b = sch.get_sblock(name)
    if is_reduction(sch, b):
        schedule_reduction(sch, b)
    else:
        schedule_injective(sch, b)


def _apply_injective(sch: Schedule, shape: KernelShape, p: Point) -> set[str]:
    done = {shape.main}
    if p.get("inline", 0):
        for n in shape.blocks[:-1]:
            sch.compute_inline(sch.get_sblock(n))
            done.add(n)
    block = sch.get_sblock(shape.main)
    loops = list(sch.get_loops(block))
    lanes, unroll = p["lanes"], p["unroll"]
    if p["fuse"] == "all" and len(loops) > 1:
        loops = [sch.fuse(*loops)]
    inner = loops[-1]
    extent = loop_extents(sch, [inner])[0]
    if lanes == extent and unroll == 1 and len(loops) > 1:
        sch.vectorize(inner)  # the whole innermost loop is one vector
        outer = loops[:-1]
    elif lanes > 1 or unroll > 1:
        parts = sch.split(inner, [None] + ([unroll] if unroll > 1 else []) + ([lanes] if lanes > 1 else []))
        if lanes > 1:
            sch.vectorize(parts[-1])
        if unroll > 1:
            sch.unroll(parts[1])
        outer = loops[:-1] + [parts[0]]
    else:  # no vector: the innermost loop stays out of the fused loop (fused, it would divide per iteration)
        outer = loops[:-1] if len(loops) > 1 else loops
    if p["par"] and outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    return done


def _apply_reduction(sch: Schedule, shape: KernelShape, p: Point) -> set[str]:
    n_sp, n_red = len(shape.spatial), len(shape.reduce)
    done = {shape.main}
    if p.get("pad") == "inline":
        for n in shape.producers:
            sch.compute_inline(sch.get_sblock(n))
            done.add(n)
    fuse_epi = bool(shape.epilogue) and p.get("epi") == "fuse"
    if fuse_epi:
        for n in shape.epilogue[:-1]:
            sch.compute_inline(sch.get_sblock(n))
        sch.set_scope(sch.get_sblock(shape.main), 0, "local")
        done.update(shape.epilogue)
    block = sch.get_sblock(shape.main)
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    spatial = [lp for lp, k in zip(loops, kinds) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds) if k != 0]
    if len(spatial) != n_sp or len(reduce) != n_red:
        raise ScheduleError(f"main block has {len(spatial)}+{len(reduce)} loops, expected {n_sp}+{n_red}")
    packings = []
    vaxis = n_sp - 1
    if p.get("layout") == "packed" and shape.packed is not None:
        vaxis = shape.packed[0]
        record = _pack(sch, block, shape.packed, p[f"s{vaxis}"][1])
        if record is not None:
            packings.append(record)
        loops = sch.get_loops(block)
        spatial, reduce = loops[:n_sp], loops[n_sp:]
    outer, mid, tile = [], [], []  # tile: (axis, loop)
    for i, lp in enumerate(spatial):
        m, t = p[f"s{i}"]
        factors = [None] + ([m] if m > 1 else []) + ([t] if t > 1 else [])
        parts = sch.split(lp, factors) if len(factors) > 1 else [lp]
        outer.append(parts[0])
        if m > 1:
            mid.append(parts[1])
        if t > 1:
            tile.append((i, parts[-1]))
    r_outer, r_inner = [], []
    for j, (lp, ext) in enumerate(zip(reduce, loop_extents(sch, reduce))):
        r = p[f"r{j}"]
        if r <= 1:
            r_outer.append(lp)
        elif r >= ext:
            r_inner.append(lp)
        else:
            o, i = sch.split(lp, [None, r])
            r_outer.append(o)
            r_inner.append(i)
    tile = [t for t in tile if t[0] != vaxis] + [t for t in tile if t[0] == vaxis]  # the vector axis innermost
    tile_loops = [lp for _, lp in tile]
    order = {"MR": outer + mid + r_outer + r_inner + tile_loops,
             "RM": outer + r_outer + mid + r_inner + tile_loops,
             "RRM": outer + r_outer + r_inner + mid + tile_loops}[p["order"]]
    if len(order) > 1:
        sch.reorder(*order)
    # a register tile's outer loops are fused even when nothing hangs off them, as schedules.default does
    attached = p["par"] or p["acc"] != "none" or fuse_epi or p.get("pad") == "at" or p["auto_unroll"] or tile
    if not attached:  # nothing hangs off the outer loops (an untiled small window): leave them as they are
        fused, head = None, outer
    else:  # the outer loops of the last FUSE_LAST_APART[fuse_last] axes stay out of the fused (parallel) loop
        apart = min(FUSE_LAST_APART[p.get("fuse_last", 1)], len(outer) - 1)
        joined = outer[:len(outer) - apart]
        fused = sch.fuse(*joined) if len(joined) > 1 else joined[0]
        head = [fused, *outer[len(outer) - apart:]]
    if p["par"]:
        sch.parallel(fused)
    inner_attach = p["acc"] == "inner" and bool(mid)
    attach = mid[-1] if inner_attach else head[-1]
    depth = len(head) + (len(mid) if inner_attach else 0)  # loops the attached block shares with the main one
    if fuse_epi:
        out = sch.get_sblock(shape.epilogue[-1])
        sch.reverse_compute_at(out, attach)
        vectorize_innermost(sch, out, depth, unroll=p["unroll"] >= 1)
    elif p["acc"] != "none":
        cw = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(cw, attach)
        vectorize_innermost(sch, cw, depth)
    vector = tile[-1][1] if tile and tile[-1][0] == vaxis and p["vec"] else None
    if p["unroll"] >= 1:
        for _, lp in tile:
            if lp is not vector:
                sch.unroll(lp)
    if vector is not None:
        sch.vectorize(vector)
    if p["unroll"] >= 2:
        for lp in r_inner:
            sch.unroll(lp)
    if p["auto_unroll"]:
        sch.annotate(fused, "pragma_auto_unroll_max_step", int(p["auto_unroll"]))
        sch.annotate(fused, "pragma_unroll_explicit", 1)
    if p.get("pad") == "at":
        for n in shape.producers:
            prod = sch.get_sblock(n)
            sch.compute_at(prod, fused)
            ploops = sch.get_loops(prod)
            if len(ploops) > 1 and 1 < loop_extents(sch, [ploops[-1]])[0] <= 64:
                sch.vectorize(ploops[-1])
            done.add(n)
    if reduce and (tile or mid or p["acc"] != "none"):
        # after the loop annotations: the decomposed update block no longer counts as a reduction block
        # (an untiled reduction is left whole, its init in the loop nest, as schedules.default's light mode does)
        sch.decompose_reduction(block, (r_outer or r_inner)[0])
    return done, packings


def _pack(sch: Schedule, block, packed: tuple[int, int, int], lanes: int) -> list[int] | None:
    """Re-lay out the constant param so ``dim`` is blocked by ``lanes`` innermost (as schedule_packed does);
    the compiler packs the constant accordingly (:func:`schedules.packed.pack_constant`). None when ``dim`` is
    already the innermost dimension with ``lanes`` elements (blocked weights): nothing to re-lay out."""
    _, param, dim = packed
    name = sch.mod["main"].params[param].name
    source = next(r.source for r in sch.get(block).reads if r.source.name == name)
    rank = len(source.shape)
    if dim == rank - 1 and int(source.shape[dim]) == lanes:
        return None

    def index_map(*idx):
        return [*idx[:dim], idx[dim] // lanes, *idx[dim + 1:], idx[dim] % lanes]

    sch.transform_layout(block, name, with_arity(index_map, rank))
    return [param, dim, lanes]


def flops_per_iteration(shape: KernelShape) -> float:
    return shape.flops / max(1, math.prod(shape.spatial))
