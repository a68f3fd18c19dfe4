"""The search: a model-guided evolutionary strategy per workload and a task scheduler across workloads.

Each round the scheduler picks one task (workload), the strategy proposes a batch — evolve a population by
mutation and crossover from the best measured points, rank it with the cost model, take the top few plus a little
ε-greedy exploration, never a point the database already has — the batch is built and measured, every result is
committed to the database as it arrives, and the cost model is updated.

Tasks are picked by their estimated gain on the whole model's latency: weight (kernels sharing the workload) ×
(last round's improvement + best latency / (rounds + 1)), so kernels with a large share of the latency, or that
are still improving, get the trials; a task with no success yet counts as a typical one, and after
``FAILED_ROUNDS_LIMIT`` rounds in a row in which everything failed it is given up for the run (a reference that
cannot be built or run gives it up at once, and is not stored against the points). Trial budgets count
measurements already in the database, so a rerun of an interrupted tune continues where it stopped. Best
candidates are re-measured (``validate``): on a shared machine the best of many single measurements is mostly luck.

Workloads whose main stage has the same loops (one conv shape with different epilogues, or with and without a
residual add: ResNet-18's 3×3 convs are 14 workloads of 7 loop shapes) are one *family*: a task's proposals start
from its siblings' best points too, mapped into its own space, so a schedule found for one is tried on the others
without being rediscovered trial by trial.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from schedules.cost_model import CostModel, create
from schedules.database import Database
from schedules.measure import (BuildResult, Builder, LocalBuilder, MeasureInput, MeasureResult, Runner, discard,
                               measure, run_builds)
from schedules.progress import TuneProgress
from schedules.space import DEFAULT_SCHEDULE, Point, ScheduleSpace, default_matches, space_for
from schedules.workload import Workload

WARM_START_LIMIT = 20000  # database records the cost model starts from (refitting on more gets slow)
FAILED_ROUNDS_LIMIT = 3   # rounds in a row without one success after which a task is given up for this run


@dataclass
class Task:
    """The search state of one workload: what the database holds for it and how its rounds went."""

    workload: Workload
    weight: int = 1
    space: ScheduleSpace | None = None
    measured: dict = field(default_factory=dict)   # Point -> latency estimate (None: failed)
    history: list = field(default_factory=list)    # best latency after each round
    rounds: int = 0
    failed_rounds: int = 0                         # rounds in a row in which every measurement failed
    new: int = 0
    dead: bool = False                             # nothing left to propose, or the workload cannot be built
    # other tasks of the same family (see :func:`family`); not compared: they point back at this one
    siblings: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.space = self.space or space_for(self.workload)
        self._exact: bool | None = None

    @property
    def best(self) -> tuple[Point, float] | None:
        ok = [(lat, p) for p, lat in self.measured.items() if lat is not None]
        if not ok:
            return None
        lat, p = min(ok, key=lambda t: t[0])
        return p, lat

    @property
    def baselines(self) -> list[Point]:
        """What "the default schedule" is measured as: the space's default point, plus the reserved
        DEFAULT_SCHEDULE point when default.py does something the knobs do not reproduce."""
        if self._exact is None:
            self._exact = default_matches(self.workload)
        return [self.space.default()] if self._exact else [DEFAULT_SCHEDULE, self.space.default()]

    @property
    def default_latency(self) -> float | None:
        if DEFAULT_SCHEDULE in self.measured:
            return self.measured[DEFAULT_SCHEDULE]
        if self._exact is None and self.space.default() in self.measured:
            self._exact = default_matches(self.workload)
        return self.measured.get(self.space.default()) if self._exact else None

    def transfers(self) -> list[Point]:
        """The siblings' best points as points of this space (knobs it lacks dropped, the rest repaired)."""
        out = []
        for s in self.siblings:
            best = s.best
            if best and best[0] != DEFAULT_SCHEDULE:
                p = self.space.repair(best[0])
                if p not in out:
                    out.append(p)
        return out


