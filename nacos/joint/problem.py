"""The pymoo problem of the joint search (imported only where pymoo is used)."""

from __future__ import annotations

import numpy as np
from pymoo.core.problem import Problem


class JointProblem(Problem):
    """Objectives: error, latency (ms), peak memory (MB); ``G ≤ 0`` for the budgets. The search loop owns
    evaluation (caching, measuring, checkpoints) and leaves the values in ``answers``; pymoo reads them here."""

    def __init__(self, variables: dict, constraints: int) -> None:
        super().__init__(vars=variables, n_obj=3, n_ieq_constr=constraints)
        self.answers: dict[int, tuple[list[float], list[float]]] = {}

    def _evaluate(self, X, out, *args, **kwargs):
        out["F"] = np.array([self.answers[i][0] for i in range(len(X))], dtype=float)
        if self.n_ieq_constr:
            out["G"] = np.array([self.answers[i][1] for i in range(len(X))], dtype=float)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["answers"] = {}  # transient: filled just before each evaluation
        return state
