"""Loop-nest helpers shared by the default schedules (:mod:`schedules.default`, :mod:`schedules.tiled`,
:mod:`schedules.packed`, :mod:`schedules.rowwise`), the search space's :mod:`schedules.apply` and the chains'
:mod:`schedules.chain`: loops and extents of a block, trying a step on a copy, and the vector width of this CPU."""

from __future__ import annotations

import math

from schedules.tvm_env import tvm, vector_lanes

Schedule = tvm.s_tir.Schedule

VECTOR_LANES = vector_lanes("float32")  # 16 with AVX-512, 8 with AVX2
PARALLEL_MIN_WORK = 1 << 15  # below this many multiply-adds a parallel loop costs more (≈1.2 µs) than it saves


def lane_divisor(extent: int, choices=(VECTOR_LANES * 2, VECTOR_LANES)) -> int:
    """Vector width along an innermost extent: the first of ``choices`` (two vectors, one) that divides it, the
    whole extent when it fits in one vector, else its largest divisor from a vector down to 4, else 1."""
    for c in choices:
        if extent % c == 0:
            return c
    if extent <= VECTOR_LANES:
        return extent
    for c in range(VECTOR_LANES, 3, -1):
        if extent % c == 0:
            return c
    return 1


def iter_kinds(sch: Schedule, block) -> list[int]:
    """The block's iteration kinds in loop order: 0 spatial, else reduction."""
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def loops_by_kind(sch: Schedule, block) -> tuple[list, list]:
    """(spatial loops, reduction loops) of a block, each in nest order."""
    loops = sch.get_loops(block)
    kinds = iter_kinds(sch, block)
    return [lp for lp, k in zip(loops, kinds) if k == 0], [lp for lp, k in zip(loops, kinds) if k != 0]


def loop_extents(sch: Schedule, loops) -> list[int]:
    """Constant extents of ``loops``."""
    out = []
    for lp in loops:
        ext = sch.get(lp).extent
        out.append(int(ext) if hasattr(ext, "value") or isinstance(ext, int) else int(ext.value))
    return out


def try_on_copy(sch: Schedule, fn) -> Schedule:
    """Apply ``fn`` to a copy; keep the copy if TVM accepted every primitive."""
    trial = sch.copy()
    try:
        fn(trial)
    except Exception:  # noqa: BLE001 — any rejected primitive means: keep the schedule as it was
        return sch
    return trial


def loop_work(sch: Schedule, block) -> int:
    """Iterations of the block's whole loop nest."""
    total = 1
    for e in loop_extents(sch, sch.get_loops(block)):
        total *= e
    return total


def with_arity(fn, rank: int):
    """transform_layout wants a callable with one named parameter per dimension (an IndexMap object built with
    IndexMap.from_func fails its iterator analysis here), so wrap a variadic function."""
    wrappers = {1: lambda a: fn(a), 2: lambda a, b: fn(a, b), 3: lambda a, b, c: fn(a, b, c),
                4: lambda a, b, c, d: fn(a, b, c, d), 5: lambda a, b, c, d, e: fn(a, b, c, d, e),
                6: lambda a, b, c, d, e, f: fn(a, b, c, d, e, f)}
    return wrappers[rank]


EPILOGUE_UNROLL = 16  # most vector rows of a fused epilogue's tile unrolled (see vectorize_innermost)


def vectorize_innermost(sch: Schedule, block, below: int, unroll: bool = False) -> None:
    """Vectorize the block's innermost loop if it is nested deeper than ``below`` loops (the shared outer nest).
    With ``unroll``, also unroll the loops between (up to :data:`EPILOGUE_UNROLL` rows): a fused epilogue's
    activation is a long dependent chain per vector (SiLU's exp polynomial and division: ~25 operations), and
    only unrolled rows let the core overlap the chains (in ad-hoc side-by-side timings most of MobileViT-XXS's
    SiLU kernels ran a few per cent faster, up to 14 %; none was more than 3 % slower)."""
    loops = sch.get_loops(block)
    if len(loops) <= below:
        return
    ext = loop_extents(sch, [loops[-1]])[0]
    if 1 < ext <= 64:
        sch.vectorize(loops[-1])
    rows = loops[below:-1]
    if unroll and rows and math.prod(loop_extents(sch, rows)) <= EPILOGUE_UNROLL:
        for lp in rows:
            sch.unroll(lp)


def block_extents(sch: Schedule, block) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(spatial extents, reduction extents) of a block's loops."""
    ext = loop_extents(sch, sch.get_loops(block))
    kinds = iter_kinds(sch, block)
    return tuple(e for e, k in zip(ext, kinds) if k == 0), tuple(e for e, k in zip(ext, kinds) if k != 0)


def is_reduction(sch: Schedule, block) -> bool:
    """Whether the block has a reduction (or other non-spatial) iteration."""
    return any(k != 0 for k in iter_kinds(sch, block))