def family(space: ScheduleSpace) -> tuple:
    """What makes one workload's schedule meaningful for another: the main stage's kind and loop extents, and
    which axes carry the vector lanes (packed constant, weight blocks, a blocked layout's lanes)."""
    s = space.shape
    return (s.kind, s.spatial, s.reduce, s.packed[0] if s.packed else None, s.block_axis, s.lanes_ready, s.rowwise)


@dataclass(frozen=True)
class TuneResult:
    """What a tune found for one workload (latencies in seconds; None when nothing ran successfully)."""

    workload: Workload
    weight: int
    best_point: Point | None
    best_latency: float | None
    default_latency: float | None
    trials: int        # measurements of this workload in the database
    new: int           # measured by this run
    failures: int


class EvolutionarySearch:
    """Propose a batch: evolve ``population`` points for ``generations``, rank by the model, ε-greedy."""

    def __init__(self, population: int = 128, generations: int = 3, elite: int = 16, eps: float = 0.15,
                 seed: int = 0) -> None:
        self.population, self.generations, self.elite, self.eps = population, generations, elite, eps
        self.rng = random.Random(seed)

    def propose(self, task: Task, model: CostModel, n: int) -> list[Point]:
        space, rng, seen = task.space, self.rng, set(task.measured)
        # the default schedule first: a tune never ends worse than the default
        out: list[Point] = [p for p in task.baselines if p not in seen][:n]
        # then what the family found: unmeasured sibling bests, and (below) mutations of all of them
        transfers = task.transfers()
        out += [p for p in transfers if p not in seen and p not in out][: n - len(out)]
        ok = sorted(((lat, p) for p, lat in task.measured.items() if lat is not None), key=lambda t: t[0])
        parents = [p for _, p in ok[: self.elite]]
        # dicts, not sets: insertion order keeps a seeded search reproducible across processes
        seeds = parents + [p for p in transfers if p not in parents] or [space.default()]
        half = self.population // 2  # neighbours of the best so far, and fresh random points
        pop = dict.fromkeys(parents + [space.mutate(rng.choice(seeds), rng) for _ in range(half)]
                            + [space.sample(rng) for _ in range(self.population - half)])
        for _ in range(self.generations):
            ranked = self._rank(task, model, list(pop))
            top = ranked[: max(2, len(ranked) // 4)] + parents
            children = []
            for _ in range(self.population):
                if rng.random() < 0.3:
                    children.append(space.crossover(rng.choice(top), rng.choice(top), rng))
                else:
                    children.append(space.mutate(rng.choice(top), rng))
            pop = dict.fromkeys(top + children)
        n_explore = round(self.eps * n) if n >= 4 else 0
        for p in self._rank(task, model, list(pop)):
            if len(out) >= n - n_explore:
                break
            if p not in seen and p not in out:
                out.append(p)
        for _ in range(20 * n):  # exploration, and fill-up when the model's population ran dry
            if len(out) >= n:
                break
            p = space.sample(rng)
            if p not in seen and p not in out:
                out.append(p)
        return out

    @staticmethod
    def _rank(task: Task, model: CostModel, points: list[Point]) -> list[Point]:
        scores = np.asarray(model.predict([MeasureInput(task.workload, p) for p in points]))
        return [points[i] for i in np.argsort(-scores, kind="stable")]


class TaskScheduler:
    """Spends a trial budget over tasks by estimated gain (see the module docstring)."""

    def __init__(self, tasks: Sequence[Task], db: Database, builder: Builder, runner: Runner,
                 cost_model: CostModel, strategy: EvolutionarySearch, batch_size: int = 8,
                 progress: TuneProgress | None = None, validate: bool = True, screen: int = 1) -> None:
        self.tasks, self.db, self.builder, self.runner = list(tasks), db, builder, runner
        self.validate = validate
        if screen < 1:
            raise ValueError(f"screen={screen}: build at least the candidates measured (1: no screening)")
        # a model that reads machine code (``xgb-compiled``) picks which of ``screen`` × the batch to measure
        self.screen = screen if getattr(cost_model, "reads_code", False) else 1
        self.model, self.strategy, self.batch_size = cost_model, strategy, batch_size
        self.progress = progress or TuneProgress(enabled=False)
        families: dict[tuple, list[Task]] = {}
        for t in self.tasks:
            families.setdefault(family(t.space), []).append(t)
        for t in self.tasks:
            t.siblings = [s for s in families[family(t.space)] if s is not t]
        for t in self.tasks:
            db.add_workload(t.workload)
            t.measured = {r.point: (r.latency if r.ok else None) for r in db.records(t.workload)}
            if t.best:
                t.history.append(t.best[1])
        self._warm_start()

    def _warm_start(self) -> None:
        """Train the model on everything the database holds for this target (other models' workloads too)."""
        targets = {t.workload.target for t in self.tasks}
        inputs, results = [], []
        for target in targets:
            for w in reversed(self.db.workloads(target)):  # newest first, up to WARM_START_LIMIT records
                for r in self.db.records(w):
                    inputs.append(MeasureInput(w, r.point))
                    results.append(r)
                if len(inputs) >= WARM_START_LIMIT:
                    break
        if inputs:
            self.model.update(inputs, results)

    def _pick(self) -> Task | None:
        live = [t for t in self.tasks if not t.dead]
        if not live:
            return None
        fresh = [t for t in live if not t.measured]
        if fresh:  # every task gets a first round (the default point), largest first
            return max(fresh, key=lambda t: t.weight * t.workload.flops)

        bests = [t.best[1] for t in live if t.best]
        typical = statistics.median(bests) if bests else 1.0

        def gain(t: Task) -> float:
            if t.best is None:  # nothing ran yet: a typical task's latency, shrinking with every round
                return t.weight * typical / (1 + t.rounds)
            best = t.best[1]
            recent = t.history[-2] - t.history[-1] if len(t.history) >= 2 else best
            return t.weight * (0.5 * max(recent, 0.0) + 0.5 * best / (1 + t.rounds))
        return max(live, key=gain)

    def _record(self, task: Task, r: MeasureResult) -> None:
        # a reference error is the workload's (its unscheduled kernel could not be built or run), not this
        # point's: it stays out of the database, so a rerun tries the point, and the reference, again
        if r.error_kind != "reference" and self.db.add(r):
            task.new += 1
        task.measured[r.point] = r.latency if r.ok else None
        self.progress.update(task)

    def run(self, trials: int) -> list[TuneResult]:
        """Measure until the tasks hold ``trials`` measurements in all (database included) or nothing is left."""
        self.progress.start(self.tasks, trials)
        try:
            while sum(len(t.measured) for t in self.tasks) < trials:
                task = self._pick()
                if task is None:
                    break
                left = trials - sum(len(t.measured) for t in self.tasks)
                n = min(self.batch_size, left)
                fresh = sum(1 for t in self.tasks if not t.measured and not t.dead)
                if not task.measured and fresh > 1:  # a small budget still measures every task's default first
                    n = max(1, min(n, left // fresh))
                points = self.strategy.propose(task, self.model, n * self.screen)
                if not points:
                    task.dead = True
                    continue
                before = task.best
                record = (lambda r, t=task: self._record(t, r))
                if len(points) > n:
                    builds = self._screen(task, self.builder.build([MeasureInput(task.workload, p) for p in points]), n)
                    inputs = [b.input for b in builds]
                    results = run_builds(self.runner, builds, record)
                else:
                    inputs = [MeasureInput(task.workload, p) for p in points]
                    results = measure(self.builder, self.runner, inputs, record)
                for r in results:  # a runner that does not call back still has its results recorded
                    if r.point not in task.measured:
                        self._record(task, r)
                task.rounds += 1
                task.failed_rounds = 0 if any(r.ok for r in results) else task.failed_rounds + 1
                if all(r.error_kind == "reference" for r in results) or task.failed_rounds >= FAILED_ROUNDS_LIMIT:
                    task.dead = True  # its reference cannot be built or run here, or nothing it tries works
                self.model.update(inputs, results)
                if self.validate and before and task.best and task.best[1] < before[1]:
                    self._validate(task, [task.best[0], before[0]])  # a new best: is it real, or noise?
                if task.best:
                    task.history.append(task.best[1])
            if self.validate:
                for t in self.tasks:
                    if t.new or not self._confirmed(t):  # a run killed before its confirmation is confirmed now
                        self._confirm(t)
        finally:
            self.progress.stop()
        return [self.result(t) for t in self.tasks]

    def _screen(self, task: Task, builds: list[BuildResult], n: int) -> list[BuildResult]:
        """The ``n`` builds to measure: the task's baselines (the default schedule), then the built candidates the
        model ranks fastest from their machine code; a failed build only when too few succeeded (the others are
        not recorded: no trial is spent on them). The artifacts not chosen are deleted."""
        keep = [b for b in builds if b.input.point in task.baselines]
        ok = [b for b in builds if b.error is None and b not in keep]
        scores = np.asarray(self.model.predict([replace(b.input, compiled=b.compiled) for b in ok]))
        ranked = [ok[i] for i in np.argsort(-scores, kind="stable")]
        chosen = (keep + ranked + [b for b in builds if b.error is not None and b not in keep])[:n]
        discard([b for b in builds if b not in chosen])
        return chosen

    def _confirmed(self, task: Task, finalists: int = 3) -> bool:
        """Whether the best ``finalists`` points were re-measured (or there are too few to compare)."""
        ranked = sorted(((lat, p) for p, lat in task.measured.items() if lat is not None), key=lambda x: x[0])
        return len(ranked) < 2 or {p for _, p in ranked[:finalists]} <= self.db.repeated(task.workload)

    def _confirm(self, task: Task, finalists: int = 3, passes: int = 2) -> None:
        """Re-measure the best few points and the default side by side, so that the point the compiler will use
        won on measurements taken together. A re-measured finalist usually comes out slower than its first,
        lucky measurement and may drop below another unconfirmed point: a second pass re-measures the new
        finalists together with the first pass's points."""
        batch: list[Point] = []
        for _ in range(passes):
            ranked = sorted(((lat, p) for p, lat in task.measured.items() if lat is not None), key=lambda x: x[0])
            top = [p for _, p in ranked[:finalists]]
            if batch and set(top) <= set(batch):
                break
            batch = list(dict.fromkeys(top + batch + task.baselines))
            self._validate(task, batch)

    def _validate(self, task: Task, points: Sequence[Point]) -> None:
        """Re-measure successful ``points`` back to back (not counted as trials): a single measurement on a busy
        machine is noisy, and the best of many noisy measurements is biased low. A re-measured point is ranked by its
        re-measurements alone (:meth:`Database.refine`)."""
        points = [p for p in dict.fromkeys(points) if task.measured.get(p) is not None]
        if len(points) < 2:
            return
        for r in measure(self.builder, self.runner, [MeasureInput(task.workload, p) for p in points]):
            estimate = self.db.refine(r)
            if estimate is not None:
                task.measured[r.point] = estimate
        self.progress.update(task)

    def result(self, t: Task) -> TuneResult:
        best = t.best
        return TuneResult(t.workload, t.weight, best[0] if best else None, best[1] if best else None,
                          t.default_latency, len(t.measured), t.new,
                          sum(1 for v in t.measured.values() if v is None))


def tune_tasks(workloads: Sequence[tuple[Workload, int]], trials: int, db: Database | str,
               runner: Runner | None = None, builder: Builder | None = None, cost_model: CostModel | str = "xgb",
               batch_size: int = 8, seed: int = 0, progress: bool = False, validate: bool = True,
               screen: int = 1) -> list[TuneResult]:
    """Tune ``(workload, weight)`` pairs with one shared budget of ``trials`` measurements (database included).

    ``screen`` > 1 with a model that reads machine code (``cost_model="xgb-compiled"``) builds ``screen`` times the
    candidates of each round and measures those the model ranks best from their code (builds cost time, not
    trials; :meth:`TaskScheduler._screen`).

    With ``validate``, a round's new best and, at the end, the top 3 and the default of every task tuned in this
    run (or whose top 3 were never re-measured: a run killed before its end) are re-measured side by side (not
    counted as trials; :meth:`TaskScheduler._confirm`) so that a lucky measurement does not win."""
    from schedules.runner import LocalRunner

    if trials < 0 or batch_size < 1:
        raise ValueError(f"trials={trials}, batch_size={batch_size}: trials cannot be negative and a batch "
                         "holds at least one measurement")
    own_db = not isinstance(db, Database)
    database = Database(db) if own_db else db
    own_builder, own_runner = builder is None, runner is None
    builder = builder or LocalBuilder()
    runner = runner or LocalRunner()
    try:
        database.claim_caches(runner.caches)
        tasks = [Task(w, weight) for w, weight in workloads]
        sched = TaskScheduler(tasks, database, builder, runner, create(cost_model, seed=seed),
                              EvolutionarySearch(seed=seed), batch_size, TuneProgress(enabled=progress), validate,
                              screen)
        if sum(len(t.measured) for t in tasks) < trials:
            for part in (builder, runner):
                if hasattr(part, "start"):
                    part.start()  # worker start-up (the TVM import) overlaps with the first proposal
        return sched.run(trials)
    finally:
        if own_builder:
            builder.close()
        if own_runner:
            runner.close()
        if own_db:
            database.close()


def tune_workload(workload: Workload, trials: int, db: Database | str, runner: Runner | None = None,
                  cost_model: CostModel | str = "xgb", builder: Builder | None = None, batch_size: int = 8,
                  seed: int = 0, progress: bool = False, validate: bool = True, screen: int = 1) -> TuneResult:
    """Tune one workload until the database holds ``trials`` measurements of it; the best found."""
    return tune_tasks([(workload, 1)], trials, db, runner, builder, cost_model, batch_size, seed, progress,
                      validate, screen)[0]


def remeasure(workload: Workload, points: Sequence[Point], rounds: int = 3, runner: Runner | None = None,
              builder: Builder | None = None, reference: Point | None = None,
              compiled: dict | None = None) -> dict[Point, list[float]]:
    """Latencies of ``points`` measured again, interleaved ``rounds`` times (nothing is stored): a side-by-side
    comparison on a noisy machine, e.g. of a tuned schedule against :data:`DEFAULT_SCHEDULE`.

    With a ``reference`` schedule, every measurement is bracketed by two of the reference and divided by their
    geometric mean, then scaled by the reference's median over the call: a load change that lasts seconds slows
    the point and its brackets alike and should cancel (three runs a measurement instead of one). A point whose
    brackets failed is left out of that round, as a failed measurement is. ``compiled``, a dict, receives each
    built point's machine-code counts (:mod:`schedules.compiled`)."""

    from schedules.runner import LocalRunner

    own_builder, own_runner = builder is None, runner is None
    builder = builder or LocalBuilder()
    runner = runner or LocalRunner()
    measured = ([] if reference is None else [reference]) + list(points)
    builds = builder.build([MeasureInput(workload, p) for p in measured])
    if compiled is not None:
        compiled.update({b.input.point: b.compiled for b in builds if b.compiled})
    try:
        out: dict[Point, list[float]] = {p: [] for p in points}
        if reference is None:
            for _ in range(rounds):
                for b, r in zip(builds, runner.run(builds)):
                    if r.ok:
                        out[b.input.point].append(r.latency)
            return out
        ref, candidates = builds[0], builds[1:]
        ratios: dict[Point, list[float]] = {p: [] for p in points}
        ref_lats = []
        for _ in range(rounds):
            for b in candidates:
                before, r, after = runner.run([ref, b, ref])
                if before.ok and after.ok:
                    ref_lats += [before.latency, after.latency]
                    if r.ok:
                        ratios[b.input.point].append(r.latency / (before.latency * after.latency) ** 0.5)
        scale = statistics.median(ref_lats) if ref_lats else 0.0
        return {p: [x * scale for x in v] for p, v in ratios.items()}
    finally:
        discard(builds)
        if own_builder:
            builder.close()
        if own_runner:
            runner.close()
