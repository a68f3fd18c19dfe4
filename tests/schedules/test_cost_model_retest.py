"""The retest view of bench/cost_model_quality.py: held-out schedules re-measured, labels checked against
themselves. Measurements here are synthetic (a smooth latency plus log-normal noise of a chosen size)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from schedules.measure import BuildResult, Builder, MeasureResult, Runner
from tests.schedules.test_cost_model import dataset, synthetic_latency

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.cost_model_retest import perfect_model_tau, retest_view  # noqa: E402


class NoisyMeasurer(Runner, Builder):
    """Builds nothing; "measures" the synthetic latency times exp(N(0, sigma)), a new draw every time."""

    def __init__(self, sigma: float, seed: int = 0):
        self.sigma, self.rng, self.log = sigma, np.random.default_rng(seed), []

    def build(self, inputs):
        return [BuildResult(i, artifact="no-such-file", reference="no-such-file") for i in inputs]

    def run(self, builds, callback=None):
        out = []
        for b in builds:
            lat = synthetic_latency(b.input.workload, b.input.point, self.rng)
            lat *= math.exp(self.rng.normal(0, self.sigma))
            self.log.append(b.input.point)
            out.append(MeasureResult(b.input.workload.key, b.input.point, lat, (lat,)))
        return out


def test_perfect_model_tau_from_label_agreement():
    # noise-free re-measurement: a perfect model scores exactly what the labels agree with it
    on_db, on_retest = perfect_model_tau(0.5, 1.0)
    assert on_db == pytest.approx(0.5) and on_retest == pytest.approx(1.0)
    # noisier rounds: the re-measured median is less reliable, so the same agreement implies cleaner labels
    a, _ = perfect_model_tau(0.5, 0.8)
    b, ceiling = perfect_model_tau(0.5, 0.5)
    assert 0.5 < a < b < 1.0 and ceiling < 1.0
    assert all(math.isnan(x) for x in perfect_model_tau(0.5, 0.0))


def test_retest_view_remeasures_the_held_out_points_and_sees_the_noise():
    inputs, results = dataset(60, 1)
    pairs = list(zip(inputs, results))
    views = {}
    for sigma in (0.02, 0.6):
        fake = NoisyMeasurer(sigma)
        r = views[sigma] = retest_view(pairs, 3, 0.25, {}, builder=fake, runner=fake, target="{}")
        assert r["workloads"] == 2 and r["rounds"] == 3 and len(fake.log) == 3 * r["points"]
        held_out = {p for p in fake.log}
        assert len(held_out) == r["points"] and held_out <= {i.point for i in inputs}
    quiet, loud = views[0.02], views[0.6]
    assert quiet["db_labels_vs_retest"] > 0.7 and quiet["halves_agree"] > 0.8, quiet
    assert loud["db_labels_vs_retest"] < quiet["db_labels_vs_retest"] - 0.2, (quiet, loud)
    assert loud["perfect_model_vs_retest"] < quiet["perfect_model_vs_retest"]
    # the model's ranking is the same either way; only the labels it is scored against move
    assert quiet["model_vs_db_labels"] == pytest.approx(loud["model_vs_db_labels"])
    assert quiet["model_vs_retest"] > loud["model_vs_retest"]
    with pytest.raises(ValueError):
        retest_view(pairs, 1, 0.25, {}, builder=NoisyMeasurer(0.1), runner=NoisyMeasurer(0.1), target="{}")


class DriftingMeasurer(NoisyMeasurer):
    """Each point's own latency (drawn once, 0.4–0.6 ms) times a machine load that swings smoothly between ×1 and
    ×2 over 40 runs, plus 1 % noise: the slow noise of a shared machine, which a reference timed right before and
    after a point cancels."""

    def __init__(self):
        super().__init__(0.01)
        self.true, self.runs = {}, 0

    def run(self, builds, callback=None):
        out = []
        for b in builds:
            w, p = b.input.workload, b.input.point
            base = self.true.setdefault((w.key, p), float(np.exp(self.rng.uniform(np.log(4e-4), np.log(6e-4)))))
            lat = base * (1.5 + 0.5 * math.sin(2 * math.pi * self.runs / 40)) * math.exp(self.rng.normal(0, self.sigma))
            self.runs += 1
            self.log.append(p)
            out.append(MeasureResult(w.key, p, lat, (lat,)))
        return out


def test_remeasure_against_a_reference_cancels_slow_load_changes():
    from scipy.stats import kendalltau

    from schedules.tuner import remeasure

    inputs, _ = dataset(40, 2)
    w = inputs[0].workload
    points = [i.point for i in inputs if i.workload == w][:30]
    fake = DriftingMeasurer()
    raw = remeasure(w, points, 2, fake, fake)
    ref = remeasure(w, points, 2, fake, fake, reference=points[0])
    assert fake.runs == 2 * len(points) + 3 * 2 * len(points)  # a referenced measurement is three runs
    agree = {name: kendalltau([v[0] for v in lats.values()], [v[1] for v in lats.values()]).statistic
             for name, lats in (("raw", raw), ("ref", ref))}
    assert agree["ref"] > 0.8 and agree["raw"] < agree["ref"] - 0.3, agree
    # still seconds: the ratios are scaled by the reference's median latency
    true = np.array([fake.true[(w.key, p)] for p in points])
    assert 0.5 < np.median([np.median(ref[p]) for p in points]) / np.median(true) < 2.5


def test_referenced_retest_view_brackets_every_measurement():
    inputs, results = dataset(60, 1)
    fake = DriftingMeasurer()
    r = retest_view(list(zip(inputs, results)), 2, 0.25, {}, builder=fake, runner=fake, target="{}",
                    referenced=True)
    assert r["referenced"] and r["workloads"] == 2 and fake.runs == 3 * 2 * r["points"]
    assert r["halves_agree"] > 0.8, r
