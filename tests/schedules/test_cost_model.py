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
from schedules.space import Point, space_for
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
        # sorted: a set of Points iterates in hash order, which changes with PYTHONHASHSEED from run to run
        for p in sorted({space.sample(prng) for _ in range(n_per_workload)}, key=Point.to_json):
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


def test_failures_are_not_ranking_labels_and_save_load_round_trips(tmp_path):
    inputs, results = dataset(40, 2)
    failed = [MeasureResult(r.workload_key, r.point, None, (), "crash: worker died") for r in results[:5]]
    model = create("xgb", warmup=4)
    model.update(inputs, failed + results[5:])
    # a failure has no latency: the model trained with the 5 failures equals one that never saw those points
    clean = create("xgb", warmup=4)
    clean.update(inputs[5:], results[5:])
    np.testing.assert_allclose(model.predict(inputs), clean.predict(inputs))
    model.save(str(tmp_path / "m.json"))
    again = create("xgb")
    again.load(str(tmp_path / "m.json"))
    np.testing.assert_allclose(again.predict(inputs), model.predict(inputs))
    assert again.samples == model.samples == len(inputs) - 5


def test_holdout_quality_from_a_database(tmp_path):
    inputs, results = dataset(80, 3)
    with Database(tmp_path / "q.db") as db:
        for w in WORKLOADS:
            db.add_workload(w)
        for r in results:
            db.add(r)
        q = holdout_quality(db, "xgb", holdout=0.3, k=5)
    assert q["test"] > 20 and q["kendall_tau"] > 0.4, q


# ---- an analytic latency model written from the knobs (not from the features the model sees) ----------------
ANALYTIC = [workload_from_op("conv", [(1, 32, 28, 28), (64, 32, 3, 3), (64,)], {"pads": (1, 1, 1, 1)}, ("relu",),
                             target='{"num-cores": 2}'),
            workload_from_op("dense", [(1, 512), (256, 512)], target='{"num-cores": 2}'),
            workload_from_op("matmul", [(4, 64, 32), (4, 32, 64)], constant_weights=False,
                             target='{"num-cores": 2}')]


