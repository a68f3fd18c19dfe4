"""Side-by-side timing of a GOS run on a loaded machine: stubbed timers, no real timing."""

from __future__ import annotations

import pytest

from operators.gos import examples

US = 1e-6
# per-round seconds (one call each, already divided by ``number``): the machine was busy in rounds 1-3 and 5, and
# the load slowed the larger models 3-4x there but not the tiny member (what a re-timing showed: 217/206 µs then
# 58/40 µs for the original/m4, 16-19 µs for the small member both times)
ROUNDS = {"original": [58, 217, 220, 215, 60, 210],
          "m1": [16, 17, 16, 19, 17, 18],
          "m4": [40, 206, 200, 204, 41, 199]}


def fake_timings(monkeypatch, rounds=ROUNDS):
    import nacos

    graphs = {name: examples.tiny_cnn() for name in rounds}
    by_graph = {id(g): name for name, g in graphs.items()}

    class FakeModel:
        def __init__(self, name):
            self.name, self.timed = name, iter(rounds[name])

        def benchmark(self, *inputs, number, repeat):
            if number == 3:      # the warm-up call
                return [1.0]
            return [next(self.timed) * US]

    monkeypatch.setattr(nacos, "compile", lambda g, schedules=None: FakeModel(by_graph[id(g)]))
    return graphs


def test_a_slow_stretch_does_not_inflate_the_speedup(monkeypatch):
    from operators.gos.report import measure_side_by_side, speedups

    timing = measure_side_by_side(fake_timings(monkeypatch), rounds=6, warmup=3)
    assert timing["original"]["samples_s"] == pytest.approx([t * US for t in ROUNDS["original"]])
    # the ratio of medians (212.5 / 17 µs = 12.5x) is the slow mode; the rounds with the machine free give ~3.6x
    s = speedups(timing)
    assert s["members"]["m1"]["speedup"] == pytest.approx(58 / 16)
    assert s["members"]["m4"]["speedup"] == pytest.approx(58 / 40)
    assert s["members"]["m1"]["measured_s"] == pytest.approx(16 * US)
    assert s["original_s"] == pytest.approx(58 * US)
    lo, q1, med, q3, hi = (s["members"]["m1"]["speedup_rounds"][k] for k in ("min", "q1", "median", "q3", "max"))
    assert lo == pytest.approx(60 / 17) and hi == pytest.approx(220 / 16) and lo <= q1 <= med <= q3 <= hi
    assert s["busy"] and s["spread"] == pytest.approx(206 / 40) and s["spread_model"] == "m4"
    assert "busy" in s["warning"] and "\n" not in s["warning"]


def test_quiet_rounds_give_no_warning(monkeypatch):
    from operators.gos.report import measure_side_by_side, speedups

    rounds = {"original": [58, 60, 59, 61], "m1": [16, 17, 16, 16]}
    s = speedups(measure_side_by_side(fake_timings(monkeypatch, rounds), rounds=4, warmup=3))
    assert not s["busy"] and s["warning"] is None
    assert s["members"]["m1"]["speedup"] == pytest.approx(58 / 16)


def test_the_report_shows_the_spread_and_the_warning():
    from operators.gos.report import render_markdown

    payload = {"graph": "g", "dataset": "digits", "latency_model": "roofline",
               "timing": {"rounds": 6, "schedules": "default", "busy": True,
                          "warning": "the machine was busy while timing; the speedups are uncertain"},
               "original": {"test_accuracy": 0.9, "val_accuracy": 0.9, "flops": 1e6},
               "pareto": [{"id": "m1", "key": "conv2=dwsep", "choices": {"conv2": "dwsep"}, "speedup": 3.625,
                           "speedup_rounds": {"min": 3.5, "q1": 3.6, "median": 12.0, "q3": 12.8, "max": 13.75},
                           "test_accuracy": 0.89, "val_accuracy": 0.9, "flops": 5e5, "params": 10}]}
    md = render_markdown(payload, {})
    assert "3.62×" in md and "3.50–13.75×" in md and "the machine was busy" in md
