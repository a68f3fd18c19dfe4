"""The search across workloads: families of workloads with the same loops share what they found."""

from __future__ import annotations

import numpy as np
import pytest

from schedules.database import Database
from schedules.measure import MeasureResult
from schedules.space import DEFAULT_SCHEDULE, space_for
from schedules.tuner import Task, family, tune_tasks
from schedules.workload import unique_workloads
from tests.schedules.test_database import FakeBuilder, FakeRunner, conv_model


def _same_conv_twice():
    """conv+relu then a bare conv, both 8→8 channels on 8×8: two workloads, one family."""
    (a, _), (b, _) = unique_workloads(conv_model("s", 8, extra_dense=False), "{}", "nchw")
    return a, b


def test_one_conv_with_and_without_epilogue_is_one_family():
    a, b = _same_conv_twice()
    assert a.key != b.key and family(space_for(a)) == family(space_for(b))
    (c, _), _ = unique_workloads(conv_model("t", 4, extra_dense=False), "{}", "nchw")  # 4→8: other loops
    assert family(space_for(c)) != family(space_for(a))


def test_a_siblings_best_point_is_tried_right_after_the_default(tmp_path):
    a, b = _same_conv_twice()
    space_a, space_b = space_for(a), space_for(b)
    good = space_a.default().replace(unroll=0, order="RM")
    assert space_a.repair(good) == good and good != space_a.default()
    db_path = tmp_path / "f.db"
    with Database(db_path) as db:  # a was tuned before: this point is its best
        db.add_workload(a)
        db.add(MeasureResult(a.key, good, 1e-6, (1e-6,), None, runner="fake"))

    runner = FakeRunner()
    tune_tasks([(a, 1), (b, 1)], 1 + 4, db_path, runner, FakeBuilder(), "random", batch_size=4, validate=False)
    first_round_b = [p for key, p in runner.log if key == b.key]
    assert first_round_b[0] in (space_b.default(), DEFAULT_SCHEDULE)
    assert space_b.repair(good) in first_round_b[:3]

    # control: tuned alone, b never sees that point so early
    alone = FakeRunner()
    tune_tasks([(b, 1)], 4, tmp_path / "alone.db", alone, FakeBuilder(), "random", batch_size=4, validate=False)
    assert space_b.repair(good) not in [p for _, p in alone.log[:3]]


def test_transfers_skip_the_reserved_default_and_repeat_nothing():
    a, b = _same_conv_twice()
    ta, tb = Task(a), Task(b)
    tb.siblings = [ta]
    assert tb.transfers() == []  # nothing measured yet
    ta.measured = {DEFAULT_SCHEDULE: 1e-6}
    assert tb.transfers() == []  # b measures its own default anyway
    p = ta.space.default().replace(unroll=0)
    ta.measured[p] = 1e-7
    assert tb.transfers() == [tb.space.repair(p)]


class LuckyRunner(FakeRunner):
    """One point measures fast once (a lucky moment on a busy machine) and slow ever after; the default is
    steady; everything else is slow."""

    def __init__(self, lucky, default):
        super().__init__()
        self.lucky, self.default = lucky, default

    def run(self, builds, callback=None):
        out = []
        for b in builds:
            key, point = b.input.workload.key, b.input.point
            again = (key, point) in self.log
            self.log.append((key, point))
            lat = {self.lucky: 1.3e-3 if again else 0.5e-3, self.default: 1e-3}.get(point, 3e-3)
            out.append(MeasureResult(key, point, lat, (lat,), None, runner=self.name))
            if callback:
                callback(out[-1])
        return out


def test_a_lucky_first_measurement_does_not_beat_the_default(tmp_path):
    a, _ = _same_conv_twice()
    space = space_for(a)
    lucky = space.default().replace(unroll=0)
    base = space.default()
    with Database(tmp_path / "l.db") as db:
        db.add_workload(a)
        db.add(MeasureResult(a.key, lucky, 0.5e-3, (0.5e-3,), None, runner="fake"))  # measured at a lucky moment
        runner = LuckyRunner(lucky, base)
        runner.log.append((a.key, lucky))
        res = tune_tasks([(a, 1)], 6, db, runner, FakeBuilder(), "random", batch_size=5)[0]
        assert res.best_point in (base, DEFAULT_SCHEDULE) and db.best(a)[0] == res.best_point
        assert db.latency(a, lucky) == 1.3e-3  # re-measured side by side, its first measurement no longer counts


