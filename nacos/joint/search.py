"""The ask/tell loop of ``nacos optimize``: pymoo's mixed-variable NSGA-II over architecture × schedule genes.

Each generation: ask pymoo for a population → evaluate it (errors from the fidelity, latencies predicted by the
kernel latency model, peak memory; cached by architecture hash + genes) → tell → measure up to
``measure_per_generation`` not-yet-measured members of the current front for real (train, tune and time their
kernels, compile and time the whole model) → refit the kernel latency model, the whole-model calibration and the
accuracy predictor from those measurements. The loop stops at the wall-clock budget.

Checkpoints: after every ask (the algorithm and the population it asked for) and after every tell, pickled to
``OUT/checkpoint.pkl`` by an atomic rename; evaluations, trainings and measurements are committed to SQLite as they
happen. A run killed anywhere resumes with ``resume=True``: the pending population is re-evaluated from the cache
(nothing is evaluated twice), and the run gets the wall time it had left.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nacos.joint.evaluate import Evaluation, Evaluator
from nacos.joint.genome import Genome, JointGenome
from nacos.spaces.base import Arch

CHECKPOINT = "checkpoint.pkl"


@dataclass
class LoopState:
    """What the loop keeps between generations (all of it recoverable from the checkpoint and the store)."""

    generation: int = 0
    algorithm: Any = None
    pending: Any = None            # the population asked for and not yet told


def _save(out: Path, state: LoopState) -> None:
    tmp = out / (CHECKPOINT + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"generation": state.generation, "algorithm": state.algorithm, "pending": state.pending}, f)
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(out: Path) -> LoopState | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        data = pickle.load(f)
    return LoopState(data["generation"], data["algorithm"], data["pending"])


def genome_of(row: dict, space_name: str) -> Genome:
    return Genome(Arch(space_name, tuple((k, v) for k, v in row["arch"].items())), tuple(row.get("slots", ())))


class SearchLoop:
    def __init__(self, genome: JointGenome, evaluator: Evaluator, measurer, store, out: Path, population: int,
                 measure_per_generation: int, seed: int, deadline: float, on_progress: Callable | None = None
                 ) -> None:
        self.genome, self.ev, self.measurer, self.store = genome, evaluator, measurer, store
        self.out, self.population, self.per_gen, self.seed = Path(out), population, measure_per_generation, seed
        self.deadline = deadline
        self.on_progress = on_progress or (lambda **kw: None)
        self.measured_genomes: list[tuple[Genome, float]] = []

    def time_left(self) -> float:
        return self.deadline - time.time()

    # ---- evaluation with the cache -------------------------------------------------------------------------
    def evaluate(self, genomes: list[Genome], generation: int) -> list[tuple[list[float], list[float]]]:
        answers: list = [None] * len(genomes)
        todo = []
        for i, g in enumerate(genomes):
            cached = self.store.evaluation(g.key)
            if cached is not None:
                answers[i] = (cached[0], cached[1].get("constraints", []))
            else:
                todo.append(i)
        if todo:
            evals: list[Evaluation] = self.ev.evaluate([genomes[i] for i in todo])
            for i, e in zip(todo, evals):
                g_values = self.ev.constraint_values(e)
                self.store.add_evaluation(e.genome.key, e.genome.arch.archid, generation, e.objectives(),
                                          {**e.info(), "constraints": g_values})
                answers[i] = (e.objectives(), g_values)
        return answers

    # ---- the loop --------------------------------------------------------------------------------------------
    def setup(self, state: LoopState | None) -> LoopState:
        if state is not None:
            return state
        from pymoo.algorithms.moo.nsga2 import RankAndCrowding
        from pymoo.core.mixed import MixedVariableGA

        from nacos.joint.problem import JointProblem

        problem = JointProblem(self.genome.variables(), self.ev.constraints)
        kw = {}
        original = getattr(self.genome.space, "original", None)
        if original is not None:
            # a model's rewrite space: the unmodified model (tuned schedules) is in the first population, so the
            # front shows what each rewrite buys against it
            from pymoo.core.mixed import MixedVariableSampling
            from pymoo.core.population import Population

            first = Genome(original(), (1,) * self.genome.slots)
            rest = MixedVariableSampling()(problem, self.population - 1, random_state=np.random.default_rng(self.seed))
            kw["sampling"] = Population.merge(Population.new(X=[self.genome.encode(first)]), rest)
        algorithm = MixedVariableGA(pop_size=self.population, survival=RankAndCrowding(), **kw)
        algorithm.setup(problem, seed=self.seed, termination=("n_gen", 10**9))
        return LoopState(0, algorithm)

    def run(self, state: LoopState | None = None) -> LoopState:
        from pymoo.core.evaluator import Evaluator as PymooEvaluator

        state = self.setup(state)
        self._reload_measured()
        while self.time_left() > 0:
            alg = state.algorithm
            if state.pending is None:
                state.pending = alg.ask()
                _save(self.out, state)
            pop = state.pending
            genomes = [self.genome.decode(x) for x in pop.get("X")]
            answers = self.evaluate(genomes, state.generation)
            alg.problem.answers = dict(enumerate(answers))
            # every asked individual is new (ask returns offspring only): the answers are indexed by position
            PymooEvaluator().eval(alg.problem, pop, skip_already_evaluated=False)
            alg.problem.answers = {}
            alg.tell(infills=pop)
            state.pending = None
            state.generation += 1
            _save(self.out, state)
            self._measure_front(alg)
            self.on_progress(generation=state.generation, evaluations=self.store.evaluations(),
                             measured=len(self.measured_genomes), front=len(alg.opt))
        if not self.measured_genomes and state.generation > 0:
            # a budget too short for any measurement still ends with measured networks (a few, past the deadline)
            self._measure_front(state.algorithm, force=True)
        return state

    def front_genomes(self, alg) -> list[Genome]:
        return [self.genome.decode(x) for x in alg.opt.get("X")]

    def _measure_front(self, alg, force: bool = False) -> None:
        fresh = [g for g in self.front_genomes(alg) if self.store.measured_row(g.key) is None]
        if not fresh:
            return
        # spread over the front: sorted by predicted latency, evenly spaced picks (the extremes first)
        preds = [self.store.evaluation(g.key)[1]["latency_s"] for g in fresh]
        order = [fresh[i] for i in np.argsort(preds)]
        picks = sorted(set(np.linspace(0, len(order) - 1, min(self.per_gen, len(order))).round().astype(int)))
        for i in picks:
            if self.time_left() <= 0 and not (force and not self.store.measured()):
                break
            g = order[i]
            predicted = self.ev.predicted_latency(g)[0]  # today's prediction, before this network is measured
            cid = f"c{len(self.store.measured()):04d}"
            row = self.measurer.measure(g, cid, predicted)
            self.store.add_measured(g.key, row)
            self.on_progress(measured_row=row)
        self._refit()

    def _reload_measured(self) -> None:
        """A resumed run starts from what earlier processes measured."""
        if any(r.get("latency_ms") for r in self.store.measured()):
            self._refit()

    def _refit(self) -> None:
        self.ev.latency_model.fit(self.ev.db, self.ev.target_key)
        self.measured_genomes = [(genome_of(r, self.genome.space.name), r["latency_ms"] / 1e3)
                                 for r in self.store.measured() if r.get("latency_ms")]
        self.ev.recalibrate(self.measured_genomes)
        self.ev.fidelity.refit()
