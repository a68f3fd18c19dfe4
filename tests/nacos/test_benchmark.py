"""``nacos bench`` and the TVM baselines: the bench writes its JSON and chart, bad input exits 2 with one line,
and TVM Relax (untuned, and MetaSchedule-tuned in the slow group) computes what onnxruntime computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nacos.cli import main
from tests.conftest import ort_run


@pytest.fixture(scope="module")
def small_cnn_onnx(tmp_path_factory):
    """small_cnn at 32×32 as an ONNX file (seeded weights, random batch norms), and its input."""
    from nacos.benchmark import zoo_model

    _, x, data = zoo_model("small_cnn", 32, seed=0)
    path = tmp_path_factory.mktemp("bench") / "small_cnn.onnx"
    path.write_bytes(data)
    return path, x.numpy()


def test_bench_onnx_file_writes_json_and_png(small_cnn_onnx, tmp_path, capsys):
    path, _ = small_cnn_onnx
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["bench", str(path), "--json", str(out_json), "--plot", str(out_png), "--rounds", "3"])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out_json.read_text())
    assert {"model", "inputs", "threads", "runtimes", "nacos", "notes", "machine", "graph_hash"} <= set(result)
    assert result["inputs"] == {"input": [1, 3, 32, 32]}
    runtimes = result["runtimes"]
    assert {"nacos", "onnxruntime", "relax-untuned"} <= set(runtimes)
    assert "pytorch" not in runtimes  # an ONNX file has no torch module: said in the notes and the output
    assert any("PyTorch" in n for n in result["notes"]) and "PyTorch eager: not measured" in printed
    for name, r in runtimes.items():
        assert r["matches"], name
        assert r["max_abs_err_vs_onnxruntime"] < 1e-4
        assert r["median_ms"] > 0 and r["ratio_to_onnxruntime"] > 0 and r["rounds"] >= 3
    assert runtimes["onnxruntime"]["ratio_to_onnxruntime"] == pytest.approx(1.0)
    assert "×ORT" in printed and "nacos" in printed
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 5000


def test_bench_isolated_times_each_runtime_in_its_own_process(tmp_path, capsys):
    """``--isolated``: nacos, onnxruntime and PyTorch timed again, each in a worker process with the others
    stopped; the table gets the isolated medians and ratios next to the in-process ones."""
    out_json = tmp_path / "r.json"
    code = main(["bench", "small_cnn@32", "--isolated", "--no-relax", "--rounds", "3", "--threads", "1",
                 "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert code == 0
    runtimes = json.loads(out_json.read_text())["runtimes"]
    for name in ("nacos", "onnxruntime", "pytorch"):
        assert runtimes[name]["isolated_median_ms"] > 0 and runtimes[name]["isolated_rounds"] >= 3, name
    assert runtimes["onnxruntime"]["isolated_ratio_to_onnxruntime"] == pytest.approx(1.0)
    assert runtimes["nacos"]["isolated_ratio_to_onnxruntime"] > 0
    assert "isolated" in printed  # the column (its header may wrap in a narrow terminal)


def test_tuned_bench_times_the_default_schedules_beside_the_tuned_ones(tmp_path):
    """With a database, ``nacos-untuned`` (same graph, default schedules) is timed in the same rounds."""
    out_json = tmp_path / "r.json"
    code = main(["bench", "small_cnn@32", "--trials", "3", "--db", str(tmp_path / "t.db"), "--no-relax",
                 "--rounds", "3", "--threads", "1", "--json", str(out_json)])
    assert code == 0
    runtimes = json.loads(out_json.read_text())["runtimes"]
    assert runtimes["nacos-untuned"]["matches"] and runtimes["nacos-untuned"]["median_ms"] > 0
    assert runtimes["nacos"]["matches"] and runtimes["nacos"]["rounds"] == runtimes["nacos-untuned"]["rounds"]


def test_isolated_worker_that_cannot_build_is_a_note_not_a_crash():
    from nacos.bench_isolated import measure_isolated

    times, notes = measure_isolated("small_cnn@32", ["onnxruntime", "no-such-runtime"], threads=1, rounds=3,
                                    budget_s=5)
    assert set(times) == {"onnxruntime"} and times["onnxruntime"]["median_s"] > 0
    assert len(notes) == 1 and "no-such-runtime" in notes[0]


class _ExitsWhenUnpickled:
    """Pickles fine here; unpickling it in the worker runs os._exit(3): the worker dies before it builds."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_isolated_worker_that_dies_while_building_is_a_note_not_a_hang():
    import signal

    from nacos.bench_isolated import measure_isolated

    def hung(*_):
        raise AssertionError("measure_isolated waited for a dead worker")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        times, notes = measure_isolated("small_cnn@32", ["onnxruntime"], threads=1, seed=_ExitsWhenUnpickled(),
                                        rounds=3, budget_s=5)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert times == {} and len(notes) == 1 and "died" in notes[0] and "exit code 3" in notes[0], notes


