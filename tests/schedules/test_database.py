"""The tuning database: persistence, reuse across runs and models, and the compiler's schedule provider.

The search logic is exercised with an in-process fake builder and runner (deterministic latencies), so these
tests need no worker processes; real measurement is covered by test_measure.py and test_tune_cli.py.
"""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from ir.graph import GraphBuilder
from schedules.database import Database
from schedules.measure import BuildResult, Builder, MeasureResult, Runner
from schedules.space import DEFAULT_SCHEDULE, space_for
from schedules.tuner import tune_tasks, tune_workload
from schedules.workload import unique_workloads, workload_from_op, workloads_from_graph


class FakeBuilder(Builder):
    def build(self, inputs):
        return [BuildResult(i, artifact="no-such-file", reference="no-such-file") for i in inputs]


class FakeRunner(Runner):
    """Latency is a deterministic function of the point; every measurement is logged."""

    name = "fake"

    def __init__(self):
        self.log = []

    def run(self, builds, callback=None):
        out = []
        for b in builds:
            key, point = b.input.workload.key, b.input.point
            self.log.append((key, point))
            h = int(hashlib.sha256(point.to_json().encode()).hexdigest()[:8], 16)
            lat = 1e-3 * (1 + h % 1000 / 100) * (1.1 if (key, point) in self.log[:-1] else 1.0)  # repeats: slower
            r = MeasureResult(key, point, lat, (lat,), None, runner=self.name)
            if h % 7 == 0:
                r = MeasureResult(key, point, None, (), "crash: worker died (signal SIGSEGV)", runner=self.name)
            out.append(r)
            if callback:
                callback(r)
        return out


def conv_model(name, cin, extra_dense):
    b = GraphBuilder(name)
    x = b.input("x", (1, cin, 8, 8))
    w1 = b.constant(np.zeros((8, cin, 3, 3), "float32"), "w1")
    y = b.op("relu", b.op("conv", x, w1, pads=(1, 1, 1, 1)))
    w2 = b.constant(np.zeros((8, 8, 3, 3), "float32"), "w2")
    y = b.op("conv", y, w2, pads=(1, 1, 1, 1))
    if extra_dense:
        y = b.op("flatten", y, axis=1)
        y = b.op("dense", y, b.constant(np.zeros((10, 512), "float32"), "wd"))
    return b.build([y])


def test_records_persist_across_reopen_in_wal_mode(tmp_path):
    path = tmp_path / "t.db"
    w = workload_from_op("conv", [(1, 4, 8, 8), (8, 4, 3, 3)], {"pads": (1, 1, 1, 1)})
    space = space_for(w)
    ok = MeasureResult(w.key, space.default(), 2e-5, (2e-5, 2.1e-5), None, 0.1, 0.2, "local")
    bad = MeasureResult(w.key, space.default().replace(order="RM"), None, (), "timeout: no answer within 3 s")
    with Database(path) as db:
        db.add_workload(w)
        assert db.add(ok) and db.add(bad)
        assert not db.add(ok)  # (workload, point) is unique: never stored twice
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Database(path) as db:
        assert db.workload(w.key) == w and db.workloads() == [w]
        recs = db.records(w)
        assert [r.point for r in recs] == [ok.point, bad.point]
        assert recs[0].latency == ok.latency and recs[0].costs == ok.costs and recs[0].runner == "local"
        assert recs[1].error_kind == "timeout" and recs[1].latency is None
        assert db.best(w) == (ok.point, ok.latency) and db.count(w) == 2
        assert db.measured(w) == {ok.point, bad.point}


