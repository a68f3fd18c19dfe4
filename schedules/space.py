"""Schedule spaces derived from the math instruction (never from the op name).

:func:`schedules.kernel.kernel_shape` reads a workload's instructions (main stage, its spatial and reduction
extents, producers, epilogue); :class:`ScheduleSpace` turns that into knobs:

===============  =============================================================================================
``s{i}``         spatial axis i → ``(mid, inner)``: 3-level tiling outer·mid·inner (inner = register tile); a few
                 inner factors that do not divide the axis (:data:`RAGGED_INNER`, mid 1) give a ragged last tile
``r{j}``         reduction axis j → inner factor (2-level tiling; 1 = not split)
``order``        ``MR``: outer mid r_outer r_inner inner · ``RM``: outer r_outer mid r_inner inner ·
                 ``RRM``: outer r_outer r_inner mid inner (the register tile is always innermost)
``acc``          accumulator: ``none`` (accumulate in the output) / cache_write + reverse_compute_at at the
                 fused ``outer`` loop or at the ``inner``-most mid loop
``par``          parallelize the fused outer spatial loops
``fuse_last``    1: the last axis' outer loop joins that fused loop · 0: it stays a loop of its own inside it ·
                 2: the last two axes' outer loops do (a blocked layout's column tiles and its lane axis)
``vec``          vectorize the innermost register-tile loop (innermost spatial axis)
``unroll``       0 none · 1 unroll the other register-tile loops (and a fused epilogue's rows) · 2 also the inner
                 reduction loops
``auto_unroll``  ``pragma_auto_unroll_max_step`` on the outer loop (0 = off)
``epi``          epilogue (bias, activation, …) ``fuse``-d into the tile (reverse_compute_at) or at ``root``
``pad``          producers (padding) at ``root``, computed ``at`` the outer loop, or ``inline``-d
``layout``       ``plain``, or ``packed``: a constant input read through one spatial axis only (conv/dense weights)
                 is re-laid out at compile time with that axis blocked innermost (KCRS → K/t·C·R·S·t, t = its
                 register tile), and the register tile is vectorized along it (present only when possible);
                 weights already blocked along that axis (NCHW[b]c convs) are used as they are
``rows``         per-row kernels over the last axis (softmax, layer norm) only: ``rowwise`` (one parallel loop
                 over rows, reductions split into vector lanes; every other knob then stays at its default) or
                 ``tiled`` (the knobs above, on the main reduction)
===============  =============================================================================================

Groups without a reduction get ``fuse`` (split only the innermost loop, or all loops fused), ``lanes``,
``unroll``, ``par`` and ``inline`` knobs. The blocked *activation* layout (NCHW[b]c, which changes what
neighbouring kernels exchange) is chosen for the whole graph before kernels are cut
(:func:`schedules.fusion.kernel_graph`, :func:`ir.passes.select_layout`); its convolutions are ordinary workloads
here, with the lane axis already contiguous.

A point is plain hashable data (:class:`Point`); :meth:`ScheduleSpace.repair` maps any point to a valid one
(factors that divide or are ragged as allowed, register tiles and unrolled bodies of bounded size, attach
points that exist), so search operators can mutate and cross over freely. The default point issues :mod:`schedules.default`'s primitives; as
default.py evolves, the reserved :data:`DEFAULT_SCHEDULE` point (which *is* ``default_schedule``) keeps tuning
from ever ending worse than the default.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from schedules import default as _default
from schedules.loops import PARALLEL_MIN_WORK, VECTOR_LANES, lane_divisor
from schedules.packed import packed_row, packed_tile
from schedules.tiled import columns_apart, reduction_steps, row_factor, tile_width
from schedules.kernel import Access, KernelShape, kernel_shape  # noqa: F401  (re-exported)

MAX_TILE = 64             # largest inner or mid factor
MAX_ACC_ELEMS = 4096      # local accumulator tile (16 KB of fp32; bigger ones took LLVM up to a minute)
MAX_UNROLLED = 256        # explicitly unrolled statements (LLVM compile time grows with it)
REPAIR_PASSES = 4  # repair's fixes settle in two passes on every space tried; a cap, not a loop forever
RAGGED_INNER = (3, 4, 5)  # register-tile factors allowed where they do not divide the axis (mid 1, last tile
                          # under a predicate): 7- and 14-column rows, see schedules.packed.RAGGED_TILES
FUSE_LAST_APART = {1: 0, 0: 1, 2: 2}  # fuse_last → trailing outer loops kept out of the fused (parallel) one


# ---- points --------------------------------------------------------------------------------------------------
def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class Point:
    """One schedule: sorted ``(knob, value)`` pairs. Hashable; JSON text is its database key."""

    items: tuple[tuple[str, Any], ...]

    @staticmethod
    def of(values: dict) -> "Point":
        return Point(tuple(sorted((str(k), _freeze(v)) for k, v in values.items())))

    def __getitem__(self, name: str) -> Any:
        for k, v in self.items:
            if k == name:
                return v
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def as_dict(self) -> dict:
        return dict(self.items)

    def replace(self, **changes: Any) -> "Point":
        d = self.as_dict()
        d.update(changes)
        return Point.of(d)

    def to_json(self) -> str:
        return json.dumps(dict(self.items), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> "Point":
        return Point.of(json.loads(text))

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.items)


DEFAULT_SCHEDULE = Point.of({"default": 1})
"""Reserved point: exactly :func:`schedules.default.default_schedule`, whatever it does today. The tuner measures
it first (unless the space's own default point is the same schedule), so a tune never ends worse than the default
even while default.py evolves."""


# ---- knobs ---------------------------------------------------------------------------------------------------
def divisors(n: int, limit: int | None = None) -> tuple[int, ...]:
    return tuple(d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit))


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple
    default: Any


def _nearest(value: Any, choices: tuple) -> Any:
    """The valid choice closest to ``value`` (by log distance for numbers); the first choice otherwise."""
    if value in choices:
        return value

    def dist(c):
        a = value if isinstance(value, tuple) else (value,)
        b = c if isinstance(c, tuple) else (c,)
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in a + b)
        if len(a) != len(b) or not numbers:
            return math.inf
        return sum(abs(math.log1p(x) - math.log1p(y)) for x, y in zip(a, b))

    best = min(choices, key=dist)
    return best if dist(best) < math.inf else choices[0]


def crossover_values(a: dict, b: dict, knobs: dict[str, Knob], rng: random.Random) -> dict:
    """Uniform crossover: each knob's value from ``a`` or ``b`` with equal odds (the caller repairs the result)."""
    return {k: (a if rng.random() < 0.5 else b).get(k) for k in knobs}


def mutate_values(values: dict, knobs: dict[str, Knob], rng: random.Random, n_knobs: int) -> dict:
    """``values`` with ``n_knobs`` of the knobs that have a choice changed: mostly a step to a neighbouring value
    (for a ``(mid, inner)`` pair, of one of its two factors), else any choice."""
    values = dict(values)
    names = [k for k in knobs if len(knobs[k].choices) > 1]
    for name in rng.sample(names, min(len(names), n_knobs)):
        choices = knobs[name].choices
        cur = values.get(name)
        if cur in choices and rng.random() < 0.6:  # a step to a neighbouring value
            if isinstance(cur, tuple):  # (mid, inner): step one of the two factors, keep the other
                which = rng.randrange(2)
                line = sorted((c for c in choices if c[1 - which] == cur[1 - which]), key=lambda c: c[which])
            else:
                line = list(choices)
            i = line.index(cur) + rng.choice((-1, 1))
            values[name] = line[min(max(i, 0), len(line) - 1)]
        else:
            values[name] = rng.choice(choices)
    return values


class ScheduleSpace:
    """The knobs of one workload (see the module docstring) and the search operators on its points."""

    def __init__(self, shape: KernelShape, lanes: int = VECTOR_LANES) -> None:
        self.shape = shape
        self.lanes = lanes
        self.knobs: dict[str, Knob] = {k.name: k for k in self._make_knobs()}

    # ---- construction ---------------------------------------------------------------------------------------
    def _make_knobs(self) -> list[Knob]:
        sh = self.shape
        if sh.kind == "injective":
            total, last = math.prod(sh.spatial), sh.spatial[-1]
            half = VECTOR_LANES // 2
            lanes = VECTOR_LANES if last % VECTOR_LANES == 0 else \
                half if half > 1 and last % half == 0 and last > 2 * VECTOR_LANES else \
                last if 1 < last <= 2 * VECTOR_LANES and len(sh.spatial) > 1 else 1
            knobs = [Knob("fuse", ("outer", "all"), "outer"),  # as schedules.default.schedule_injective
                     Knob("lanes", divisors(total, MAX_TILE), lanes),
                     Knob("unroll", tuple(d for d in (1, 2, 4, 8) if total % d == 0), 1),
                     Knob("par", (0, 1), int(total >= PARALLEL_MIN_WORK))]
            if len(sh.blocks) > 1:
                knobs.append(Knob("inline", (0, 1), 0))
            return knobs
        ext, n = sh.spatial, len(sh.spatial)
        default_tile = [1] * n
        if sh.prefer_packed:  # as schedules.packed.schedule_packed: lanes on the packed axis, a row tile
            for a, f in packed_tile(ext, sh.packed[0], sh.reuse_axes, sh.block_axis, len(sh.reduce)).items():
                default_tile[a] = f
        else:  # as schedules.tiled.schedule_reduction: lanes on the last axis, a reuse-axis tile
            default_tile[-1] = lane_divisor(ext[-1]) if ext[-1] >= 4 else 1
            cands = [a for a in sh.reuse_axes if a < n - 1 and ext[a] > 1]
            if cands and sh.lanes_ready:  # row_tile: the innermost reuse axis, as wide as the registers allow
                default_tile[max(cands)] = tile_width(ext[max(cands)], default_tile[-1])
            elif cands:
                a = max(cands, key=lambda a: ext[a])
                default_tile[a] = row_factor(ext[a], default_tile[-1])
        # small windows (depthwise, pooling): schedules.default leaves the tile to LLVM ("light"), except on a
        # blocked layout's lane axis, where it tiles them and reads through the padding, and on stride-1 rows of
        # whole vectors, which get a few rows × one vector (default.schedule_window: the whole window inside the
        # tile's loops, the column loop out of the fused parallel one)
        small = math.prod(sh.reduce) <= _default.SMALL_REDUCTION
        light = not sh.prefer_packed and small and not sh.lanes_ready and not sh.window
        through_pad = small and sh.lanes_ready
        if light:
            default_tile = [1] * n
        if sh.window:
            default_tile = [1] * (n - 2) + [sh.window, VECTOR_LANES]
        # as schedules.tiled.finish_tiled: no epilogue and the lanes along the output's last axis → accumulate
        # in the output
        in_output = not sh.epilogue and (not sh.prefer_packed or sh.packed[0] == n - 1)
        knobs = []
        for i, e in enumerate(ext):
            pairs = tuple((m, t) for t in divisors(e, MAX_TILE) for m in divisors(e // t, MAX_TILE))
            ragged = tuple((1, t) for t in RAGGED_INNER if t < e and e % t)
            knobs.append(Knob(f"s{i}", pairs + ragged, (1, default_tile[i])))
        # as schedules.tiled.finish_tiled: accumulating in the output, the innermost reduction is unrolled in steps
        steps = reduction_steps(sh.reduce[-1]) if in_output and not light and sh.reduce else 1
        for j, e in enumerate(sh.reduce):
            inner = e if sh.window else steps if j == len(sh.reduce) - 1 else 1
            knobs.append(Knob(f"r{j}", divisors(e), inner))
        work = math.prod(ext) * math.prod(sh.reduce)
        windowed = light or bool(sh.window)
        # as schedules.tiled.columns_apart: a tile along output rows keeps its column-tile loop (0), and a blocked
        # layout's lane loop after it (2), out of the fused one
        if sh.prefer_packed:
            row = packed_row(dict(enumerate(default_tile)), sh.packed[0], sh.block_axis)
        else:
            row = max(cands) if sh.lanes_ready and cands else None
        apart = columns_apart([-(-e // t) for e, t in zip(ext, default_tile)], row)
        fuse_last = next(k for k, a in FUSE_LAST_APART.items() if a == apart) if apart else \
            0 if windowed and n > 1 else 1
        knobs += [Knob("fuse_last", (1, 0, 2) if n > 2 else (1, 0), fuse_last),
                  Knob("order", ("MR", "RM", "RRM"), "MR"),
                  Knob("acc", ("outer", "inner", "none"), "none" if windowed or in_output else "outer"),
                  Knob("par", (0, 1), int(work >= PARALLEL_MIN_WORK)), Knob("vec", (0, 1), 0 if light else 1),
                  Knob("unroll", (0, 1, 2), 0 if light else 2 if steps > 1 else 1),
                  Knob("auto_unroll", (0, 16, 64), 0)]
        if sh.epilogue:
            knobs.append(Knob("epi", ("fuse", "root"), "root" if windowed else "fuse"))
        if sh.producers:
            knobs.append(Knob("pad", ("root", "at", "inline"), "inline" if through_pad else "root"))
        if sh.packed is not None:
            knobs.append(Knob("layout", ("plain", "packed"), "packed" if sh.prefer_packed and not light else "plain"))
        if sh.rowwise:  # softmax, layer norm: one parallel loop over rows (the other knobs then do not apply)
            knobs.append(Knob("rows", ("rowwise", "tiled"), "rowwise"))
        return knobs

    @property
    def kind(self) -> str:
        return self.shape.kind

    def vector_axis(self, point: Point) -> int:
        """The spatial axis whose register tile is innermost (and vectorized): the packed axis or the last one."""
        if point.get("layout") == "packed" and self.shape.packed is not None:
            return self.shape.packed[0]
        return len(self.shape.spatial) - 1

    def default(self) -> Point:
        return Point.of({k.name: k.default for k in self.knobs.values()})

    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs.values())

    # ---- search operators (each returns a new, repaired point) ------------------------------------------------
    def sample(self, rng: random.Random) -> Point:
        """A random point. Factor knobs lean towards whole vector registers and register tiles that fit the
        register file (uniform sampling mostly finds tiles 10–50× slower than the default)."""
        values = {}
        layout = rng.choice(self.knobs["layout"].choices) if "layout" in self.knobs else "plain"
        last = f"s{self.vector_axis(Point.of({'layout': layout}))}"
        for k in self.knobs.values():
            choices = k.choices
            if self.kind == "reduction" and k.name.startswith("s") and rng.random() < 0.7:
                small = [c for c in choices if c[1] <= 16 and c[0] * c[1] <= 64]
                if k.name == last:
                    small = [c for c in small if c[1] % self.lanes == 0 and c[1] <= 4 * self.lanes] or small
                choices = small or choices
            elif k.name in ("par", "vec") and rng.random() < 0.7:
                choices = (k.default,)
            values[k.name] = rng.choice(choices)
        if "layout" in self.knobs:
            values["layout"] = layout
        return self.repair(Point.of(values))

    def mutate(self, point: Point, rng: random.Random, n_knobs: int | None = None) -> Point:
        values = self.knob_point(point).as_dict()
        if not any(len(k.choices) > 1 for k in self.knobs.values()):
            return point
        return self.repair(Point.of(mutate_values(values, self.knobs, rng, n_knobs or rng.choice((1, 1, 2, 3)))))

    def crossover(self, a: Point, b: Point, rng: random.Random) -> Point:
        da, db = self.knob_point(a).as_dict(), self.knob_point(b).as_dict()
        return self.repair(Point.of(crossover_values(da, db, self.knobs, rng)))

    # ---- validity ---------------------------------------------------------------------------------------------
    def repair(self, point: Point) -> Point:
        """The closest valid point: unknown knobs dropped, missing ones defaulted, bad combinations fixed.

        One fix can undo another (whole vector tiles can leave a packed layout with one lane), so the fixes run
        until nothing changes: a repaired point is valid, and is the point that is built and stored."""
        for _ in range(REPAIR_PASSES):
            fixed = self._repair_once(point)
            if fixed == point:
                break
            point = fixed
        return point

    def _repair_once(self, point: Point) -> Point:
        if point == DEFAULT_SCHEDULE:
            return point
        v = {}
        given = point.as_dict()
        for k in self.knobs.values():
            v[k.name] = _nearest(given[k.name], k.choices) if k.name in given else k.default
        if self.kind == "injective":
            # "outer" splits only the innermost loop: its factors must divide that loop's extent
            extent = self.shape.spatial[-1] if v["fuse"] == "outer" else math.prod(self.shape.spatial)
            if extent % v["lanes"]:
                v["lanes"] = max(d for d in divisors(extent, MAX_TILE) if d <= v["lanes"])
            while v["unroll"] > 1 and (extent % (v["lanes"] * v["unroll"]) or v["lanes"] * v["unroll"] > 512):
                v["unroll"] //= 2
            return Point.of(v)
        if v.get("rows") == "rowwise":  # one schedule: every other knob at its default, so it is measured once
            return Point.of({k.name: k.default for k in self.knobs.values()})
        n = len(self.shape.spatial)
        vaxis = self.vector_axis(Point.of(v))
        if v.get("layout") == "packed" and v[f"s{vaxis}"][1] == 1:  # packing with 1 lane would do nothing
            v[f"s{vaxis}"] = _nearest((v[f"s{vaxis}"][0], self.lanes), self.knobs[f"s{vaxis}"].choices)
            if v[f"s{vaxis}"][1] == 1:
                v["layout"] = "plain"
                vaxis = self.vector_axis(Point.of(v))
        vext = self.shape.spatial[vaxis]
        if vext % v[f"s{vaxis}"][1]:  # vector lanes under a predicate would not vectorize: whole tiles only
            v[f"s{vaxis}"] = _nearest(v[f"s{vaxis}"], tuple(c for c in self.knobs[f"s{vaxis}"].choices
                                                             if vext % c[1] == 0))
        mids = [v[f"s{i}"][0] for i in range(n)]
        if v["acc"] == "inner" and (v["order"] != "MR" or max(mids) == 1):
            v["acc"] = "outer"  # "inner" attaches at the innermost mid loop, above every reduction loop
        if v.get("epi") == "fuse" and v["acc"] == "none":
            v["acc"] = "outer"  # a fused epilogue reads the accumulator
        # bounded local accumulator: shrink the largest factor inside the attach point until it fits
        while True:
            tile = [v[f"s{i}"][1] * (v[f"s{i}"][0] if v["acc"] == "outer" else 1) for i in range(n)]
            if v["acc"] == "none" or math.prod(tile) <= MAX_ACC_ELEMS:
                break
            i = max(range(n), key=lambda a: tile[a])
            m, t = old = v[f"s{i}"]
            new = (m // 2, t) if m > 1 and v["acc"] == "outer" else (m, max(1, t // 2))
            new = _nearest(new, self.knobs[f"s{i}"].choices)
            v[f"s{i}"] = new if new != old else (1, 1)
        # bounded unrolled body: drop to a lower unroll mode
        inners = [v[f"s{i}"][1] for i in range(n)]
        body = math.prod(inners) // (inners[vaxis] if v["vec"] else 1)
        if v["vec"]:
            body *= -(-inners[vaxis] // self.lanes)  # vector instructions per row of the tile
        rin = math.prod(v[f"r{j}"] for j in range(len(self.shape.reduce)))
        if v["unroll"] == 2 and body * rin > MAX_UNROLLED:
            v["unroll"] = 1
        if v["unroll"] == 1 and body > MAX_UNROLLED:
            v["unroll"] = 0
        return Point.of(v)

    def is_valid(self, point: Point) -> bool:
        return self.repair(point) == point

    # ---- applying a point -------------------------------------------------------------------------------------
    def apply(self, func, point: Point, hint=None):
        """A ``tvm.s_tir.Schedule`` of ``func`` (the group's unscheduled PrimFunc) for ``point``; ``hint`` (from
        the lowering) is only used by :data:`DEFAULT_SCHEDULE`.

        Raises :class:`schedules.apply.ScheduleError` if TVM rejects a primitive (the measurement records it).
        """
        if point == DEFAULT_SCHEDULE:
            return _default.default_schedule(func, hint)
        from schedules.apply import apply_point

        return apply_point(func, self.shape, self.repair(point))

    def knob_point(self, point: Point) -> Point:
        """``point`` in knob form (:data:`DEFAULT_SCHEDULE` becomes the default point), for features."""
        return self.default() if point == DEFAULT_SCHEDULE else point


def space_for(workload) -> ScheduleSpace:
    """The schedule space of a workload (cached: building it reads sympy instructions); a depthwise → 1×1 chain
    gets :class:`schedules.chain_space.ChainSpace`, which has the same search operators."""
    return _space(workload)


@lru_cache(maxsize=1024)
def _space(workload) -> ScheduleSpace:
    from schedules.fusion import is_chain

    if is_chain(workload.group):  # two anchors: a depthwise → 1×1 chain has a space of its own
        from schedules.chain_space import ChainSpace

        return ChainSpace(workload)
    return ScheduleSpace(kernel_shape(workload))


@lru_cache(maxsize=1024)
def default_matches(workload) -> bool:
    """Whether the space's default point issues exactly the primitives of today's default schedule."""
    import tvm_ffi

    func, hint = workload.lower()
    space = space_for(workload)
    try:
        mine = space.apply(func, space.default()).mod
    except Exception:  # noqa: BLE001 — a point TVM rejects is simply not the default
        return False
    return bool(tvm_ffi.structural_equal(mine, _default.default_schedule(func, hint).mod))