@pytest.mark.parametrize("args, message", [
    (["bench", "missing.onnx"], "no such file"),
    (["bench", "no_such_model@32"], "unknown zoo model"),
    (["bench", "resnet18@big"], "integer size"),
    (["bench", "tiny_attention@32"], "only to image models"),
    (["bench", "small_cnn@32", "--trials", "-1"], "negative"),
    (["bench", "small_cnn@32", "--threads", "0"], "at least 1"),
    (["bench", "small_cnn@32", "--db", "missing.db"], "no such tuning database"),
])
def test_bench_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("nacos bench: error:")


def test_bench_not_an_onnx_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00not a model")
    assert main(["bench", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_relax_untuned_matches_onnxruntime():
    import torch

    from nacos.baselines import relax_untuned
    from nacos.benchmark import onnx_bytes_of

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.LayerNorm(64),
                                 torch.nn.Linear(64, 10), torch.nn.Softmax(-1)).eval()
    x = torch.randn(4, 32)
    data = onnx_bytes_of(module, (x,))
    run = relax_untuned(data)
    got = run(x.numpy())
    ref = ort_run(data, x.numpy())
    assert len(got) == len(ref) == 1 and got[0].shape == (4, 10)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_relax_metaschedule_two_trials_matches_onnxruntime(small_cnn_onnx, tmp_path):
    from nacos.baselines import relax_metaschedule

    path, x = small_cnn_onnx
    data = path.read_bytes()
    run = relax_metaschedule(data, trials=2, work_dir=tmp_path / "ms")
    assert run.info["tasks"] > 0 and run.info["records"] >= 1 and run.tuning_seconds > 0
    np.testing.assert_allclose(run(x)[0], ort_run(data, x)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_metaschedule_tune_primfunc_two_trials(tmp_path):
    from nacos.baselines import metaschedule_tune_primfunc
    from schedules.tvm_env import make_target, tvm

    n = 64
    a = tvm.te.placeholder((n, n), name="A")
    b = tvm.te.placeholder((n, n), name="B")
    k = tvm.te.reduce_axis((0, n), name="k")
    c = tvm.te.compute((n, n), lambda i, j: tvm.te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = tvm.te.create_prim_func([a, b, c])
    mod, seconds = metaschedule_tune_primfunc(func, trials=2, work_dir=tmp_path / "ms")
    assert seconds > 0
    lib = tvm.compile(mod, make_target())
    rng = np.random.default_rng(0)
    an, bn = rng.standard_normal((n, n)).astype("float32"), rng.standard_normal((n, n)).astype("float32")
    args = [tvm.runtime.tensor(v) for v in (an, bn, np.zeros((n, n), "float32"))]
    lib["main"](*args)
    np.testing.assert_allclose(args[2].numpy(), an @ bn, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["onnx", "torch"])
def test_mobilevit_xxs_32_compiles_and_matches_onnxruntime(frontend):
    """The hybrid imports through both frontends (its 1×1 layer5 map is resized to 2×2 for the patches)."""
    import onnx

    import nacos
    from nacos.benchmark import zoo_model

    module, x, data = zoo_model("mobilevit_xxs", 32)
    graph = nacos.load(onnx.load_from_string(data)) if frontend == "onnx" else nacos.load(module, (x,))
    got = nacos.compile(graph)(x.numpy())[0]
    np.testing.assert_allclose(got, ort_run(data, x.numpy())[0], rtol=1e-4, atol=1e-5)
