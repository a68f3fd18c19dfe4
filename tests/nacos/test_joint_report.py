"""``nacos optimize``'s outputs from a synthetic payload: pareto.json round-trips, pareto.png is a real image,
report.md names every front member, the baseline and the budget verdict. No compile, no search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nacos.joint.report import best_member, dominated, fmt_ms, render_markdown, write_outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def member(i: int, acc: float, lat: float, front: bool, default: float | None = None,
           final: float | None = None) -> dict:
    cid = f"c{i:04d}"
    return {"id": cid, "archid": f"arch{i}", "arch": {"depth": 2 + i % 3, "width": 16 * (1 + i % 2)},
            "accuracy": acc, "val_accuracy": acc - 0.01, "latency_ms": lat, "latency_predicted_ms": lat * 1.1,
            "latency_final_ms": final, "latency_default_ms": default,
            "speedup_vs_default": default / final if default and final else None, "params": 10_000 * (i + 1),
            "memory_bytes": 400_000 * (i + 1),
            "flops": 2_000_000 * (i + 1), "tuned_kernels": 3, "kernels": 4,
            "schedules": [{"kernel": "fused_conv2d_relu", "workload": "conv2d[1,16,32,32]", "point": "tile=4x8"}],
            "artifact": f"members/{cid}" if front else None,
            "onnx": f"members/{cid}/model.onnx" if front else None, "front": front}


def make_payload(baseline: bool = False, violations: bool = False, latency_max: float | None = 2.0) -> dict:
    measured = [member(1, 0.80, 0.5, True, default=1.2, final=0.55), member(2, 0.86, 1.5, True, default=3.1, final=1.4),
                member(3, 0.91, 40.0, True), member(4, 0.78, 2.5, False), member(5, 0.84, 8.0, False)]
    payload = {
        "version": 1, "method": "joint",
        "config": {"space": "mbv2_small", "dataset": "digits", "target": "llvm -mcpu=znver3", "fidelity": "train",
                   "budget_minutes": 30.0, "latency_max_ms": latency_max, "memory_max_mb": None, "seed": 0,
                   "population": 16, "extra": {"mutation": 0.2}},
        "stats": {"evaluations": 120, "generations": 8, "measured": 5, "kernel_measurements": 640,
                  "seconds": 1810.5, "latency_model": {"kendall_tau": 0.82, "mape": 0.114, "n": 5},
                  "hypervolume": 0.6123},
        "pareto": [m for m in measured if m["front"]], "measured": measured,
        "baseline": None, "budget_violations": None,
    }
    if baseline:
        b_measured = [member(11, 0.79, 0.9, True), member(12, 0.85, 3.0, True), member(13, 0.70, 4.0, False)]
        payload["baseline"] = {"method": "two-stage", "pareto": [m for m in b_measured if m["front"]],
                               "measured": b_measured, "stats": {"hypervolume": 0.5012}}
    if violations:
        payload["config"]["latency_max_ms"] = 0.1
        payload["budget_violations"] = {"message": "No candidate met latency ≤ 0.1 ms; the fastest took 0.5 ms.",
                                        "closest": [measured[0], measured[3]]}
    return payload


@pytest.mark.parametrize("baseline,violations", [(False, False), (True, False), (False, True), (True, True)])
def test_write_outputs(tmp_path, baseline, violations):
    payload = make_payload(baseline, violations)
    paths = write_outputs(payload, tmp_path / "out")
    assert [p.name for p in paths] == ["pareto.json", "pareto.png", "report.md"]
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths)

    png = paths[1].read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000

    assert json.loads(paths[0].read_text()) == payload

    report = paths[2].read_text()
    for m in payload["pareto"]:
        assert f"| {m['id']} |" in report
    assert "members/c0001" in report and "nacos.Compiled.load(" in report
    assert "Kendall τ 0.820" in report and "MAPE 11.4%" in report
    if violations:
        assert "## Budget not met" in report and payload["budget_violations"]["message"] in report
        assert "| c0004 |" in report  # a closest candidate outside the front
    else:
        assert "Budget not met" not in report
    if baseline:
        assert "## Against the two-stage baseline" in report
        assert "0.6123" in report and "0.5012" in report
        assert all(m["id"] in report for m in payload["baseline"]["pareto"])
    else:
        assert "two-stage baseline" not in report


def test_front_table_values_and_best_member():
    payload = make_payload()
    report = render_markdown(payload)
    # sorted by latency, accuracy as %, the final latency with the default of the same rounds next to it and
    # tuned speedup = default / final; then the search's timing and the prediction of it
    assert report.index("| c0001 |") < report.index("| c0002 |") < report.index("| c0003 |")
    assert "| c0002 | 86.0% | 85.0% | 1.40 | 3.10 | 2.21× | 1.50 | 1.65 |" in report
    assert "| c0003 | 91.0% | 90.0% | — | — | — | 40.0 | 44.0 |" in report  # not timed at the end: search only
    assert best_member(payload)["id"] == "c0002"  # c0003 is more accurate but over the 2 ms budget
    assert "**c0002**" in report and 'nacos.Compiled.load("members/c0002")' in report
    assert best_member(make_payload(latency_max=None))["id"] == "c0003"
    assert best_member(make_payload(violations=True)) is None
    tight = make_payload()
    tight["config"]["memory_max_mb"] = 1.0  # MiB, as the optimizer's budget: c0002 holds 1.2e6 bytes = 1.14 MiB
    assert best_member(tight)["id"] == "c0001" and "memory ≤ 1 MB" in render_markdown(tight)


def test_dominance_and_formatting():
    payload = make_payload(baseline=True)
    # c0011 (0.79 @ 0.9) is beaten by c0001 (0.80 @ 0.5), c0012 (0.85 @ 3.0) by c0002 (0.86 @ 1.5); c0011 beats
    # no joint member (c0001 is faster and more accurate, the rest are more accurate)
    assert dominated(payload["pareto"], payload["baseline"]["pareto"]) == 2
    assert dominated(payload["baseline"]["pareto"], payload["pareto"]) == 0
    assert [fmt_ms(x) for x in (0.04123, 0.5, 1.234, 12.34, 1234.0, None)] == \
        ["0.0412", "0.500", "1.23", "12.3", "1234", "—"]


def test_empty_front_and_numpy_values(tmp_path):
    payload = make_payload()
    payload["pareto"], payload["measured"], payload["config"]["latency_max_ms"] = [], [], None
    payload["stats"].pop("latency_model")
    payload["stats"]["seconds"] = np.float32(12.5)  # optimizers hand back numpy scalars
    paths = write_outputs(payload, tmp_path)
    assert paths[1].read_bytes()[:8] == PNG_MAGIC
    assert json.loads(paths[0].read_text())["stats"]["seconds"] == 12.5
    assert "front is empty" in paths[2].read_text()


def test_a_failed_measurement_and_a_nan_are_drawn_and_written_safely(tmp_path):
    payload = make_payload()
    failed = dict(member(6, 0.0, 0.0, False), latency_ms=None, accuracy=None, val_accuracy=None,
                  error="build: failed")
    payload["measured"].append(failed)  # its None latency crashed the plot, and every --resume with it
    payload["stats"]["latency_model"]["kendall_tau"] = float("nan")
    paths = write_outputs(payload, tmp_path)
    saved = json.loads(paths[0].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in pareto.json"))
    assert saved["stats"]["latency_model"]["kendall_tau"] is None
    assert paths[1].read_bytes()[:8] == PNG_MAGIC and paths[2].is_file()


def test_the_legend_covers_no_point(tmp_path, monkeypatch):
    # inside the axes ("lower right") it covered the dominated points, which lie below and right of the front
    import matplotlib.pyplot as plt

    from nacos.joint.report import plot_pareto

    seen = {}
    close = plt.close

    def keep(fig):
        ax = fig.axes[0]
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        points = [ax.transData.transform(o) for c in ax.collections for o in c.get_offsets()]
        seen["covered"] = [tuple(p) for p in points if legend.contains(*p)]
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    payload = make_payload(baseline=True)
    payload["measured"].append(member(6, 0.60, 35.0, False))  # slow and poor: the lower right corner
    plot_pareto(payload, tmp_path / "p.png")
    assert seen["covered"] == []