class _OneWorkloadFails(FakeRunner):
    """Every measurement of the workload ``bad`` fails with ``error``; the others run as FakeRunner's do."""

    def __init__(self, bad: str, error: str):
        super().__init__()
        self.bad, self.error = bad, error

    def run(self, builds, callback=None):
        good = [b for b in builds if b.input.workload.key != self.bad]
        out = super().run(good, callback)
        for b in builds:
            if b.input.workload.key == self.bad:
                self.log.append((self.bad, b.input.point))
                r = MeasureResult(self.bad, b.input.point, None, (), self.error, runner=self.name)
                out.append(r)
                if callback:
                    callback(r)
        return out


def _three_workloads():
    return [w for w, _ in unique_workloads(conv_model("s", 8, extra_dense=True), "{}", "nchw")]


def test_a_workload_whose_every_measurement_fails_does_not_take_the_budget(tmp_path):
    ws = _three_workloads()
    runner = _OneWorkloadFails(ws[-1].key, "build: LLVM ERROR: cannot select")
    results = tune_tasks([(w, 1) for w in ws], 60, tmp_path / "f.db", runner, FakeBuilder(), "random",
                         batch_size=4, validate=False)
    by_key = {r.workload.key: r for r in results}
    bad = by_key[ws[-1].key]
    assert bad.best_latency is None and bad.trials == bad.failures == 4 * 3  # three failed rounds, then given up
    assert all(by_key[w.key].trials > 20 for w in ws[:-1])  # the budget went to the tasks that run


def test_a_reference_that_times_out_stops_its_task_and_is_not_stored_against_the_points(tmp_path):
    ws = _three_workloads()
    error = "reference: timeout: no answer within 900 s (worker killed)"
    runner = _OneWorkloadFails(ws[0].key, error)
    db_path = tmp_path / "f.db"
    results = tune_tasks([(w, 1) for w in ws], 24, db_path, runner, FakeBuilder(), "random", batch_size=4,
                         validate=False)
    assert results[0].best_latency is None and results[0].trials == 4  # one round: the workload is given up
    with Database(db_path) as db:
        assert db.records(ws[0]) == []  # a rerun tries again, the default point included
        assert len(db.records(ws[1])) > 4
    rerun = FakeRunner()
    again = tune_tasks([(w, 1) for w in ws], 32, db_path, rerun, FakeBuilder(), "random", batch_size=4,
                       validate=False)
    assert again[0].best_latency is not None and (ws[0].key, space_for(ws[0]).default()) in rerun.log


def test_a_reference_crash_in_the_builder_is_a_reference_error():
    from schedules.measure import LocalBuilder
    from schedules.workers import JobResult

    b = LocalBuilder.__new__(LocalBuilder)
    b._ref_errors, b.workdir, b.seed, b.reference_timeout = {}, "/nonexistent", 0, 1.0

    class Pool:
        def map(self, fn, jobs, timeout):
            return [JobResult(error="timeout: no answer within 1 s (worker killed)")] * len(jobs)
    b.pool = Pool()
    w = _three_workloads()[0]
    b._reference([w])
    assert b._ref_errors[w.key].startswith("reference: timeout:")
    assert MeasureResult(w.key, space_for(w).default(), None, (), b._ref_errors[w.key]).error_kind == "reference"


