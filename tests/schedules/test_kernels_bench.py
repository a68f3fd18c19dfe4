"""The kernel suite bench (bench/kernels.py): its bookkeeping fast, and the whole ``--quick`` run as a slow test."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from schedules.database import Database
from schedules.measure import MeasureResult
from schedules.space import Point, space_for
from schedules.workload import workload_from_op

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import kernels  # noqa: E402


def test_suite_flops_and_peak():
    by_name = {k.name: k for k in kernels.FULL}
    assert by_name["matmul_128"].flops == 2 * 128 ** 3
    assert by_name["attn_qk_4x64x32"].flops == 2 * 4 * 64 * 64 * 32
    assert by_name["conv3x3_64x56"].flops == 2 * 64 * 56 * 56 * 64 * 9
    assert by_name["conv3x3_64x56_nchw8c"].flops == by_name["conv3x3_64x56"].flops  # the same conv, blocked
    assert by_name["depthwise3x3_96x56"].flops == 2 * 96 * 56 * 56 * 9
    assert by_name["dense_512to1000"].flops == 2 * 1000 * 512
    peak = kernels.fp32_peak(2)
    assert peak["gflops"] == pytest.approx(2 * peak["fp32_lanes"] * 2 * peak["clock_ghz"] * 2)
    assert 0.5 < peak["clock_ghz"] < 6


def test_interleaved_timers_alternate_and_report_medians():
    calls = []

    def make(name, seconds):
        def timer(n):
            calls.append(name)
            return seconds
        return timer
    out = kernels.interleaved_timers({"a": make("a", 1e-3), "b": make("b", 2e-3)}, rounds=4, pause_s=0)
    assert out["a"]["median_s"] == 1e-3 and out["b"]["median_s"] == 2e-3 and out["a"]["rounds"] == 4
    assert calls[2:6] == ["a", "b", "b", "a"]  # after one calibration call each, the order alternates


def test_cost_model_quality_compares_each_measurements_own_repeats(tmp_path):
    """The noise view's back-to-back agreement is between the repeats of one measurement; a later re-measurement
    (Database.refine) moves the point's estimate but must not be mixed into those repeats."""
    from bench.cost_model_quality import load_pairs, merge

    w = workload_from_op("dense", [(8, 128), (64, 128)], target="{}")
    rng = random.Random(0)
    points = sorted({space_for(w).sample(rng) for _ in range(80)}, key=Point.to_json)[:40]
    path = str(tmp_path / "k.db")
    with Database(path) as db:
        db.add_workload(w)
        for k, p in enumerate(points):
            lat = 1e-3 * (1 + k)
            db.add(MeasureResult(w.key, p, lat, (lat, 1.01 * lat, 0.99 * lat, lat)))
        for k, p in enumerate(points[:8]):  # re-measured later, in the opposite order
            db.refine(MeasureResult(w.key, p, 1e-3 * (9 - k), (1e-3 * (9 - k),) * 4))
    q = kernels.cost_model_quality(merge(load_pairs(path)), [path])
    assert q["noise"]["back_to_back_tau_mean"] == pytest.approx(1.0)
    assert q["noise"]["remeasured_points"] == 8 and q["test"] == 8 and math.isfinite(q["kendall_tau"])


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    out = tmp_path / "k.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "kernels.py"), "--quick", "--rounds", "3",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"machine", "fp32_peak", "trials", "kernels", "cost_model", "wall_s"} <= set(data)
    assert data["trials"] == [8, 16] and len(data["kernels"]) == len(kernels.QUICK)
    variants = {"nacos-8", "nacos-16", "ms-8", "ms-16", "untuned", "torch"}
    for k in data["kernels"]:
        assert set(k["latency_s"]) == variants and set(k["gflops"]) == variants
        assert k["baseline"] == "ms-16" and k["ratio_vs_baseline"]["ms-16"] == pytest.approx(1.0)
        assert set(k["tune_s"]) == {"nacos-8", "nacos-16", "ms-8", "ms-16"}
        assert k["outputs_ok"], k["max_rel_err_vs_torch"]
        assert (k["pct_fp32_peak"] is not None) == k["conv"]
    q = data["cost_model"]
    assert {"kendall_tau_mean", "kendall_tau_pooled", "top_k_recall", "train", "test", "noise"} <= set(q)
    assert "back_to_back_tau_mean" in q["noise"]  # the perfect-model line needs re-measured points as well
    # the code model ranks the same split and the same random points (the tuner kept every build's counts)
    assert q["compiled"]["test"] == q["test"] and math.isfinite(q["compiled"]["kendall_tau_mean"])
    assert q["random"]["compare"]["xgb-compiled"]["measurements"] == q["random"]["measurements"]
    assert "xgb-compiled" in proc.stdout
    assert "Kendall tau" in proc.stdout and "GFLOP/s" in proc.stdout
    assert q["random"]["per_workload_points"] == 6 and q["random"]["measurements"] > 0
    assert "random held-out schedules" in proc.stdout
    # 16 measurements a kernel hold out round(0.2 · 16) = 3, just enough for a τ per kernel
    assert q["retest"]["rounds"] == 2 and q["retest"]["points"] > 0 and "retest (" in proc.stdout


@pytest.mark.slow
def test_screening_bench_end_to_end(tmp_path):
    out = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "screening.py"), "--kernels", "dense_128to64",
                           "--trials", "6", "--screen", "2", "--seeds", "0", "--rounds", "2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 1 and data["rows"][0]["ratio"] > 0 and data["tune_time_ratio"] > 0
    assert "screened / plain best latency" in proc.stdout
