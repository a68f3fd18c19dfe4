"""Cost models: the registry, online updates, save/load, and ranking quality on held-out measurements.

Latencies here are synthetic — a smooth function of the schedule (vector width, parallelism, register pressure)
plus noise — so the test is fast and deterministic; ``holdout_quality`` on a real database is what the
benchmarks print.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from schedules.cost_model import CostModel, create, holdout_quality, ranking_quality
from schedules.database import Database
from schedules.features import FEATURE_NAMES, extract_many
from schedules.measure import MeasureInput, MeasureResult
from schedules.space import space_for
from schedules.workload import workload_from_op

WORKLOADS = [workload_from_op("conv", [(1, 16, 16, 16), (32, 16, 3, 3)], {"pads": (1, 1, 1, 1)}, target="{}"),
             workload_from_op("dense", [(8, 128), (64, 128)], target="{}")]


def synthetic_latency(w, p, rng) -> float:
    """Faster with whole vectors, a parallel outer loop and a register tile that fits 16 registers."""
    x = dict(zip(FEATURE_NAMES, extract_many([(w, p)])[0]))
    speed = (1 + x["log_vec_width"]) * (1 + x["par"] * x["balance"]) * (0.4 if x["acc_spill"] else 1.0)
    speed *= 1 + 0.3 * min(x["log_tile"], 4) - 0.1 * x["pad_inline"]
    return w.flops / 1e10 / speed * math.exp(rng.normal(0, 0.05))


def dataset(n_per_workload, seed):
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    inputs, results = [], []
    for w in WORKLOADS:
        space = space_for(w)
        for p in {space.sample(prng) for _ in range(n_per_workload)}:
            inputs.append(MeasureInput(w, p))
            results.append(MeasureResult(w.key, p, synthetic_latency(w, p, rng), (1.0,)))
    return inputs, results


def test_registry():
    assert isinstance(create("xgb"), CostModel) and isinstance(create("random"), CostModel)
    model = create("random")
    assert create(model) is model
    with pytest.raises(ValueError, match="unknown cost model"):
        create("nope")


def test_xgb_ranks_held_out_schedules_and_random_does_not():
    train_in, train_res = dataset(150, 0)
    test_in, test_res = dataset(60, 1)
    xgb = create("xgb")
    half = len(train_in) // 2
    xgb.update(train_in[:half], train_res[:half])  # online: two updates
    xgb.update(train_in[half:], train_res[half:])
    good = ranking_quality(xgb, test_in, test_res, k=5)
    bad = ranking_quality(create("random"), test_in, test_res, k=5)
    assert good["workloads"] == 2 and good["kendall_tau"] > 0.5, good
    assert abs(bad["kendall_tau"]) < 0.25 and good["top_k_recall"] > bad["top_k_recall"], (good, bad)


def test_failures_train_as_slowest_and_save_load_round_trips(tmp_path):
    inputs, results = dataset(40, 2)
    results[0] = MeasureResult(results[0].workload_key, results[0].point, None, (), "crash: worker died")
    model = create("xgb", warmup=4)
    model.update(inputs, results)
    model.save(str(tmp_path / "m.json"))
    again = create("xgb")
    again.load(str(tmp_path / "m.json"))
    np.testing.assert_allclose(again.predict(inputs), model.predict(inputs))
    assert again.samples == model.samples == len(inputs) - 1


def test_holdout_quality_from_a_database(tmp_path):
    inputs, results = dataset(80, 3)
    with Database(tmp_path / "q.db") as db:
        for w in WORKLOADS:
            db.add_workload(w)
        for r in results:
            db.add(r)
        q = holdout_quality(db, "xgb", holdout=0.3, k=5)
    assert q["test"] > 20 and q["kendall_tau"] > 0.4, q
