"""Reports are strict JSON: a failed candidate's infinite latency or a NaN statistic is written as null."""

from __future__ import annotations

import json

import numpy as np

from nacos.jsonsafe import dumps


def _strict(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_non_finite_numbers_are_null_and_the_rest_is_unchanged():
    text = dumps({"lat": float("inf"), "tau": float("nan"), "rows": [1.5, -float("inf"), (2, "x")],
                  "arr": np.array([1.0, 2.0]).tolist(), "path": object.__name__}, indent=1)
    assert json.loads(text, parse_constant=_strict) == {
        "lat": None, "tau": None, "rows": [1.5, None, [2, "x"]], "arr": [1.0, 2.0], "path": "object"}


def test_the_gos_report_writes_strict_json(tmp_path):
    from operators.gos.report import write_report

    payload = {"pareto": [], "evaluations": [{"key": "conv=dwsep", "latency_s": float("inf"), "error": "boom"}]}
    try:
        write_report(tmp_path, payload, {})
    except (KeyError, TypeError):  # the markdown wants a full payload; pareto.json is written first
        pass
    saved = json.loads((tmp_path / "pareto.json").read_text(), parse_constant=_strict)
    assert saved["evaluations"][0]["latency_s"] is None
