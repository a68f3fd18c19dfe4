"""The GOS command line: ``nacos ops analyze MODEL.onnx`` (next to ``nacos ops OP``) and an end-to-end
``nacos gos`` run on a tiny model with a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ir.exporters import to_onnx
from nacos.cli import main
from operators.gos import examples


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("gos") / "tiny.onnx"
    to_onnx(examples.tiny_cnn(), path)
    return path


def test_ops_analyze_ranks_measured_ops(tiny_onnx, capsys):
    code, out, _ = run_cli(capsys, "ops", "analyze", tiny_onnx, "--json")
    assert code == 0
    info = json.loads(out)
    rows = info["ops"]
    assert info["latency_model"] == "measured" and rows[0]["rank"] == 1
    assert [r["share"] for r in rows] == sorted((r["share"] for r in rows), reverse=True)
    assert {"node", "op", "seconds", "share", "flops", "bytes", "gflops", "intensity", "rewrites", "why"} <= set(rows[0])
    convs = [r for r in rows if r["op"] == "conv"]
    assert len(convs) == 3 and all(r["source"] == "measured" and r["seconds"] > 0 for r in convs)
    assert any(r["rewrites"] for r in convs)


def test_ops_analyze_table_and_ops_still_work(tiny_onnx, capsys):
    code, out, _ = run_cli(capsys, "ops", "analyze", tiny_onnx, "--latency", "roofline")
    assert code == 0 and "share" in out and "conv3" in out and "GFLOP/s" in out
    code, out, _ = run_cli(capsys, "ops", "conv")
    assert code == 0 and out.startswith("conv:") and "Σ" in out
    code, _, err = run_cli(capsys, "ops", "analyze")
    assert code == 2 and "needs a model" in err
    code, _, err = run_cli(capsys, "ops", "conv", "extra.onnx")
    assert code == 2 and "only `nacos ops analyze" in err
    code, _, err = run_cli(capsys, "ops", "analyze", tiny_onnx.parent / "missing.onnx")
    assert code == 2 and "no such file" in err


def test_gos_bad_input_exits_2_and_writes_nothing(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "gos", tiny_onnx, "--dataset", "no-such-data", "-o", out)
    assert code == 2 and "unknown dataset" in err and not out.exists()
    wrong = tmp_path / "wrong.onnx"
    to_onnx(examples.tiny_cnn(in_shape=(1, 3, 16, 16)), wrong)
    code, _, err = run_cli(capsys, "gos", wrong, "-o", out)
    assert code == 2 and "does not fit" in err and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, err = run_cli(capsys, "gos", tiny_onnx, "-o", out)
    assert code == 2 and "not empty" in err
    code, _, err = run_cli(capsys, "gos", tiny_onnx, "-o", tmp_path / "new", "--finetune-steps", "0")
    assert code == 2 and "--finetune-steps" in err and not (tmp_path / "new").exists()


def test_gos_end_to_end_smoke(tiny_onnx, tmp_path, capsys):
    """Tiny budget (≈15 s here, so not marked slow): a 1-epoch pretrain, 2 generations of 3, 3-step fine-tunes;
    then the artifacts (compiled and ONNX agree) and the report."""
    import onnxruntime as ort

    import nacos

    out = tmp_path / "gos"
    code, stdout, err = run_cli(capsys, "gos", tiny_onnx, "--dataset", "digits", "-o", out, "--pretrain-epochs", 1,
                                "--generations", 2, "--population", 3, "--max-ops", 2, "--finetune-epochs", 1,
                                "--finetune-steps", 3, "--final-epochs", 0, "--rounds", 2, "--latency", "roofline")
    assert code == 0, err
    assert "Pareto members" in stdout
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["pareto"] and pareto["original"]["test_accuracy"] > 0
    report = (out / "report.md").read_text()
    assert "Original instruction" in report and "Replacement instructions" in report
    member = pareto["pareto"][0]
    assert member["speedup"] > 0 and set(member["choices"]) <= {g["node"] for g in pareto["genes"]}
    r = member["speedup_rounds"]   # fastest-round speedup, with the per-round ratios' spread
    assert r["min"] <= r["median"] <= r["max"] and member["measured_s"] <= member["median_s"]
    assert isinstance(pareto["dropped"], list) and isinstance(pareto["timing"]["busy"], bool)
    x = np.random.default_rng(0).standard_normal((1, 1, 16, 16)).astype(np.float32)
    compiled = nacos.Compiled.load(out / member["artifacts"]["compiled"])
    sess = ort.InferenceSession(str(out / member["artifacts"]["onnx"]), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(compiled(x)[0], ref, rtol=1e-4, atol=1e-4)


def test_a_database_without_the_models_nchw_kernels_is_warned_about(tmp_path):
    from operators.gos.latency import Measured
    from schedules.database import Database

    Database(tmp_path / "blocked.db").close()  # e.g. tuned in the default blocked layout: no NCHW kernels
    model = Measured(db=str(tmp_path / "blocked.db"))
    graph = examples.tiny_cnn()
    with pytest.warns(UserWarning, match="--layout nchw"):
        first = model.kernels(graph)
    assert first and all(k.source == "measured" for k in first)


def test_nacos_gos_stays_the_function():
    # the pipeline's module was nacos/gos.py: importing it replaced the package attribute nacos.gos (the function)
    # with the module, so the second nacos.gos(...) raised "'module' object is not callable"
    import subprocess
    import sys

    code = ("import nacos, nacos.operator_search, nacos.cli; f = nacos.gos; import nacos; "
            "assert callable(nacos.gos) and nacos.gos is f and nacos.gos.__module__ == 'nacos.operator_search'")
    subprocess.run([sys.executable, "-c", code], check=True)
