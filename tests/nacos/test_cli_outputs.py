"""Where the CLI writes, and what it reads besides the model: checked before the work, one line and exit 2 when
wrong, and nothing destroyed or half-written (each case here once failed with a traceback, or worse)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nacos.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    import torch

    from tests.conftest import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(net, (torch.randn(1, 3, 8, 8),), path)
    return path


def _bad(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"nacos {args[0]}: error:"), err
    return err[0]


def test_force_never_deletes_the_current_folder_or_the_input(tiny, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    model = work / "tiny.onnx"
    model.write_bytes(tiny.read_bytes())
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    assert "current folder" in _bad(capsys, "compile", "tiny.onnx", "-o", ".", "--force")
    assert "current folder" in _bad(capsys, "compile", "tiny.onnx", "-o", "..", "--force")
    monkeypatch.chdir(tmp_path)
    assert "holds the input" in _bad(capsys, "compile", str(model), "-o", str(work), "--force")
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "tiny.onnx"]


def test_compile_creates_missing_parents_and_an_ordinary_folder(tiny, tmp_path, capsys):
    out = tmp_path / "out" / "deeper" / "tiny"  # the README's `-o out/resnet50`, with no out/ yet
    old = os.umask(0o022)
    try:
        assert main(["compile", str(tiny), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert {p.name for p in out.iterdir()} == {"model.so", "nacos.json", "summary.json"}
    assert out.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no temporary folder left


def test_outputs_that_are_files_or_links_are_refused_before_compiling(tiny, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a folder" in _bad(capsys, "compile", str(tiny), "-o", str(afile), "--force")
    assert "not a folder" in _bad(capsys, "compile", str(tiny), "-o", str(afile / "sub"))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert "symbolic link" in _bad(capsys, "compile", str(tiny), "-o", str(tmp_path / "link"), "--force")
    assert afile.read_text() == "x" and (tmp_path / "link").is_symlink()


def test_a_database_that_is_not_one_is_a_one_line_error_and_stays_untouched(tiny, tmp_path, capsys):
    text, empty = tmp_path / "notdb.txt", tmp_path / "empty.db"
    text.write_text("not a database")
    empty.write_bytes(b"")
    for db in (text, empty):
        assert "tuning database" in _bad(capsys, "compile", str(tiny), "-o", str(tmp_path / "o"), "--db", str(db))
        assert "tuning database" in _bad(capsys, "ops", "analyze", str(tiny), "--db", str(db))
    assert "tuning database" in _bad(capsys, "tune", str(tiny), "--trials", "2", "--db", str(text))
    assert "tuning database" in _bad(capsys, "tune", str(tiny), "--trials", "2", "--db", str(tmp_path))
    assert text.read_text() == "not a database" and empty.stat().st_size == 0
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("shape", ["input=-1,3,8,8", "input=0,3,8,8", "=1,3,8,8"])
def test_input_shapes_need_positive_dimensions(tiny, shape, capsys):
    assert "at least 1" in _bad(capsys, "inspect", str(tiny), "--input-shape", shape)


def test_input_shapes_of_the_api_need_positive_dimensions(tiny):
    import nacos
    from ir.frontends import ModelImportError

    name = nacos.load(tiny).inputs[0]
    with pytest.raises(ModelImportError, match="at least 1"):
        nacos.load(tiny, input_shapes={name: (-1, 3, 8, 8)})


def test_tune_checks_its_options_before_measuring(tiny, tmp_path, capsys):
    db = str(tmp_path / "t.db")
    assert "--batch-size" in _bad(capsys, "tune", str(tiny), "--trials", "2", "--db", db, "--batch-size", "0")
    assert "--target" in _bad(capsys, "tune", str(tiny), "--trials", "2", "--db", db, "--target", "[1, 2]")
    assert "nonsense" in _bad(capsys, "tune", str(tiny), "--trials", "2", "--db", db,
                              "--target", '{"kind": "nonsense"}')
    assert not Path(db).exists()


def test_tune_api_rejects_a_negative_budget(tiny, tmp_path):
    import nacos

    with pytest.raises(ValueError, match="negative"):
        nacos.tune(nacos.load(tiny), trials=-5, db=tmp_path / "t.db")


def test_bench_checks_where_it_will_write_before_running(tiny, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = _bad(capsys, "bench", str(tiny), "--no-relax", "--rounds", "1", "--json", str(afile / "r.json"))
    assert "--json" in err and "cannot write" in err
    assert "--plot" in _bad(capsys, "bench", str(tiny), "--no-relax", "--plot", str(tmp_path))


def test_a_loaded_artifact_exports_again_and_a_damaged_one_is_refused(tiny, tmp_path):
    import nacos

    graph = nacos.load(tiny)
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    first = nacos.compile(graph).export(tmp_path / "a")
    again = nacos.Compiled.load(first).export(tmp_path / "b")  # used to fail: "does not support SaveToBytes"
    np.testing.assert_allclose(nacos.Compiled.load(again)(x)[0], nacos.Compiled.load(first)(x)[0])
    damaged = tmp_path / "c"  # a copy no model of this process has loaded (changing a loaded library crashes)
    shutil.copytree(again, damaged)
    lib = damaged / "model.so"
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])  # truncated: loading it raised SIGBUS
    with pytest.raises(ValueError, match="damaged"):
        nacos.Compiled.load(damaged)
    (damaged / "nacos.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a valid nacos artifact"):
        nacos.Compiled.load(damaged)
    (damaged / "nacos.json").write_text(json.dumps({"version": 1}))
    with pytest.raises(ValueError, match="lacks"):
        nacos.Compiled.load(damaged)
    # exporting over a folder whose library this process runs replaces the file, never rewrites it in place
    reloaded = nacos.Compiled.load(first)
    nacos.compile(graph).export(first)
    np.testing.assert_allclose(reloaded(x)[0], nacos.Compiled.load(first)(x)[0], rtol=1e-5)


def test_optimize_force_never_deletes_the_current_folder(tmp_path, monkeypatch):
    from nacos.joint.api import DB_NAME, OptimizeError, _check_out

    (tmp_path / DB_NAME).write_text("a previous run")
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptimizeError, match="current folder"):
        _check_out(Path("."), resume=False, force=True)
    assert (tmp_path / "notes.txt").exists()


def test_an_input_shape_given_twice_is_an_error(tiny, capsys):
    assert "twice" in _bad(capsys, "inspect", str(tiny), "--input-shape", "input=1,3,8,8",
                           "--input-shape", "input=2,3,8,8")


def test_benchmark_needs_at_least_one_call_and_torch_inputs_may_be_a_list(tiny):
    import torch

    import nacos

    model = nacos.compile(nacos.load(tiny))
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="at least 1"):
        model.benchmark(x, number=0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    graph = nacos.load(net, [torch.zeros(1, 3, 8, 8)])  # a list of inputs, like the tuple form
    assert len(graph.inputs) == 1
