"""The result of ``nacos optimize``: the final front of *measured* candidates, and the payload of pareto.json.

The final front is taken among the candidates measured for real (trained accuracy, whole-model latency timed on
the target), never among predictions: objectives validation error, measured latency and peak memory. Test accuracy
is reported, not selected on. When a latency or memory budget is given, only candidates within it can be on the
front; if none is, the front is empty and ``budget_violations`` says so, with the closest candidates.

Two latencies per member: ``latency_ms``, the one timing taken when the search measured it (the front and the
budget constraints of the search were computed with it), and ``latency_final_ms``, the median of the interleaved
rounds in which all front members and their default-schedule builds were timed together at the end of the run
(``latency_default_ms`` and ``speedup_vs_default`` come from the same rounds). What is chosen after the run
(:meth:`Result.best`, the report's best member) uses :func:`final_latency`: the final timing where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MEMBER_FIELDS = ("id", "archid", "arch", "accuracy", "val_accuracy", "latency_final_ms", "latency_default_ms",
                 "speedup_vs_default", "final_rounds", "latency_ms", "latency_predicted_ms", "params", "memory_bytes",
                 "flops", "tuned_kernels", "kernels", "schedules", "artifact", "onnx", "slots")


@dataclass(frozen=True)
class Member:
    """One front member (fields as in pareto.json); ``load()`` gives its compiled artifact."""

    data: dict = field(repr=False)
    out: Path | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "out"):
            raise AttributeError(name)
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return (f"Member({self.data['id']}, accuracy={self.data.get('accuracy')}, "
                f"latency_final_ms={self.data.get('latency_final_ms')}, latency_ms={self.data.get('latency_ms')}, "
                f"params={self.data.get('params')})")

    def load(self):
        import nacos

        if not self.data.get("artifact") or self.out is None:
            raise FileNotFoundError(f"member {self.data['id']} has no artifact")
        return nacos.Compiled.load(self.out / self.data["artifact"])


@dataclass(frozen=True)
class Result:
    payload: dict
    out: Path

    @property
    def pareto(self) -> list[Member]:
        return [Member(m, self.out) for m in self.payload["pareto"]]

    @property
    def measured(self) -> list[Member]:
        return [Member(m, self.out) for m in self.payload["measured"]]

    @property
    def baseline(self) -> dict | None:
        return self.payload.get("baseline")

    def best(self, latency_max_ms: float | None = None, memory_max_mb: float | None = None) -> Member | None:
        """The front member with the best validation accuracy within the limits (None if none is); the latency
        limit applies to the final side-by-side latency (``latency_final_ms``), or to the search's timing
        (``latency_ms``) for a member that was not timed at the end of the run."""
        found = best_within(self.payload["pareto"], latency_max_ms, memory_max_mb)
        return Member(found, self.out) if found is not None else None


def nondominated(points: np.ndarray) -> list[int]:
    if len(points) == 0:
        return []
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    return sorted(int(i) for i in NonDominatedSorting().do(np.asarray(points, float), only_non_dominated_front=True))


def member(row: dict) -> dict:
    return {k: row.get(k) for k in MEMBER_FIELDS}


def final_latency(row: dict) -> float:
    """The latency to judge a member by after the run: the median of the end-of-run interleaved rounds
    (``latency_final_ms``), else the search's single timing (``latency_ms``)."""
    final = row.get("latency_final_ms")
    return final if final is not None else row["latency_ms"]


def within(row: dict, latency_max_ms: float | None, memory_max_mb: float | None, final: bool = False) -> bool:
    """Whether ``row`` meets the budgets: on the search's timing, or (``final``) on :func:`final_latency`."""
    latency = final_latency(row) if final else row["latency_ms"]
    return ((latency_max_ms is None or latency <= latency_max_ms)
            and (memory_max_mb is None or row["memory_bytes"] / 2**20 <= memory_max_mb))