def test_rerun_and_other_models_reuse_measurements(tmp_path):
    db_path = tmp_path / "t.db"  # NCHW kernels: the budget arithmetic below counts exactly these workloads
    model_a = conv_model("a", 4, extra_dense=False)
    model_b = conv_model("b", 4, extra_dense=True)  # shares both convs with model a
    shared = {w.key for w, _ in unique_workloads(model_a, "{}", "nchw")}
    assert shared <= {w.key for w, _ in unique_workloads(model_b, "{}", "nchw")}

    runner = FakeRunner()
    first = tune_tasks(unique_workloads(model_a, "{}", "nchw"), 20, db_path, runner, FakeBuilder(), "random", validate=False)
    assert sum(r.trials for r in first) == 20 and len(runner.log) == 20
    assert all(r.default_latency is not None or r.failures for r in first)

    again = tune_tasks(unique_workloads(model_a, "{}", "nchw"), 20, db_path, runner, FakeBuilder(), "random", validate=False)
    assert len(runner.log) == 20 and sum(r.new for r in again) == 0  # a rerun measures nothing twice
    assert [r.best_latency for r in again] == [r.best_latency for r in first]

    second = tune_tasks(unique_workloads(model_b, "{}", "nchw"), 40, db_path, runner, FakeBuilder(), "random")
    # 20 new points, none measured before: the log's repeats are finalists re-measured side by side (validate)
    assert sum(r.new for r in second) == 20 and len(set(runner.log)) == 40
    with Database(db_path) as db:
        assert db.count() == 40


def test_best_candidates_are_re_measured_and_only_repeats_estimate_them(tmp_path):
    w = workload_from_op("conv", [(1, 4, 8, 8), (8, 4, 3, 3)], {"pads": (1, 1, 1, 1)})
    runner = FakeRunner()
    res = tune_workload(w, 9, tmp_path / "v.db", runner, "random", FakeBuilder(), batch_size=3)
    repeated = [p for _, p in runner.log[9:]]
    assert len(set(runner.log)) == 9 and repeated and res.best_point in repeated  # validation runs: no new points
    with Database(tmp_path / "v.db") as db:
        raw = dict(sqlite3.connect(db.path).execute("SELECT point, latency FROM measurements").fetchall())
        best = db.best(w)
        rec = next(r for r in db.records(w) if r.point == best[0])
        # the first measurement (what made the point a finalist) is kept but left out of the estimate
        assert len(rec.costs) > 1 and best[1] == pytest.approx(float(np.median(rec.costs[1:])))
        assert raw[best[0].to_json()] == rec.costs[0]  # the first measurement itself is never rewritten


def test_tune_workload_is_the_kernel_suite_entry_point(tmp_path):
    w = workload_from_op("dense", [(4, 64), (32, 64)])
    runner = FakeRunner()
    res = tune_workload(w, 12, tmp_path / "k.db", runner, "xgb", FakeBuilder(), batch_size=4, validate=False)
    assert res.trials == 12 and res.new == 12 and res.best_latency is not None
    assert runner.log[0][1] in (space_for(w).default(), DEFAULT_SCHEDULE)  # the default schedule comes first
    assert res.best_latency <= (res.default_latency or float("inf"))


def test_schedule_provider_applies_the_best_point(tmp_path):
    graph = conv_model("a", 4, extra_dense=False)
    pairs = workloads_from_graph(graph)
    w = pairs[0][1]
    best = space_for(w).default().replace(par=0, order="RM")
    with Database(tmp_path / "p.db") as db:
        db.add_workload(w)
        db.add(MeasureResult(w.key, best, 1e-5, (1e-5,)))
        provide = db.schedules(graph)
        from schedules.fusion import kernel_graph
        from schedules.lowering import lower_group

        kernels = kernel_graph(graph)  # the groups are cut from the graph after layout selection
        func, _ = lower_group(kernels, pairs[0][0])
        mod = provide(pairs[0][0], func)
        assert mod is not None and "parallel" not in mod.script()
        func2, _ = lower_group(kernels, pairs[1][0])
        assert provide(pairs[1][0], func2) is None  # nothing measured: the compiler uses the default


def test_missing_database_is_an_error_when_read_only(tmp_path):
    with pytest.raises(FileNotFoundError):
        Database(tmp_path / "none.db", readonly=True)


