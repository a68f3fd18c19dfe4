"""The search across workloads: families of workloads with the same loops share what they found."""

from __future__ import annotations

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
