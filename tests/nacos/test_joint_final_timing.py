"""The latencies ``nacos optimize`` reports for its front: the final side-by-side timing and the search's timing.

The search times each candidate once, mid-search (``latency_ms``); on a shared machine that one number can be far
off. At the end of the run every front member and its default-schedule build are timed together in interleaved
rounds: ``latency_final_ms`` and ``latency_default_ms`` are medians of the same rounds, and ``speedup_vs_default``
is their ratio. These tests stub the compiler and the timer (no TVM), so they run in about a second.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from nacos.joint.report import fmt_ms, render_markdown, write_outputs
from nacos.joint.result import Result

NOISE = (1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.2, 0.85)


def _row(i: int, val: float, search_ms: float, **extra) -> dict:
    cid = f"c{i:04d}"
    return {"id": cid, "key": str(i), "archid": str(i), "arch": {}, "slots": [], "val_accuracy": val,
            "accuracy": val, "latency_ms": search_ms, "latency_predicted_ms": search_ms * 1.1, "memory_bytes": 2**20,
            "params": 1000, "flops": 10_000, "tuned_kernels": 1, "kernels": 2, "schedules": [],
            "artifact": f"members/{cid}", "onnx": f"members/{cid}/model.onnx", **extra}


def _table(report: str, header_start: str = "| id |") -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {id: row cells}) of the first table of ``report`` whose header starts with ``header_start``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header, rows = cells(lines[start]), {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        c = cells(line)
        rows[c[0]] = c
    return header, rows


def _printed_ratio_matches(header: list[str], row: list[str]) -> tuple[float, float, float]:
    """(latency, default, speedup) as printed in a front table row; the first latency column is the one the
    default sits next to."""
    lat = float(row[next(i for i, h in enumerate(header) if h.startswith("latency"))])
    default = float(row[header.index("default schedules (ms)")])
    speedup = float(row[header.index("tuned speedup")].rstrip("×"))
    return lat, default, speedup


# ---- the end of a run: members and defaults timed in the same interleaved rounds ---------------------------------

@pytest.fixture
def stub_timing(monkeypatch, tmp_path):
    """A finish() context whose compiler and timer are stubs: each member's tuned and default builds have a true
    latency; the stub timer returns it times some noise, and logs every call."""
    import nacos
    from nacos.joint import front, search
    from nacos.joint.runs import OptimizeConfig
    from nacos.joint.store import RunStore

    # the search's single timings contradict the true ones (the audited case: 0.123 ms recorded, 0.412 ms true)
    rows = [_row(0, 0.80, 0.123), _row(1, 0.85, 0.279), _row(2, 0.90, 0.403)]
    true_ms = {"c0000": (0.412, 0.449), "c0001": (0.300, 0.172), "c0002": (0.094, 0.300)}  # (tuned, default)
    log: list[tuple[str, str, float]] = []

    class Fake:
        def __init__(self, cid: str, kind: str, ms: float) -> None:
            self.cid, self.kind, self.ms, self.calls = cid, kind, ms, 0

    def fake_time_model(model, x, repeat=7):
        value = model.ms * 1e-3 * NOISE[model.calls % len(NOISE)]
        model.calls += 1
        log.append((model.cid, model.kind, value))
        return value

    def fake_compile(graph, **kw):
        assert not kw, "the default build has default schedules"
        return Fake(graph, "default", true_ms[graph][1])

    monkeypatch.setattr(front, "time_model", fake_time_model)
    monkeypatch.setattr(nacos, "compile", fake_compile)
    monkeypatch.setattr(search, "genome_of", lambda row, space: SimpleNamespace(arch=row["id"]))
    store = RunStore(str(tmp_path / "s.db"), "joint")
    for r in rows:
        store.add_measured(r["key"], r)
    ctx = SimpleNamespace(
        cfg=OptimizeConfig(compare_default=True), store=store, db=SimpleNamespace(count=lambda: 0), out=tmp_path,
        measurer=SimpleNamespace(remove_artifact=lambda cid: None, x=np.zeros((1, 1), np.float32),
                                 compiled={cid: Fake(cid, "tuned", t) for cid, (t, _) in true_ms.items()}),
        elapsed=lambda: 1.0, tkey="k", target=SimpleNamespace(name="host"), space=SimpleNamespace(name="hyt"),
        oracle=SimpleNamespace(trained_graph=lambda arch, graph: arch),
        evaluator=SimpleNamespace(calibration=SimpleNamespace(a=1.0, b=0.0), graph=lambda genome: None))
    yield ctx, log
    store.close()


def test_front_members_and_defaults_are_timed_in_the_same_rounds_and_the_speedup_is_their_ratio(stub_timing,
                                                                                                  tmp_path):
    from nacos.joint.api import finish

    ctx, log = stub_timing
    payload = finish(ctx, "joint", 1, SimpleNamespace(note=lambda *a: None))
    front = payload["pareto"]
    assert len(front) == 3
    n = len(front)
    # one round: every member and every default once, before any of them is timed again
    first = {(cid, kind) for cid, kind, _ in log[: 2 * n]}
    assert first == {(m["id"], k) for m in front for k in ("tuned", "default")}, log[: 2 * n]
    for m in front:
        tuned = [v for cid, kind, v in log if cid == m["id"] and kind == "tuned"]
        default = [v for cid, kind, v in log if cid == m["id"] and kind == "default"]
        assert len(tuned) == len(default) >= 5
        assert m["latency_final_ms"] == pytest.approx(np.median(tuned) * 1e3)
        assert m["latency_default_ms"] == pytest.approx(np.median(default) * 1e3)
        assert m["speedup_vs_default"] == pytest.approx(m["latency_default_ms"] / m["latency_final_ms"], rel=1e-12)
        assert m["latency_ms"] in (0.123, 0.279, 0.403)  # the search's timing is kept, as the search's

    out = tmp_path / "out"
    write_outputs(payload, out)
    saved = json.loads((out / "pareto.json").read_text())
    for m in saved["pareto"]:
        assert m["speedup_vs_default"] == pytest.approx(m["latency_default_ms"] / m["latency_final_ms"], rel=1e-9)
    header, table = _table((out / "report.md").read_text())
    for m in saved["pareto"]:
        lat, default, speedup = _printed_ratio_matches(header, table[m["id"]])
        assert table[m["id"]][header.index("default schedules (ms)")] == fmt_ms(m["latency_default_ms"])
        assert lat == pytest.approx(m["latency_final_ms"], rel=5e-3)
        assert speedup == pytest.approx(default / lat, rel=2e-2)  # what the reader computes from the table
        assert f"{m['speedup_vs_default']:.2f}×" in table[m["id"]]


def test_a_member_timed_already_with_stage1_defaults_is_timed_again_side_by_side(stub_timing):
    """The two-stage baseline's members come with a default latency from stage 1 (another timing, another time):
    they are timed side by side with the others all the same."""
    from nacos.joint.api import finish

    ctx, log = stub_timing
    for r in ctx.store.measured():
        ctx.store.add_measured(r["key"], dict(r, latency_default_ms=5.0))
    payload = finish(ctx, "two-stage", 1, SimpleNamespace(note=lambda *a: None))
    for m in payload["pareto"]:
        assert m["latency_final_ms"] is not None and m["latency_default_ms"] != 5.0
        assert m["speedup_vs_default"] == pytest.approx(m["latency_default_ms"] / m["latency_final_ms"], rel=1e-12)


# ---- report.md: the latency the default and the speedup belong to -------------------------------------------------

def _payload(members: list[dict], latency_max_ms: float | None = None) -> dict:
    return {"version": 1, "method": "joint",
            "config": {"space": "hyt", "dataset": "digits", "target": "host", "fidelity": "predictor",
                       "latency_max_ms": latency_max_ms, "memory_max_mb": None},
            "stats": {"evaluations": 3, "generations": 1, "measured": 3, "kernel_measurements": 1, "seconds": 1.0},
            "pareto": members, "measured": [dict(m, front=True) for m in members], "baseline": None,
            "budget_violations": None}


AUDITED = [  # the auditor's members: search timing, and what the end of the run measured side by side
    _row(0, 0.80, 0.123, latency_final_ms=0.412, latency_default_ms=0.449, speedup_vs_default=0.449 / 0.412),
    _row(1, 0.85, 0.279, latency_final_ms=0.159, latency_default_ms=0.172, speedup_vs_default=0.172 / 0.159),
]


def test_report_front_table_puts_the_default_next_to_the_latency_of_the_same_rounds():
    report = render_markdown(_payload([dict(m) for m in AUDITED]))
    header, table = _table(report)
    for m in AUDITED:
        row = table[m["id"]]
        lat, default, speedup = _printed_ratio_matches(header, row)
        assert (lat, default) == (m["latency_final_ms"], m["latency_default_ms"])
        assert speedup == pytest.approx(default / lat, abs=0.006)
        # the search's timing is still shown, in a column of its own that says so
        search_col = next(i for i, h in enumerate(header) if "search" in h)
        assert row[search_col] == fmt_ms(m["latency_ms"])
    assert re.search(r"medians? of the same", report)  # the note says where the numbers come from


def test_report_shows_no_speedup_for_a_member_not_timed_side_by_side():
    m = _row(0, 0.8, 0.3, latency_default_ms=0.9)  # e.g. stage 1's default timing, compare_default off
    header, table = _table(render_markdown(_payload([m])))
    row = table["c0000"]
    assert row[header.index("tuned speedup")] == "—" and row[header.index("default schedules (ms)")] == "—"


# ---- selection after the run uses the final timing ----------------------------------------------------------------

def test_best_selects_on_the_final_side_by_side_latency(tmp_path):
    from nacos.joint.report import best_member

    a = _row(0, 0.9, 0.10, latency_final_ms=0.30)  # fast in its one search timing, slow when timed again
    b = _row(1, 0.8, 0.25, latency_final_ms=0.15)
    r = Result(_payload([a, b]), tmp_path)
    assert r.best().id == "c0000"
    assert r.best(latency_max_ms=0.2).id == "c0001"
    assert r.best(latency_max_ms=0.12) is None
    assert best_member(_payload([a, b], latency_max_ms=0.2))["id"] == "c0001"
    c = _row(2, 0.95, 0.12)  # never timed side by side: its search timing is all there is
    assert Result(_payload([a, b, c]), tmp_path).best(latency_max_ms=0.2).id == "c0002"


# ---- the command line's summary -----------------------------------------------------------------------------------

def test_cli_summary_prints_the_final_latency(tmp_path, monkeypatch, capsys):
    from nacos.cli import main
    from nacos.joint import api

    payload = _payload([dict(m) for m in AUDITED])
    monkeypatch.setattr(api, "_run_joint", lambda cfg, *a: payload)
    monkeypatch.setattr("nacos.joint.report.write_outputs", lambda payload, out: [])
    assert main(["optimize", "-o", str(tmp_path / "run"), "--quiet", "--budget-minutes", "0.2"]) == 0
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert "latency 0.412 ms" in lines["c0000"] and "latency 0.159 ms" in lines["c0001"]
    assert "latency 0.123 ms" not in lines["c0000"]