def test_default_schedule_is_measured_when_the_knobs_do_not_reproduce_it(tmp_path, monkeypatch):
    import schedules.tuner

    monkeypatch.setattr(schedules.tuner, "default_matches", lambda w: False)  # as if default.py changed
    w = workload_from_op("conv", [(1, 4, 8, 8), (8, 4, 3, 3)], {"pads": (1, 1, 1, 1)})
    runner = FakeRunner()
    res = tune_workload(w, 6, tmp_path / "d.db", runner, "xgb", FakeBuilder(), batch_size=3)
    assert [p for _, p in runner.log[:2]] == [DEFAULT_SCHEDULE, space_for(w).default()]
    with Database(tmp_path / "d.db") as db:
        assert res.default_latency == db.latency(w, DEFAULT_SCHEDULE)
    with Database(tmp_path / "e.db") as db:  # when the default schedule is the best, the compiler keeps its own
        db.add_workload(w)
        db.add(MeasureResult(w.key, DEFAULT_SCHEDULE, 1e-6, (1e-6,)))
        db.add(MeasureResult(w.key, space_for(w).default(), 2e-6, (2e-6,)))
        func, _ = w.lower()
        assert db.schedules(w.graph)(w.group, func) is None
        db.add(MeasureResult(w.key, space_for(w).default().replace(order="RM"), 1e-7, (1e-7,)))
        assert db.schedules(w.graph)(w.group, func) is not None


def test_a_database_holds_measurements_of_one_cache_mode(tmp_path):
    from schedules.database import MixedCachesError

    with Database(tmp_path / "cold.db") as db:
        db.claim_caches("cold")
        db.claim_caches("cold")  # the same mode again: fine
        with pytest.raises(MixedCachesError, match="cold caches and these would be warm"):
            db.claim_caches("warm")
        with pytest.raises(ValueError, match="expected 'warm' or 'cold'"):
            db.claim_caches("lukewarm")
    with Database(tmp_path / "cold.db") as db:  # the mode is kept in the file
        with pytest.raises(MixedCachesError):
            db.claim_caches("warm")


def test_a_database_measured_before_the_mode_was_recorded_counts_as_warm(tmp_path):
    from schedules.database import MixedCachesError

    w = workload_from_op("dense", ((1, 16), (8, 16)))
    with Database(tmp_path / "old.db") as db:
        db.add_workload(w)
        db.add(MeasureResult(w.key, DEFAULT_SCHEDULE, 1e-3, (1e-3,)))
        db._conn.execute("DELETE FROM meta WHERE key = 'caches'")  # as written before the mode was recorded
        with pytest.raises(MixedCachesError, match="warm caches"):
            db.claim_caches("cold")
        db.claim_caches("warm")


def test_tuning_with_cold_caches_into_a_warm_database_measures_nothing(tmp_path):
    from schedules.database import MixedCachesError
    w = workload_from_op("dense", ((1, 16), (8, 16)))
    tune_workload(w, 4, tmp_path / "t.db", FakeRunner(), "random", FakeBuilder(), validate=False)
    cold = FakeRunner()
    cold.caches = "cold"
    with pytest.raises(MixedCachesError):
        tune_workload(w, 8, tmp_path / "t.db", cold, "random", FakeBuilder(), validate=False)
    assert cold.log == []
    with Database(tmp_path / "t.db") as db:
        assert db.count(w) == 4


def test_a_read_only_database_is_opened_read_only(tmp_path):
    # opened for writing, it failed on a read-only file or folder ("attempt to write a readonly database")
    w = workload_from_op("dense", ((1, 16), (8, 16)))
    tune_workload(w, 4, tmp_path / "t.db", FakeRunner(), "random", FakeBuilder(), validate=False)
    data = (tmp_path / "t.db").read_bytes()
    with Database(tmp_path / "t.db", readonly=True) as db:
        assert db.count(w) == 4 and db.best(w) is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db._conn.execute("INSERT INTO meta VALUES ('x', 'y')")
    assert (tmp_path / "t.db").read_bytes() == data
    (tmp_path / "text.db").write_text("not sqlite")
    with pytest.raises(ValueError, match="not a tuning database"):
        Database(tmp_path / "text.db", readonly=True)
