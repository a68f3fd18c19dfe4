"""The joint genome: a search space's architecture variables followed by schedule genes for its kernels.

A network's kernels differ from one architecture to the next, so schedule genes cannot name kernels directly.
They name *slots*: the architecture's kernels ranked by work (FLOPs × how many kernels share the workload), slot 0
being the costliest. Gene ``k{i}`` picks the schedule of the kernel in slot ``i`` from that kernel's menu:

* ``0`` — the default schedule (:data:`schedules.space.DEFAULT_SCHEDULE`, what an untuned compiler would use);
* ``1`` — the tuned schedule: the best one the database has measured for this workload (the default until the
  search has tuned it). The search tunes the kernels of the networks on its front, so "tuned" improves as the
  search goes on;
* ``2 … C−1`` — fixed schedule points of the kernel's own space (:class:`schedules.space.ScheduleSpace`): the
  space's default point and neighbours of it (one or two knobs changed), drawn once per workload from a seed
  derived from the workload key, so a gene value means the same schedule in every generation and after
  ``--resume``.

Kernels beyond the last slot use the tuned schedule. Slots are ranked by FLOPs because that ranking is known
without measuring and is stable under small architecture changes (slot 0 of a network and of its mutant is
usually the same layer), which is what lets crossover and mutation carry good schedule choices along.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from nacos.spaces.base import Arch, SearchSpace
from schedules.space import DEFAULT_SCHEDULE, Point, space_for
from schedules.workload import Workload

DEFAULT, TUNED = 0, 1


@dataclass(frozen=True)
class Genome:
    """What one individual decides: an architecture and one menu index per schedule slot."""

    arch: Arch
    slots: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """Cache key of the individual (architecture hash + schedule genes)."""
        return self.arch.archid + ("/" + ".".join(map(str, self.slots)) if self.slots else "")


@lru_cache(maxsize=4096)
def menu(workload: Workload, size: int) -> tuple[Point, ...]:
    """The ``size − 2`` fixed schedule points of a workload (menu entries 2…), same on every call and machine."""
    n = max(size - 2, 0)
    if n == 0:
        return ()
    space = space_for(workload)
    rng = random.Random(int(hashlib.sha256(workload.key.encode()).hexdigest()[:12], 16))
    base = space.default()
    points: dict[Point, None] = {base: None}
    for _ in range(20 * n):
        if len(points) >= n:
            break
        # neighbours of the default point only (one or two knobs changed): fresh samples of the space were often
        # several times slower, and a menu of mostly-bad points made the first generations' code slower than
        # the default schedules
        p = space.mutate(base, rng, n_knobs=rng.choice((1, 1, 2)))
        if p != DEFAULT_SCHEDULE:
            points[p] = None
    return tuple(points)[:n]


def slot_order(workloads: Sequence[tuple[Workload, int]]) -> list[tuple[Workload, int]]:
    """``(workload, count)`` pairs ranked costliest first (ties broken by key, so the order is reproducible)."""
    return sorted(workloads, key=lambda wc: (-wc[0].flops * wc[1], wc[0].key))


class JointGenome:
    """Encodes/decodes individuals for pymoo: ``variables()`` gives pymoo's mixed variables."""

    def __init__(self, space: SearchSpace, slots: int = 6, menu_size: int = 6, rest: int = TUNED) -> None:
        """``rest`` is the menu entry of the kernels beyond the slots: ``TUNED`` in the joint search, ``DEFAULT``
        for a NAS that judges networks by their untuned code (the two-stage baseline, with ``slots=0``)."""
        if slots < 0 or (slots and menu_size < 2) or rest not in (DEFAULT, TUNED):
            raise ValueError("slots must be ≥ 0, menu_size ≥ 2 (default and tuned), rest DEFAULT or TUNED")
        self.space, self.slots, self.menu_size, self.rest = space, int(slots), int(menu_size), rest

    def variables(self) -> dict[str, Any]:
        """pymoo variables: ``Choice`` for categorical architecture variables, ``Integer`` over the choice index
        for ordinal ones, and ``Integer`` in ``[0, menu_size)`` for each schedule slot."""
        from pymoo.core.variable import Choice, Integer

        out: dict[str, Any] = {}
        for v in self.space.variables():
            out[f"a:{v.name}"] = (Choice(options=list(v.choices)) if v.categorical
                                  else Integer(bounds=(0, len(v.choices) - 1)))
        for i in range(self.slots):
            out[f"k{i}"] = Integer(bounds=(0, self.menu_size - 1))
        return out

    def decode(self, x: dict) -> Genome:
        values = {}
        for v in self.space.variables():
            raw = x[f"a:{v.name}"]
            values[v.name] = raw if v.categorical else v.choices[int(raw)]
        arch = self.space.canonical(values)
        return Genome(arch, tuple(int(x[f"k{i}"]) for i in range(self.slots)))

    def encode(self, genome: Genome) -> dict:
        x: dict[str, Any] = {}
        for v in self.space.variables():
            value = genome.arch[v.name]
            x[f"a:{v.name}"] = value if v.categorical else v.choices.index(value)
        for i in range(self.slots):
            x[f"k{i}"] = genome.slots[i] if i < len(genome.slots) else TUNED
        return x

    def schedule_of(self, genome: Genome, workloads: Sequence[tuple[Workload, int]],
                    tuned: dict[str, Point]) -> dict[str, Point]:
        """Workload key → the schedule this individual gives it (``tuned`` maps keys to the database's best)."""
        out: dict[str, Point] = {}
        for i, (w, _) in enumerate(slot_order(workloads)):
            gene = genome.slots[i] if i < len(genome.slots) else self.rest
            if gene == DEFAULT:
                out[w.key] = DEFAULT_SCHEDULE
            elif gene == TUNED or gene - 2 >= len(menu(w, self.menu_size)):
                out[w.key] = tuned.get(w.key, DEFAULT_SCHEDULE)
            else:
                out[w.key] = menu(w, self.menu_size)[gene - 2]
        return out