def best_within(members: Sequence[dict], latency_max_ms: float | None = None, memory_max_mb: float | None = None
                ) -> dict | None:
    """The member with the best *validation* accuracy within the budgets (ties: the faster one); None if none
    is. Test accuracy is reported, never selected on. Latency is :func:`final_latency` (the final side-by-side
    timing where there is one)."""
    fits = [m for m in members if within(m, latency_max_ms, memory_max_mb, final=True)]

    def score(m: dict) -> float:
        return m["val_accuracy"] if m.get("val_accuracy") is not None else m["accuracy"]
    return max(fits, key=lambda m: (score(m), -final_latency(m)), default=None)


def violation(row: dict, latency_max_ms: float | None, memory_max_mb: float | None) -> float:
    """How far outside the budgets a row is, relative to each budget (0 inside)."""
    v = 0.0
    if latency_max_ms:
        v += max(0.0, row["latency_ms"] / latency_max_ms - 1.0)
    if memory_max_mb:
        v += max(0.0, row["memory_bytes"] / 2**20 / memory_max_mb - 1.0)
    return v


def final_front(rows: Sequence[dict], latency_max_ms: float | None = None, memory_max_mb: float | None = None
                ) -> tuple[list[dict], dict | None]:
    """(front rows, budget_violations or None) among successfully measured ``rows``."""
    ok = [r for r in rows if r.get("latency_ms") and r.get("val_accuracy") is not None]
    feasible = [r for r in ok if within(r, latency_max_ms, memory_max_mb)]
    violations = None
    if not ok:
        failed = sum(1 for r in rows if r.get("error"))
        violations = {"message": f"no network was measured within the budget ({len(rows)} tried, {failed} failed); "
                                 "give the search more --budget-minutes", "closest": []}
    elif not feasible:
        closest = sorted(ok, key=lambda r: violation(r, latency_max_ms, memory_max_mb))[:3]
        limits = " and ".join(x for x in (f"latency ≤ {latency_max_ms} ms" if latency_max_ms else "",
                                          f"memory ≤ {memory_max_mb} MB" if memory_max_mb else "") if x)
        violations = {
            "message": f"no candidate met the budget ({limits}): of {len(ok)} networks measured, the closest "
                       f"runs in {closest[0]['latency_ms']:.3g} ms with {closest[0]['memory_bytes'] / 2**20:.3g} MB; "
                       "relax the budget or search a smaller space",
            "closest": [member(r) for r in closest]}
    pts = np.array([[1.0 - r["val_accuracy"], r["latency_ms"], r["memory_bytes"]] for r in feasible])
    front = [feasible[i] for i in nondominated(pts)]
    return sorted(front, key=lambda r: r["latency_ms"]), violations


def latency_model_quality(rows: Sequence[dict]) -> dict:
    """Predicted (before the network was measured) against measured whole-model latency: Kendall τ and MAPE."""
    pairs = [(r["latency_predicted_ms"], r["latency_ms"]) for r in rows
             if r.get("latency_ms") and r.get("latency_predicted_ms")]
    if len(pairs) < 3:
        return {"kendall_tau": None, "mape": None, "n": len(pairs)}
    from scipy.stats import kendalltau

    p, m = (np.asarray(v, float) for v in zip(*pairs))
    return {"kendall_tau": round(float(kendalltau(p, m).statistic), 3),
            "mape": round(float(np.mean(np.abs(p - m) / m)), 3), "n": len(pairs)}


def hypervolume(rows: Sequence[dict], ref_error: float, ref_latency_ms: float) -> float:
    """Hypervolume of (test error, measured latency) points under the reference point (pymoo's indicator)."""
    from pymoo.indicators.hv import HV

    pts = np.array([[1.0 - r["accuracy"], r["latency_ms"]] for r in rows
                    if r.get("latency_ms") and r.get("accuracy") is not None], dtype=float)
    if len(pts) == 0:
        return 0.0
    return float(HV(ref_point=np.array([ref_error, ref_latency_ms]))(pts))