def test_a_rerun_confirms_the_finalists_of_a_run_killed_before_its_confirmation(tmp_path):
    w = _three_workloads()[0]
    db_path = tmp_path / "f.db"
    tune_tasks([(w, 1)], 9, db_path, FakeRunner(), FakeBuilder(), "random", batch_size=3, validate=False)  # "killed"
    rerun = FakeRunner()
    res = tune_tasks([(w, 1)], 9, db_path, rerun, FakeBuilder(), "random", batch_size=3)
    assert res[0].new == 0 and rerun.log  # nothing new to measure, but the finalists are re-measured
    with Database(db_path) as db:
        ranked = sorted((r for r in db.records(w) if r.ok), key=lambda r: r.latency)
        assert res[0].best_point in db.repeated(w) and ranked[0].point == res[0].best_point
    again = FakeRunner()
    tune_tasks([(w, 1)], 9, db_path, again, FakeBuilder(), "random", batch_size=3)
    assert again.log == []  # confirmed once: a further rerun measures nothing


def test_a_small_budget_measures_every_tasks_default_first(tmp_path):
    ws = _three_workloads()
    runner = FakeRunner()
    results = tune_tasks([(w, 1) for w in ws], 6, tmp_path / "f.db", runner, FakeBuilder(), "random", batch_size=4,
                         validate=False)
    assert [r.trials for r in results] == [2, 2, 2]
    assert all((w.key, space_for(w).default()) in runner.log or (w.key, DEFAULT_SCHEDULE) in runner.log for w in ws)


def test_results_of_a_runner_that_does_not_call_back_are_recorded(tmp_path):
    class Silent(FakeRunner):
        def run(self, builds, callback=None):
            return super().run(builds, None)

    w = _three_workloads()[0]
    res = tune_tasks([(w, 1)], 8, tmp_path / "f.db", Silent(), FakeBuilder(), "random", batch_size=4,
                     validate=False)
    assert res[0].trials == 8 and res[0].new == 8


class CodeBuilder(FakeBuilder):
    """Builds whose "machine code" tells FakeRunner's latency (its hash), which no knob feature does."""

    def __init__(self):
        self.built = 0

    def build(self, inputs):
        import hashlib
        import json
        from dataclasses import replace

        from schedules.compiled import COUNTS_VERSION

        out = []
        for b in super().build(inputs):
            h = int(hashlib.sha256(b.input.point.to_json().encode()).hexdigest()[:8], 16)
            counts = {"v": COUNTS_VERSION, "loops": 1, "all_instr": 10, "all_fma_lanes": 8, "all_spill": 0,
                      "hot_instr": 1 + h % 1000, "hot_fma": 1, "hot_fma_lanes": 8, "hot_loads": 1, "hot_stores": 0,
                      "hot_bcast": 0, "hot_spill": 0, "hot_scalar": 0, "hot_shuffle": 0, "hot_depth": 1}
            out.append(replace(b, compiled=json.dumps(counts)))
        self.built += len(out)
        return out


def test_screening_measures_the_builds_the_code_model_ranks_fastest(tmp_path):
    a, _ = _same_conv_twice()
    measured = {}
    for screen in (1, 4):
        runner, builder = FakeRunner(), CodeBuilder()
        res = tune_tasks([(a, 1)], 48, tmp_path / f"s{screen}.db", runner, builder, "xgb-compiled", batch_size=8,
                         validate=False, screen=screen)[0]
        assert res.trials == 48 and len(runner.log) == 48  # builds beyond the batch cost no trial
        assert builder.built >= (48 if screen == 1 else 150)
        with Database(tmp_path / f"s{screen}.db") as db:
            records = db.records(a)
        assert len(records) == 48 and all(r.compiled for r in records)
        measured[screen] = [r.latency for r in records[16:] if r.ok]  # after the model's first rounds
    assert np.median(measured[4]) < 0.7 * np.median(measured[1])  # screening measured faster candidates


def test_screening_needs_a_model_that_reads_code(tmp_path):
    a, _ = _same_conv_twice()
    builder = CodeBuilder()
    tune_tasks([(a, 1)], 16, tmp_path / "x.db", FakeRunner(), builder, "xgb", batch_size=8, validate=False, screen=4)
    assert builder.built == 16
    with pytest.raises(ValueError, match="screen=0"):
        tune_tasks([(a, 1)], 16, tmp_path / "y.db", FakeRunner(), builder, "xgb", screen=0)
