"""Exporters: IR → ONNX (checked by onnx.checker, run by onnxruntime) and IR → torch.nn.Module (the ops' PyTorch
references; parameters, buffers, names, gradients)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ir import CONSTANT, GraphBuilder, all_ops
from ir.exporters import to_onnx, to_torch
from ir.exporters.onnx import ExportContext
from ir.frontends import from_onnx, from_torch
from ir.graph import TensorType
from nacos import zoo

torch.set_num_threads(1)
RTOL = ATOL = 1e-4


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def run_torch(graph, feeds: dict) -> list[np.ndarray]:
    with torch.no_grad():
        out = to_torch(graph)(*(torch.from_numpy(feeds[n]) for n in graph.inputs))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def random_feeds(graph, seed=0, positive=False) -> dict:
    rng = np.random.RandomState(seed)
    feeds = {}
    for name in graph.inputs:
        t = graph.node(name).type
        feeds[name] = (rng.uniform(0.5, 2.0, t.shape) if positive else rng.randn(*t.shape)).astype(t.dtype)
    return feeds


def assert_onnx_matches_torch(graph, positive=False):
    model = to_onnx(graph)
    feeds = random_feeds(graph, positive=positive)
    for a, b in zip(run_ort(model, feeds), run_torch(graph, feeds)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    return model


# ---- to_onnx ---------------------------------------------------------------------------------------------
EXAMPLE_OPS = sorted(name for name, opdef in all_ops().items() if opdef.example is not None)


@pytest.mark.parametrize("op", EXAMPLE_OPS)
def test_every_op_exports_and_matches_its_torch_reference(op):
    """Each op's ONNX spelling (OpDef.onnx), on its own example, agrees with its PyTorch reference."""
    opdef = all_ops()[op]
    attrs, in_types = opdef.example()
    b = GraphBuilder(op)
    ins = [b.input(f"in{i}", t.shape, t.dtype) for i, t in enumerate(in_types)]
    g = b.build([b.op(op, *ins, **attrs)])
    assert_onnx_matches_torch(g, positive=op in ("sqrt", "pow"))


@pytest.mark.parametrize("name", ["small_cnn", "tiny_attention"])
def test_zoo_graph_exports(name, tmp_path):
    torch.manual_seed(0)
    fn, shape = zoo.MODELS[name]
    module = fn()
    graph = from_torch(module, (torch.randn(shape),))
    path = tmp_path / f"{name}.onnx"
    model = to_onnx(graph, path)
    onnx.checker.check_model(onnx.load(str(path)))
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == list(graph.inputs)
    assert {i.name for i in model.graph.initializer} >= {n.name for n in graph.nodes if n.op == CONSTANT}
    feeds = random_feeds(graph)
    with torch.no_grad():
        expected = module(torch.from_numpy(feeds["x"])).numpy()
    np.testing.assert_allclose(run_ort(model, feeds)[0], expected, rtol=RTOL, atol=ATOL)


def test_outputs_that_are_inputs_constants_or_repeated():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    c = b.constant(np.arange(3, dtype=np.float32), "c")
    y = b.op("add", x, c)
    g = b.build([y, x, c, y])
    model = assert_onnx_matches_torch(g)
    assert len({o.name for o in model.graph.output}) == 4
    assert model.graph.output[0].name == y


def test_round_trip_ir_onnx_ir_keeps_structure():
    torch.manual_seed(0)
    graph = from_torch(zoo.small_cnn(), (torch.randn(1, 3, 32, 32),))
    again = from_onnx(to_onnx(graph))
    assert again.structural_hash() == graph.structural_hash()
    feeds = random_feeds(graph)
    for a, b in zip(run_torch(graph, feeds), run_torch(again, {again.inputs[0]: feeds["x"]})):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_export_context():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    ctx = ExportContext(b.build([x]))
    assert ctx.shape("x") == (2, 3)
    assert ctx.fresh("x") != "x" and ctx.fresh("t") == "t" and ctx.fresh("t") == "t_1"
    f, i = ctx.initializer([1.5, 2.0], "f"), ctx.initializer(np.array([1, 2]), "i")
    types = {t.name: t.data_type for t in ctx.initializers}
    assert types == {f: onnx.TensorProto.FLOAT, i: onnx.TensorProto.INT64}
    assert ctx.shape(i) == (2,)


# ---- to_torch --------------------------------------------------------------------------------------------
def test_to_torch_parameters_buffers_and_names():
    torch.manual_seed(0)
    module = zoo.small_cnn()
    graph = from_torch(module, (torch.randn(1, 3, 32, 32),))
    tm = to_torch(graph)
    params = dict(tm.named_parameters())
    buffers = dict(tm.named_buffers())
    # weights (conv/dense/batchnorm-affine inputs declared in OpDef.weight_inputs) are trainable parameters
    assert "blocks_0_0_weight" in params and "fc_weight" in params and "fc_bias" in params
    assert "blocks_0_1_running_mean" in buffers and "blocks_0_1_running_var" in buffers
    assert set(tm.state_dict()) == set(params) | set(buffers)
    np.testing.assert_array_equal(params["fc_weight"].detach().numpy(), module.fc.weight.detach().numpy())


