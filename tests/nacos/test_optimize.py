"""End-to-end ``nacos optimize`` on digits with a tiny budget: outputs, real latencies, resume, budget errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SMALL = dict(population=4, epochs=1, tune_trials=2, top_kernels=2, measure_per_generation=2, slots=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import nacos

    out = tmp_path_factory.mktemp("optimize") / "out"
    events = []
    result = nacos.optimize("hyt", "digits", out=out, budget_minutes=0.5, compare_default=False, baseline=True,
                            on_event=lambda **kw: events.append(kw), **SMALL)
    return result, events


def test_outputs_are_written_and_every_front_latency_was_measured(run):
    result, events = run
    out = result.out
    for name in ("pareto.json", "pareto.png", "report.md"):
        assert (out / name).is_file()
    payload = json.loads((out / "pareto.json").read_text())
    assert payload["method"] == "joint" and payload["pareto"], payload.get("budget_violations")
    measured = {m["id"]: m for m in payload["measured"]}
    for m in payload["pareto"]:
        assert m["latency_ms"] > 0 and measured[m["id"]]["front"]
        assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0 and m["memory_bytes"] > 0
        assert (out / m["artifact"] / "model.so").is_file() and (out / m["onnx"]).is_file()
        assert m["schedules"] and all("workload" in s and "point" in s for s in m["schedules"])
    for m in payload["measured"]:
        if not m["front"]:
            assert m["artifact"] is None  # only the front keeps its artifacts
    st = payload["stats"]
    assert st["evaluations"] >= SMALL["population"] and st["measured"] >= 1 and st["kernel_measurements"] > 0
    assert any(e["event"] == "progress" and e.get("measured_row") for e in events)
    report = (out / "report.md").read_text()
    assert all(m["id"] in report for m in payload["pareto"])


def test_a_front_latency_is_the_measurement_recorded_for_that_artifact(run):
    """The latency in pareto.json is the measurement the search recorded, as it measured, for the network whose
    artifact is kept (not a prediction, not a value written afterwards). Its size is not tested against a new
    timing: the search's one timing moves several-fold with the load of this shared machine (0.418 ms recorded,
    0.051 ms again, in one CI run with other work beside it); the end-of-run side-by-side timing is what the
    report compares (test_final_side_by_side_timing_of_real_builds_gives_a_consistent_speedup)."""
    import nacos
    from nacos.joint.store import RunStore

    result, _ = run
    store = RunStore(str(result.out / "nacos.db"), "joint")
    try:
        recorded = {row["id"]: row for row in store.measured()}
    finally:
        store.close()
    for member in result.pareto:
        row = recorded[member.data["id"]]
        assert row["latency_ms"] == member.data["latency_ms"] > 0 and row["archid"] == member.data["archid"]
        assert row["latency_predicted_ms"] == member.data["latency_predicted_ms"]
        model = nacos.Compiled.load(result.out / member.artifact)
        assert len(model.kernels) == member.data["kernels"]


def test_front_member_artifact_and_onnx_export_compute_the_same_network(run):
    import onnxruntime as ort

    from nacos import data

    result, _ = run
    member = result.pareto[0]
    x = np.ascontiguousarray(data.load("digits").test.x[:1])
    (y,) = member.load()(x)
    sess = ort.InferenceSession(str(result.out / member.onnx), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-4)


def test_two_stage_baseline_measures_its_front_with_default_then_tuned_schedules(run):
    result, events = run
    base = result.baseline
    assert base["method"] == "two-stage" and base["pareto"]
    for m in base["pareto"]:
        assert m["latency_ms"] > 0 and m["slots"] == []  # no schedule genes: NAS on default schedules
        assert (result.out / m["artifact"] / "model.so").is_file()
    assert any(m["latency_default_ms"] for m in base["pareto"])  # stage 1 timed them with default schedules
    assert base["stats"]["stage2_kernel_measurements"] >= 0
    assert {e["method"] for e in events if e["event"] == "start"} == {"joint", "two-stage"}
    assert "two-stage" in (result.out / "report.md").read_text()


def test_best_under_a_latency_budget(run):
    result, _ = run
    fastest = min(result.pareto, key=lambda m: m.latency_ms)
    best = result.best(latency_max_ms=fastest.latency_ms)
    assert best is not None and best.latency_ms <= fastest.latency_ms
    assert result.best(latency_max_ms=fastest.latency_ms / 100) is None


def test_final_side_by_side_timing_of_real_builds_gives_a_consistent_speedup(run):
    """The end-of-run timing with the real compiler and timer (the run above skipped it: compare_default=False):
    each member and its default-schedule build timed in the same rounds, the speedup their medians' ratio."""
    from dataclasses import fields
    from types import SimpleNamespace

    from nacos.joint.api import DB_NAME, final_side_by_side
    from nacos.joint.report import render_markdown
    from nacos.joint.runs import OptimizeConfig, RunContext

    result, _ = run
    names = {f.name for f in fields(OptimizeConfig)}
    cfg = OptimizeConfig(**{k: v for k, v in result.payload["config"].items() if k in names})
    rows = [dict(m) for m in result.payload["pareto"][:2]]
    ctx = RunContext(cfg, result.out, result.out / DB_NAME, "joint", schedule_genes=True, tune=True)
    try:
        final_side_by_side(ctx, rows, time.time() + 120, SimpleNamespace(note=lambda *a: None), "joint", rounds=3)
    finally:
        ctx.close()
    for m in rows:
        assert m["latency_final_ms"] > 0 and m["latency_default_ms"] > 0, m.get("error_default")
        assert m["final_rounds"] == 3
        assert m["speedup_vs_default"] == pytest.approx(m["latency_default_ms"] / m["latency_final_ms"])
        assert f"{m['latency_default_ms'] / m['latency_final_ms']:.2f}×" in render_markdown(
            {**result.payload, "pareto": [m], "baseline": None})


