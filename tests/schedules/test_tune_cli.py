"""``nacos tune`` killed with SIGKILL mid-run resumes from its database; ``nacos compile --db`` uses the result.

The tune runs as a subprocess in its own session, so the kill takes its worker processes down with it, exactly
as a crashed or interrupted run would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nacos
from nacos.cli import main
from schedules.database import Database
from schedules.space import DEFAULT_SCHEDULE, Point
from schedules.workload import workloads_from_graph
from tests.conftest import export_onnx

TRIALS = 9
ROOT = Path(__file__).resolve().parents[2]


def _rows(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        return {(w, p): (i, lat, err) for i, w, p, lat, err in
                conn.execute("SELECT id, workload, point, latency, error FROM measurements")}


def _tune_cmd(model: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nacos.cli", "tune", str(model), "--trials", str(TRIALS), "--db", str(db),
            "--batch-size", "3", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(net, (torch.randn(1, 4, 8, 8),), path)
    return path


@pytest.fixture(scope="module")
def killed_and_resumed(model, tmp_path_factory):
    """Run ``nacos tune``, SIGKILL it after a few measurements, rerun it to the end; (before, after, report)."""
    db = tmp_path_factory.mktemp("db") / "tune.db"
    # the killed run cannot remove its build folder and worker logs: keep them in the test's temporary folder
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path_factory.mktemp("tmp")))
    proc = subprocess.Popen(_tune_cmd(model, db, "--quiet"), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not (db.exists() and len(_safe_rows(db)) >= 4):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no measurements within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the tune and its workers: this session only
        proc.wait()
    before = _rows(db)
    assert 4 <= len(before) < TRIALS
    done = subprocess.run(_tune_cmd(model, db, "--json"), cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return db, before, _rows(db), json.loads(done.stdout)


def _safe_rows(db: Path) -> dict:
    try:
        return _rows(db)
    except sqlite3.OperationalError:  # the schema is being created
        return {}


def test_kill_9_then_rerun_resumes_without_losing_or_repeating_measurements(killed_and_resumed):
    db, before, after, report = killed_and_resumed
    assert all(after[k] == v for k, v in before.items())  # every measurement from before the kill, unchanged
    assert len(after) == TRIALS and report["new_measurements"] == TRIALS - len(before)
    assert sum(t["trials"] for t in report["tasks"]) == TRIALS
    with Database(db) as database:
        for task in report["tasks"]:
            old = [(lat, p) for (w, p), (_, lat, _) in before.items() if w == task["workload"] and lat is not None]
            if old:  # never worse than the best known before the kill (as re-measured since: its estimate)
                assert task["best_latency"] <= database.latency(task["workload"], Point.from_json(min(old)[1]))
            assert task["default_latency"] is not None and task["best_latency"] <= task["default_latency"]


def test_rerun_after_completion_measures_nothing(killed_and_resumed, model):
    db, _, after, _ = killed_and_resumed
    graph = nacos.load(model)
    report = nacos.tune(graph, trials=TRIALS, db=db)
    assert report.new_measurements == 0 and len(_rows(db)) == len(after)
    assert report.tuned_latency <= report.default_latency
    assert json.loads(json.dumps(report.to_dict()))["tasks"][0]["workload"] == report.tasks[0].workload


def test_compile_with_db_uses_tuned_schedules_and_matches_default(killed_and_resumed, model, tmp_path, capsys):
    db = killed_and_resumed[0]
    graph = nacos.load(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype("float32")
    with Database(db) as database:  # kernels whose best measured schedule is not the default one
        expected = sum(1 for _, w in workloads_from_graph(graph) if (best := database.best(w)) is not None
                       and best[0] != DEFAULT_SCHEDULE)
    tuned = nacos.compile(graph, schedules=Database(db).schedules(graph))
    assert tuned.stats.tuned == expected >= 1
    np.testing.assert_allclose(tuned(x)[0], nacos.compile(graph)(x)[0], rtol=1e-4, atol=1e-4)
    code = main(["compile", str(model), "-o", str(tmp_path / "out"), "--db", str(db), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["tuned_kernels"] == expected
    assert main(["compile", str(model), "-o", str(tmp_path / "o2"), "--db", str(tmp_path / "none.db")]) == 2


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials 0"),
    (["--target", "{not json"], "--target"),
    (["--rpc", "127.0.0.1:9190"], "--rpc-key"),
    # kernels for another machine cannot be timed here: every trial failed, and the database kept the failures
    (["--target", '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}'], "--rpc HOST:PORT"),
    (["--rpc-key", "myboard"], "--rpc-key is for measuring on a board"),  # was ignored: the tune ran here
    (["--cross-cc", "aarch64-linux-gnu-g++"], "--cross-cc is for measuring on a board"),
    (["--rpc", "127.0.0.1:1", "--rpc-key", "b"], "cannot connect"),  # checked before the database is created
    (["--screen", "0", "--cost-model", "xgb-compiled"], "--screen 0"),
    (["--screen", "4"], "needs --cost-model xgb-compiled"),  # the knob model cannot tell builds apart
])
def test_bad_tune_input_is_one_line_exit_2(args, message, model, tmp_path, capsys):
    code = main(["tune", str(model), "--db", str(tmp_path / "x.db"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_missing_model_is_exit_2(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "none.onnx"), "--db", str(tmp_path / "x.db")]) == 2


def test_cache_flush_into_a_warm_database_is_exit_2_and_measures_nothing(model, tmp_path, capsys):
    db = tmp_path / "warm.db"
    with Database(db) as database:
        database.claim_caches("warm")
    code = main(["tune", str(model), "--db", str(db), "--cache-flush", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "warm caches" in err and "--cache-flush" in err and len(err.strip().splitlines()) == 1
    with Database(db) as database:
        assert database.count() == 0


def test_cache_flush_gives_a_local_runner_that_flushes():
    from nacos.cli import _runner, build_parser

    args = build_parser().parse_args(["tune", "m.onnx", "--db", "x.db", "--cache-flush"])
    runner = _runner(args)
    try:
        assert runner.config.cache_flush and runner.caches == "cold"
    finally:
        runner.close()
    assert _runner(build_parser().parse_args(["tune", "m.onnx", "--db", "x.db"])) is None


def test_tune_screens_builds_with_the_code_model(model, tmp_path, capsys):
    db = tmp_path / "s.db"
    code = main(["tune", str(model), "--db", str(db), "--trials", "6", "--batch-size", "3", "--cost-model",
                 "xgb-compiled", "--screen", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["new_measurements"] == 6
    with Database(db) as database:
        records = [r for w in database.workloads() for r in database.records(w)]
    assert len(records) == 6 and all(r.compiled for r in records if r.ok)
