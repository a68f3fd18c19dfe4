"""The schedule space of a depthwise → 1×1 chain kernel (:data:`schedules.fusion.CHAINS`, :mod:`schedules.chain`).

A chain's loop structure is fixed by :func:`schedules.chain.schedule_chain` (rows in parallel, the depthwise row
into a row buffer, the 1×1 conv's register tiles reading it); what a search can change is the size of its
register tiles:

==========  ==================================================================================================
``pw_k``    output-channel blocks of the 1×1 conv's register tile (divisors of K/b)
``pw_w``    columns of that tile (1…8; one that does not divide the row leaves a ragged last tile)
``dw_w``    columns of the depthwise row's tile (2…16, likewise)
==========  ==================================================================================================

The 1×1 tile holds ``pw_k · pw_w`` vector accumulators; :meth:`ChainSpace.repair` keeps them within
:data:`schedules.tiled.ACC_REGISTERS`. The space has the search operators of
:class:`schedules.space.ScheduleSpace` (``sample``, ``mutate``, ``crossover``, ``repair``, ``apply``), so the
tuner and the joint search treat a chain like any other kernel.
"""

from __future__ import annotations

import dataclasses
import random

from schedules.tiled import ACC_REGISTERS
from schedules.kernel import KernelShape, kernel_shape
from schedules.space import DEFAULT_SCHEDULE, Knob, Point, _nearest, crossover_values, divisors, mutate_values

PW_COLUMNS = 8    # widest 1×1 column tile offered (8 × 1 vector: 8 accumulators)
DW_COLUMNS = 16   # widest depthwise column tile offered


def chain_extents(workload) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the 1×1 conv's output shape (N, K/b, H, W, b), the depthwise conv's (N, C/b, H, W, b)) of a chain."""
    from ir.registry import get_op

    nodes = workload.graph.node_map
    anchors = [n for n in workload.group.nodes if not get_op(n.op).elementwise]
    return tuple(nodes[anchors[1].name].shape), tuple(nodes[anchors[0].name].shape)


class ChainSpace:
    """The register-tile knobs of one chain workload and the search operators on its points."""

    kind = "chain"

    def __init__(self, workload) -> None:
        from schedules.chain import default_knobs

        self.pw_shape, self.dw_shape = chain_extents(workload)
        _, kb, _, width, _ = self.pw_shape
        # family() reads the shape: the depthwise conv's loops, marked as a chain so plain depthwise convs
        # (another schedule entirely) never pass their points here
        self.shape: KernelShape = dataclasses.replace(kernel_shape(workload), kind="chain")
        dw_width = self.dw_shape[3]
        fixed = default_knobs(self.pw_shape, dw_width)
        choices = {"pw_k": divisors(kb, ACC_REGISTERS), "pw_w": tuple(range(1, min(width, PW_COLUMNS) + 1)),
                   # not one column: TVM drops the unit loop that the depthwise block is reordered by
                   "dw_w": tuple(range(2, min(dw_width, DW_COLUMNS) + 1)) or (dw_width,)}
        self.knobs: dict[str, Knob] = {name: Knob(name, c, _nearest(fixed[name], c)) for name, c in choices.items()}

    def default(self) -> Point:
        return Point.of({k.name: k.default for k in self.knobs.values()})

    def knob_point(self, point: Point) -> Point:
        return self.default() if point == DEFAULT_SCHEDULE else point

    # ---- search operators ------------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Point:
        return self.repair(Point.of({k.name: rng.choice(k.choices) for k in self.knobs.values()}))

    def mutate(self, point: Point, rng: random.Random, n_knobs: int | None = None) -> Point:
        values = self.knob_point(point).as_dict()
        return self.repair(Point.of(mutate_values(values, self.knobs, rng, n_knobs or rng.choice((1, 1, 2)))))

    def crossover(self, a: Point, b: Point, rng: random.Random) -> Point:
        da, db = self.knob_point(a).as_dict(), self.knob_point(b).as_dict()
        return self.repair(Point.of(crossover_values(da, db, self.knobs, rng)))

    def repair(self, point: Point) -> Point:
        """The closest valid point: unknown knobs dropped (a point of another space keeps nothing), missing ones
        defaulted, values moved to the nearest choice, and the 1×1 tile narrowed until its accumulators fit."""
        if point == DEFAULT_SCHEDULE:
            return point
        values = {}
        for name, knob in self.knobs.items():
            v = point.get(name, knob.default)
            values[name] = v if v in knob.choices else _nearest(v, knob.choices) if isinstance(v, int) \
                else knob.default
        while values["pw_k"] * values["pw_w"] > ACC_REGISTERS:
            values["pw_w"] -= 1
        return Point.of(values)

    def is_valid(self, point: Point) -> bool:
        return point == DEFAULT_SCHEDULE or self.repair(point) == point

    def apply(self, func, point: Point, hint=None):
        """A ``tvm.s_tir.Schedule`` of the chain's PrimFunc for ``point`` (see :class:`ScheduleSpace.apply`)."""
        from schedules.chain import schedule_chain
        from schedules.default import default_schedule
        from schedules.tvm_env import tvm

        if point == DEFAULT_SCHEDULE:
            return default_schedule(func, hint)
        sch = tvm.s_tir.Schedule(func)
        schedule_chain(sch, dict(self.repair(point).items))
        return sch