def test_to_torch_is_trainable():
    torch.manual_seed(0)
    graph = from_torch(zoo.tiny_attention(), (torch.randn(1, 16, 32),))
    tm = to_torch(graph).train()
    out = tm(torch.randn(1, 16, 32))
    out.square().mean().backward()
    grads = [p.grad for p in tm.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    before = next(tm.parameters()).detach().clone()
    opt.step()
    assert not torch.equal(before, next(tm.parameters()).detach())


def test_to_torch_name_sanitizing_and_signature():
    b = GraphBuilder()
    x = b.input("x", (2, 4))
    w1 = b.constant(np.ones((3, 4), np.float32), "layer.0/w")
    w2 = b.constant(np.ones((3, 4), np.float32), "layer_0_w")
    w3 = b.constant(np.ones((3,), np.float32), "0bias")
    y = b.op("add", b.op("dense", x, w1, w3), b.op("dense", x, w2))
    tm = to_torch(b.build([y]))
    names = set(dict(tm.named_parameters()))
    assert len(names) == 3 and all(n.isidentifier() for n in names)
    assert tm.attr_names["layer.0/w"] != tm.attr_names["layer_0_w"]
    with pytest.raises(TypeError, match="takes 1 inputs"):
        tm(torch.ones(2, 4), torch.ones(2, 4))


def test_to_torch_int_constants_are_buffers():
    b = GraphBuilder()
    x = b.input("x", (3,), "int64")
    y = b.op("add", x, b.constant(np.array([1, 2, 3], np.int64), "k"))
    tm = to_torch(b.build([y]))
    assert not list(tm.parameters()) and "k" in dict(tm.named_buffers())
    assert tm(torch.tensor([1, 1, 1])).tolist() == [2, 3, 4]


def test_module_state_dict_round_trip():
    torch.manual_seed(0)
    graph = from_torch(zoo.small_cnn(), (torch.randn(1, 3, 32, 32),))
    a, b = to_torch(graph), to_torch(graph)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    assert isinstance(a, nn.Module) and not a.training


def test_tensor_type_of_export_inputs():
    b = GraphBuilder()
    x = b.input("x", (1, 2), "float32")
    model = to_onnx(b.build([b.op("relu", x)]))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 2] and TensorType((1, 2)).dtype == "float32"


# ---- scalars, clip and other dtypes (found by a differential review) ---------------------------------------
def test_a_scalar_constant_stays_a_scalar_and_clip_round_trips():
    # 0-d constants were written with shape [1]: scalar outputs came back (1,), full_check failed, and Clip's
    # bounds (which must be scalars) made nacos refuse its own export of any relu6 model
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    s = b.op("add", b.op("reduce_sum", x, axes=(0, 1), keepdims=0), b.constant(np.array(2.0, np.float32), "c"))
    y = b.op("clip", x, min=0.0, max=0.5)
    graph = b.build([s, y])
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    feeds = random_feeds(graph)
    got = run_ort(model, feeds)
    assert got[0].shape == () and [o.shape for o in run_torch(graph, feeds)][0] == ()
    for a, w in zip(got, run_torch(graph, feeds)):
        np.testing.assert_allclose(a, w, rtol=RTOL, atol=ATOL)
    again = from_onnx(model)
    assert again.node(again.outputs[0]).shape == () and again.structural_hash() == graph.structural_hash()
    relu6 = from_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6()).eval(), (torch.randn(1, 3, 8, 8),))
    from_onnx(to_onnx(relu6))


@pytest.mark.parametrize("op, attrs", [("gelu", {}), ("gelu_tanh", {}), ("clip", {"min": -0.5, "max": 0.5}),
                                       ("pad", {"pads": (0, 1, 0, 1), "value": 0.5}), ("layernorm", {})])
def test_float16_graphs_export_what_onnxruntime_runs(op, attrs):
    # the helper constants of these ops were float32 next to a float16 tensor: onnxruntime refused the file
    b = GraphBuilder()
    x = b.input("x", (2, 8), "float16")
    graph = b.build([b.op(op, x, **attrs)])
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    feeds = {"x": np.linspace(-2, 2, 16, dtype=np.float16).reshape(2, 8)}
    np.testing.assert_allclose(run_ort(model, feeds)[0].astype(np.float32),
                               run_torch(graph, feeds)[0].astype(np.float32), rtol=1e-2, atol=1e-2)


def test_integer_elementwise_math():
    # int64 hardsigmoid compiled to 0 everywhere (its float math on an integer type): refused; an integer clip
    # stays integer in PyTorch too (a float bound promoted it to float32)
    b = GraphBuilder()
    x = b.input("x", (5,), "int64")
    with pytest.raises(ValueError, match="hardsigmoid: inputs of dtype int64"):
        b.op("hardsigmoid", x)
    graph = b.build([b.op("clip", x, min=-1.0, max=2.0)])
    feeds = {"x": np.array([-3, -1, 0, 2, 3], np.int64)}
    (got,) = run_torch(graph, feeds)
    assert got.dtype == np.int64 and got.tolist() == [-1, -1, 0, 2, 2]
    np.testing.assert_array_equal(run_ort(to_onnx(graph), feeds)[0], got)