def _evaluations(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM opt_evaluations").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_killed_run_resumes_keeps_its_evaluations_and_reports_an_impossible_budget(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nacos.cli", "optimize", "-o", str(out), "--budget-minutes", "1",
           "--latency-max-ms", "0.0001", "--quiet", "--population", "4", "--epochs", "1", "--tune-trials", "2",
           "--measure-per-generation", "2", "--slots", "3"]
    # the killed run cannot remove its build folders and worker logs: keep them in the test's temporary folder
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    while _evaluations(out / "nacos.db") < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    before = _evaluations(out / "nacos.db")
    assert before >= 1
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600, env=env)
    after = _evaluations(out / "nacos.db")
    assert after >= before  # nothing evaluated before the kill was lost
    payload = json.loads((out / "pareto.json").read_text())
    assert payload["stats"]["evaluations"] == after
    # no network can run in 0.1 µs: a clear message and the closest candidates, exit status 3, no crash
    assert done.returncode == 3, done.stderr[-2000:]
    assert "no candidate met the budget" in done.stderr and "closest" in done.stderr
    assert payload["pareto"] == [] and payload["budget_violations"]["closest"]


def test_cli_lists_valid_names_for_an_unknown_space_or_target(tmp_path):
    from nacos.cli import main

    for args, text in ((["--space", "vgg"], "available: hyt, mbv2, resnet"),
                       (["--target", "tpu"], "unknown target 'tpu'; available:")):
        proc = subprocess.run([sys.executable, "-m", "nacos.cli", "optimize", "-o", str(tmp_path / "o"), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and text in proc.stderr and not (tmp_path / "o").exists()
    assert main(["optimize", "-o", str(tmp_path / "o"), "--budget-minutes", "-1"]) == 2


@pytest.mark.slow
def test_default_optimize_finishes_in_ten_minutes(tmp_path):
    """``nacos optimize`` with no arguments: the small default job on digits, ≤ 10 minutes here."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "nacos.cli", "optimize", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert seconds <= 600, seconds
    payload = json.loads((tmp_path / "nacos-optimize" / "pareto.json").read_text())
    assert payload["pareto"] and all(m["latency_ms"] > 0 for m in payload["pareto"])
    import nacos
    from nacos import data
    from nacos.joint.front import time_model

    member = payload["pareto"][0]
    model = nacos.Compiled.load(tmp_path / "nacos-optimize" / member["artifact"])
    x = np.ascontiguousarray(data.load("digits").test.x[:1])
    again = min(time_model(model, x) for _ in range(3)) * 1e3
    assert 1 / 2.5 < again / member["latency_ms"] < 2.5, (again, member["latency_ms"])


def test_optimize_searches_the_operator_rewrites_of_an_onnx_model(tmp_path):
    """``--model``: the architecture genes are GOS rewrites of the model's costliest operators (distilled from it)."""
    import nacos
    from ir.exporters import to_onnx
    from operators.gos.examples import vgg_style

    path = tmp_path / "vgg.onnx"
    to_onnx(vgg_style(widths=(8, 16, 32)), str(path))
    result = nacos.optimize(model=str(path), dataset="digits", out=tmp_path / "out", budget_minutes=0.3,
                            compare_default=False, **SMALL)
    payload = result.payload
    assert payload["config"]["model"] == str(path)
    assert payload["measured"] and any(m["latency_ms"] for m in payload["measured"])
    choices = {v for m in payload["measured"] for v in m["arch"].values()}
    assert "keep" in choices or len(choices) > 1
    assert all(isinstance(m["arch"], dict) and m["arch"] for m in payload["measured"])
    with sqlite3.connect(tmp_path / "out" / "nacos.db") as c:  # the unmodified model was in the first population
        archs = [json.loads(r[0])["arch"] for r in c.execute("SELECT info FROM opt_evaluations")]
    assert any(all(v == "keep" for _, v in a) for a in archs)