def analytic_latency(w, p, rng) -> float:
    """A roofline-flavoured CPU model: FMAs on the vectorized lanes actually used, spread over the parallel
    extent, slowed by accumulator spills beyond 16 registers and by strided vector loads, plus 5 % noise."""
    space = space_for(w)
    sh, p = space.shape, space.knob_point(p)
    n = len(sh.spatial)
    axis = space.vector_axis(p)
    tiles = [p[f"s{i}"][1] for i in range(n)]
    mids = [p[f"s{i}"][0] for i in range(n)]
    width = tiles[axis] if p["vec"] else 1
    lanes = min(width, 8) * (width / (math.ceil(width / 8) * 8) if width > 1 else 1)
    outer = math.prod(e // (m * t) for e, m, t in zip(sh.spatial, mids, tiles))
    cores = min(2, outer) if p["par"] else 1
    regs = math.prod(tiles) / 8
    spill = 1 + max(0.0, regs - 12) / 6
    strided = 1.0 if axis == n - 1 or p.get("layout") == "packed" else 1.6
    unroll = 0.85 if p["unroll"] else 1.0
    cycles = w.flops / (2 * 2 * max(lanes, 1)) / cores * spill * strided * unroll
    return cycles / 2.4e9 * math.exp(rng.normal(0, 0.05))


def analytic_dataset(n_per_workload, seed):
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    inputs, results = [], []
    for w in ANALYTIC:
        space = space_for(w)
        # sorted: a set of Points iterates in hash order, which changes with PYTHONHASHSEED from run to run
        for p in sorted({space.sample(prng) for _ in range(n_per_workload)}, key=Point.to_json):
            inputs.append(MeasureInput(w, p))
            results.append(MeasureResult(w.key, p, analytic_latency(w, p, rng), (1.0,)))
    return inputs, results


def test_held_out_tau_on_an_analytic_latency_model():
    """80 % train / 20 % test of each workload, as the kernel bench does. 5 % noise caps τ near 0.9 here (pairs
    closer than the noise are coin flips); 0.7 is the target the bench reports against. (``rank:pairwise`` on the
    same data reached only τ ≈ 0.5, which is why regression is the default objective.)"""
    inputs, results = analytic_dataset(120, 4)
    rng = random.Random(0)
    test = [rng.random() < 0.2 for _ in inputs]
    model = create("xgb")
    model.update([i for i, t in zip(inputs, test) if not t], [r for r, t in zip(results, test) if not t])
    q = ranking_quality(model, [i for i, t in zip(inputs, test) if t], [r for r, t in zip(results, test) if t])
    assert q["workloads"] == 3 and q["kendall_tau_mean"] > 0.7 and q["kendall_tau_pooled"] > 0.7, q
    assert q["top_k_recall"] >= 0.4, q


def test_features_count_the_tiles_lanes_whether_or_not_the_schedule_vectorizes():
    """LLVM vectorizes an innermost tile loop the schedule leaves scalar, so vec=0 and vec=1 differ only in the
    ``vec`` flag: the lanes, vector instructions and cycle estimate are those of the tile either way."""
    w = WORKLOADS[0]
    space = space_for(w)
    prng = random.Random(3)
    points = [space.sample(prng) for _ in range(300)]
    p = next(p for p in points if p["vec"] and p["layout"] == "plain" and p["s3"][1] == 8)
    q = p.replace(vec=0)
    a, b = (dict(zip(FEATURE_NAMES, row)) for row in extract_many([(w, p), (w, q)]))
    assert (a["vec"], b["vec"]) == (1.0, 0.0)
    assert a["log_vec_width"] == b["log_vec_width"] == 3.0 and a["lane_util"] == b["lane_util"] == 1.0
    assert a["est_log_cycles"] == b["est_log_cycles"] and a["log_vec_instr"] == b["log_vec_instr"]
    assert a["log_unrolled"] <= b["log_unrolled"]  # an explicit vector is one statement, a scalar tile eight


@pytest.mark.parametrize("objective", ["reg:squarederror", "rank:pairwise"])
def test_save_load_round_trip_keeps_predictions_and_keeps_learning(tmp_path, objective):
    inputs, results = analytic_dataset(40, 5)
    model = create("xgb", objective=objective)
    model.update(inputs[:60], results[:60])
    model.save(str(tmp_path / "m.json"))
    again = create("xgb", objective=objective)
    again.load(str(tmp_path / "m.json"))
    np.testing.assert_allclose(again.predict(inputs), model.predict(inputs), rtol=1e-6)
    again.update(inputs[60:], results[60:])  # the saved training data lets a loaded model keep updating
    model.update(inputs[60:], results[60:])
    np.testing.assert_allclose(again.predict(inputs), model.predict(inputs), rtol=1e-6)


def test_pooled_tau_counts_same_workload_pairs_only():
    inputs, results = dataset(30, 6)

    class Oracle(CostModel):  # scores = -latency within a workload, shuffled offsets across workloads
        def predict(self, cands):
            lat = {(i.workload.key, i.point): float(r.latency) for i, r in zip(inputs, results)}
            return np.array([-lat[(c.workload.key, c.point)] + (1.0 if c.workload is WORKLOADS[0] else 0)
                             for c in cands])
    q = ranking_quality(Oracle(), inputs, results)
    assert q["kendall_tau_pooled"] == pytest.approx(1.0), q
    assert q["kendall_tau_mean"] == pytest.approx(1.0), q


def test_per_workload_offsets_zero_one_or_two_passes_rank_well():
    """``fe_passes=0``: the plain fit; 1: each workload's mean target as its offset; 2 (the default): offsets
    re-estimated from the trees' residuals. Each must order a workload's points (offsets never change that order)."""
    inputs, results = analytic_dataset(60, 7)
    for passes in (0, 1, 2):
        model = create("xgb", fe_passes=passes, early_stopping=0, rounds=100)
        model.update(inputs, results)
        q = ranking_quality(model, inputs, results)
        assert q["kendall_tau_mean"] > 0.8, (passes, q)


def test_cost_model_quality_bench_writes_every_view(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import cost_model_quality

    _, results = dataset(30, 8)
    for name, part in (("a", slice(0, None, 2)), ("b", slice(1, None, 2))):
        with Database(tmp_path / f"{name}.db") as db:
            for w in WORKLOADS:
                db.add_workload(w)
            for r in results[part]:
                db.add(r)
    out = tmp_path / "q.json"
    dbs = [str(tmp_path / "a.db"), str(tmp_path / "b.db")]
    assert cost_model_quality.main([*dbs, "--seeds", "2", "--curve", "4,200", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    # at most 4 training points per workload rank worse than all of them, on the same test points
    assert set(data["curve"]) == {"4", "200"}
    assert data["curve"]["4"]["kendall_tau_mean"] < data["curve"]["200"]["kendall_tau_mean"], data["curve"]
    assert data["all"]["measurements"] == len(results) and data["all"]["seeds"] == 2
    assert set(data["per_db"]) == set(dbs)
    assert {"kendall_tau_mean", "kendall_tau_pooled", "top_k_recall"} <= set(data["all"])
    assert data["all"]["kendall_tau_mean"]["mean"] > 0.3, data["all"]
    assert data["cross"]["leave_one_workload_out"]["groups"] == 2 and "noise" in data
    assert "leave-one-workload-out" in capsys.readouterr().out


def test_cost_model_quality_bench_needs_databases_or_a_suite_dir():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import cost_model_quality

    for argv in ([], ["--suite-trials", "8"]):
        with pytest.raises(SystemExit) as e:
            cost_model_quality.main(argv)
        assert e.value.code == 2


def test_cost_model_quality_random_view_measures_only_unseen_points():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.cost_model_quality import random_view
    from schedules.measure import BuildResult, Builder, Runner

    rng = np.random.default_rng(3)

    class Synthetic(Runner, Builder):
        """Builds nothing; "measures" the synthetic latency (a new noise draw every time)."""
        log: list = []

        def build(self, inputs):
            return [BuildResult(i, artifact="no-such-file", reference="no-such-file") for i in inputs]

        def run(self, builds, callback=None):
            out = []
            for b in builds:
                lat = synthetic_latency(b.input.workload, b.input.point, rng)
                self.log.append((b.input.workload.key, b.input.point))
                out.append(MeasureResult(b.input.workload.key, b.input.point, lat, (lat,)))
            return out

    inputs, results = dataset(120, 0)
    fake = Synthetic()
    r = random_view(list(zip(inputs, results)), 12, 2, 5, {}, builder=fake, runner=fake, target="{}")
    seen = {(i.workload.key, i.point) for i in inputs}
    assert len(fake.log) == 2 * 2 * 12 and not set(fake.log) & seen  # 2 workloads × 2 rounds × 12 fresh points
    assert r["measurements"] == 24 and r["workloads"] == 2 and r["rounds_agree_tau_mean"] > 0.5
    assert r["kendall_tau_mean"] > 0.3, r
    assert random_view(list(zip(inputs, results)), 4, 2, 5, {}, builder=fake, runner=fake,
                       target="other")["skipped_other_target"] == [w.name for w in WORKLOADS]
