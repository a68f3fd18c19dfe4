"""The CLI: inspect's FLOPs agree with an independent count; bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nacos.cli import main
from tests.conftest import LIGHT_MODELS


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_flops_agree_with_torch_flop_counter(zoo_onnx, capsys):
    """torch.utils.flop_counter counts conv/matmul as 2·MACs; nacos counts every op (relu, add, pool, bias)
    from the instructions, so totals may differ by those elementwise FLOPs: within 1%."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nacos import zoo

    path, x = zoo_onnx["resnet18"]
    code, out, _ = run_cli("inspect", str(path), "--json", capsys=capsys)
    assert code == 0
    info = json.loads(out)
    torch.manual_seed(0)
    model = zoo.resnet18().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.from_numpy(x))
    reference = counter.get_total_flops()
    assert abs(info["totals"]["flops"] - reference) / reference < 0.01
    # the export folded each batch norm into its conv (as nacos.load would): folding merges each BN's scale and shift into its conv's bias: one parameter per channel fewer
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert info["totals"]["params"] == sum(p.numel() for p in model.parameters()) - bn_channels
    assert all({"op", "flops", "params", "output"} <= set(r) for r in info["nodes"])


def test_inspect_table(zoo_onnx, capsys):
    path, _ = zoo_onnx["small_cnn"]
    code, out, _ = run_cli("inspect", str(path), capsys=capsys)
    assert code == 0 and "conv" in out and "total" in out


def test_ops_lists_every_op_with_its_instruction(capsys):
    from ir.registry import all_ops

    code, out, _ = run_cli("ops", "--json", capsys=capsys)
    rows = json.loads(out)
    assert code == 0 and {r["op"] for r in rows} == set(all_ops())
    conv = next(r for r in rows if r["op"] == "conv")
    assert "Σ" in conv["instruction"] and "W[k, c, r0, r1]" in conv["instruction"]


def test_compile_writes_an_artifact(zoo_onnx, tmp_path, capsys):
    path, _ = zoo_onnx["small_cnn"]
    out_dir = tmp_path / "out"
    code, out, _ = run_cli("compile", str(path), "-o", str(out_dir), "--json", capsys=capsys)
    assert code == 0
    assert {p.name for p in out_dir.iterdir()} == {"model.so", "nacos.json", "summary.json"}
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["kernels"] >= 1 and summary["totals"]["flops"] > 0


def _unsupported_model(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="ok"),
                               helper.make_node("Det", ["r"], ["y"], name="the_det")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("case", ["truncated", "unsupported", "missing", "not_onnx"])
@pytest.mark.parametrize("command", ["inspect", "compile"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, command, zoo_onnx, tmp_path):
    model = tmp_path / "model.onnx"
    if case == "truncated":
        data = zoo_onnx["small_cnn"][0].read_bytes()
        model.write_bytes(data[: len(data) // 2])
    elif case == "unsupported":
        _unsupported_model(model)
    elif case == "not_onnx":
        model = tmp_path / "model.txt"
        model.write_text("hello")
    out_dir = tmp_path / "out"
    args = [command, str(model)] + (["-o", str(out_dir)] if command == "compile" else [])
    proc = subprocess.run([sys.executable, "-m", "nacos.cli", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nacos {command}: error:"), proc.stderr
    if case == "unsupported":
        assert "the_det" in lines[0] and "Det" in lines[0]
    if case == "missing":
        assert "no such file" in lines[0]
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([model.name] if model.exists() else [])


def test_inspect_light_model_from_onnx_wheel(capsys):
    code, out, _ = run_cli("inspect", str(LIGHT_MODELS / "light_squeezenet.onnx"), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["totals"]["flops"] > 1e8


def test_a_closed_pipe_and_a_bad_setting_end_without_a_traceback(zoo_onnx, tmp_path):
    # `nacos ops | head -1` ended in a BrokenPipeError traceback; NACOS_LAYOUT=bogus in a full traceback
    import os

    proc = subprocess.run(f"{sys.executable} -m nacos.cli ops | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and proc.stdout.count("\n") == 1
    path, _ = zoo_onnx["small_cnn"]
    env = dict(os.environ, NACOS_LAYOUT="bogus")
    proc = subprocess.run([sys.executable, "-m", "nacos.cli", "compile", str(path), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "nacos compile: error: NACOS_LAYOUT='bogus': choose one of blocked, nchw")


def test_a_table_written_to_a_file_keeps_its_columns(zoo_onnx, tmp_path, monkeypatch):
    # rich fitted tables to 80 columns when stdout was not a terminal: shapes came out as "1x64x1…"
    import os

    path, _ = zoo_onnx["resnet18"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with open(tmp_path / "table.txt", "w") as f:
        subprocess.run([sys.executable, "-m", "nacos.cli", "inspect", str(path)], stdout=f, env=env, check=True,
                       timeout=300)
    text = (tmp_path / "table.txt").read_text()
    assert "…" not in text and "/conv1/Conv_output_0" in text and "1x64x32x32" in text


def test_warnings_are_one_line():
    # a warning printed as "path/file.py:84: UserWarning: …" plus the source line
    code = textwrap.dedent("""
        import warnings
        import nacos.cli as cli

        def ops(args):
            warnings.warn("the database holds none of this model's kernels")
            return 0

        cli.cmd_ops = ops
        raise SystemExit(cli.main(["ops"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "nacos ops: warning: the database holds none of this model's kernels\n"
