"""Whole models no one on the team designed import, compile with default schedules, and match onnxruntime.

Tolerance: max |nacos − onnxruntime| ≤ 1e-4 + 1e-4·max|onnxruntime| (fp32; summation order differs).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

import nacos
from nacos.compiled import InputError
from tests.conftest import LIGHT_MODELS, conv_chain, ort_run


def assert_close(got, want):
    bound = 1e-4 + 1e-4 * float(np.max(np.abs(want)))
    err = float(np.max(np.abs(got - want)))
    assert err <= bound, f"max abs error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("name", ["small_cnn", "tiny_attention", "resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_zoo_model_matches_onnxruntime(zoo_onnx, name):
    path, x = zoo_onnx[name]
    compiled = nacos.compile(nacos.load(path))
    (want,) = ort_run(path.read_bytes(), x)
    (got,) = compiled(x)
    assert got.shape == want.shape
    assert_close(got, want)


# models shipped inside the onnx wheel (opset 9, real architectures, constant weights)
LIGHT_FAST = ["light_squeezenet", "light_bvlc_alexnet", "light_zfnet512", "light_shufflenet"]
LIGHT_SLOW = ["light_resnet50", "light_vgg19", "light_inception_v1", "light_inception_v2", "light_densenet121"]


def _light(name: str):
    path = LIGHT_MODELS / f"{name}.onnx"
    model = onnx.load(str(path))
    init = {i.name for i in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in init][0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    return path, x


def _check_light(name):
    path, x = _light(name)
    compiled = nacos.compile(nacos.load(path))
    (want,) = ort_run(path.read_bytes(), x)
    (got,) = compiled(x)
    assert_close(got, want)


@pytest.mark.parametrize("name", LIGHT_FAST)
def test_shipped_onnx_model_matches_onnxruntime(name):
    _check_light(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_SLOW)
def test_shipped_onnx_model_matches_onnxruntime_slow(name):
    _check_light(name)


def test_wrong_inputs_are_one_line_errors(zoo_onnx):
    path, x = zoo_onnx["small_cnn"]
    compiled = nacos.compile(nacos.load(path))
    with pytest.raises(InputError, match=r"input 'input' expects shape \[1, 3, 32, 32\], got \[1, 3, 16, 16\]"):
        compiled(np.zeros((1, 3, 16, 16), "float32"))
    with pytest.raises(InputError, match="takes 1 input"):
        compiled(x, x)
    with pytest.raises(InputError, match="expects dtype float32"):
        compiled(x.astype(bool))


def test_artifact_reloads_in_a_fresh_process_with_only_tvm_and_numpy(zoo_onnx, tmp_path):
    path, x = zoo_onnx["small_cnn"]
    compiled = nacos.compile(nacos.load(path))
    compiled.export(tmp_path / "art")
    np.save(tmp_path / "x.npy", x)
    (want,) = compiled(x)
    script = textwrap.dedent(f"""
        import sys, json, numpy as np, tvm
        from tvm import relax
        art = {str(tmp_path / 'art')!r}
        meta = json.load(open(art + "/nacos.json"))
        vm = relax.VirtualMachine(tvm.runtime.load_module(art + "/model.so"), tvm.cpu())
        x = np.load({str(tmp_path / 'x.npy')!r})
        y = vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
        np.save({str(tmp_path / 'y.npy')!r}, y)
        print("nacos" in sys.modules, "onnx" in sys.modules, meta["inputs"][0]["shape"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["False", "False"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-6, atol=1e-6)
    # and through nacos' own loader
    again = nacos.Compiled.load(tmp_path / "art")
    np.testing.assert_allclose(again(x)[0], want, rtol=1e-6, atol=1e-6)


def test_load_rejects_a_missing_artifact(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a nacos artifact"):
        nacos.Compiled.load(tmp_path)


@pytest.mark.parametrize("layout", ["nchw", "blocked"])
def test_intermediate_buffers_are_reused(layout):
    """Relax's static memory planning (in the compile pipeline) gives a chain of 8 conv kernels a few storages,
    not one per intermediate: read from the VM executable's instructions."""
    model = nacos.compile(conv_chain(8), layout=layout)
    code = model._module.as_text().splitlines()
    storages = sum("call  vm.builtin.alloc_storage" in line for line in code)
    tensors = sum("call  vm.builtin.alloc_tensor" in line for line in code)
    assert tensors == len(model.kernels) >= 8
    assert 1 <= storages <= 3  # two ping-pong intermediates and the output


def test_reshapes_are_views_not_kernels():
    """A lone reshape/flatten of a computed tensor becomes a Relax reshape (the VM's zero-copy view), not a
    kernel that copies the tensor; one fused into an elementwise epilogue stays a kernel."""
    from ir.graph import GraphBuilder

    rng = np.random.default_rng(0)
    b = GraphBuilder("views")
    x = b.input("x", (2, 8, 6))
    r = b.op("reshape", b.op("relu", x), shape=(2, 6, 8))
    t = b.op("transpose", r, perm=(0, 2, 1))
    f = b.op("sigmoid", b.op("flatten", b.op("relu", t), axis=1))
    model = nacos.compile(b.build([f]))
    ops = [k.ops for k in model.kernels]
    assert ("reshape",) not in ops and all("reshape" not in k for k in ops)
    assert ("flatten", "sigmoid") in ops  # not a lone view: copied inside its kernel
    code = model._module.as_text()
    assert "vm.builtin.reshape" in code
    xv = rng.standard_normal((2, 8, 6)).astype("float32")
    want = 1 / (1 + np.exp(-np.maximum(np.maximum(xv, 0).reshape(2, 6, 8).transpose(0, 2, 1), 0).reshape(2, -1)))
    np.testing.assert_allclose(model(xv)[0], want, rtol=1e-5, atol=1e-6)


def test_an_output_that_is_a_constant_is_returned():
    # an initializer listed as an output (or one folded at import) is no kernel's output: compile raised KeyError
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["w", "w"], ["folded"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r", "w", "folded")],
        [numpy_helper.from_array(np.arange(3, dtype=np.float32), "w")])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    got = nacos.compile(nacos.load(model))(x)
    want = ort_run(model.SerializeToString(), x)
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
