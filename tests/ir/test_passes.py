"""Graph passes: constant folding, dead-node removal, batch-norm folding and their fixpoint. Every output is
checked by ``ir.verify`` and numerically (through ``ir.exporters.to_torch``) against the input graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ir import CONSTANT, GraphBuilder, verify
from ir.exporters import to_torch
from ir.frontends import from_torch
from ir.passes import fold_batchnorm, fold_constants, remove_dead_nodes, simplify
from nacos import zoo

torch.set_num_threads(1)
RTOL = ATOL = 1e-4


def run(graph, *inputs):
    with torch.no_grad():
        out = to_torch(graph)(*(torch.from_numpy(np.asarray(x)) for x in inputs))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def assert_same_outputs(a, b, *inputs):
    for x, y in zip(run(a, *inputs), run(b, *inputs)):
        np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL)


def ops(graph):
    return sorted(n.op for n in graph.compute_nodes)


def rand(*shape, seed=0, lo=None):
    rng = np.random.RandomState(seed)
    return (rng.uniform(lo, lo + 1, shape) if lo is not None else rng.randn(*shape)).astype(np.float32)


# ---- fold_constants / remove_dead_nodes -----------------------------------------------------------------
def _graph_with_constant_subexpressions():
    b = GraphBuilder("cf")
    x = b.input("x", (2, 4))
    w = b.constant(rand(4, 4, seed=1), "w")
    k = b.op("relu", b.op("add", b.constant(rand(4, seed=2), "a"), b.constant(rand(4, seed=3), "b")))
    wt = b.op("transpose", w, perm=(1, 0))         # a constant transpose: folded
    y = b.op("mul", b.op("dense", x, wt, k), b.op("exp", b.constant(np.float32(0.5), "half")))
    b.op("sigmoid", x)                             # dead
    return b.build([y])


def test_fold_constants_evaluates_constant_subgraphs():
    g = _graph_with_constant_subexpressions()
    folded = verify(fold_constants(g))
    assert ops(folded) == ["dense", "mul", "sigmoid"]
    assert all(folded.node(n).op == CONSTANT for n in ("transpose", "relu", "exp"))
    x = rand(2, 4, seed=9)
    assert_same_outputs(g, folded, x)
    cleaned = verify(remove_dead_nodes(folded))
    assert ops(cleaned) == ["dense", "mul"]
    assert set(cleaned.params) == {n.name for n in cleaned.nodes if n.op == CONSTANT}
    assert_same_outputs(g, cleaned, x)


def test_passes_are_pure():
    g = _graph_with_constant_subexpressions()
    before = (g.nodes, dict(g.params))
    for p in (fold_constants, remove_dead_nodes, fold_batchnorm, simplify):
        p(g)
    assert g.nodes == before[0] and set(g.params) == set(before[1])


def test_remove_dead_nodes_keeps_inputs_and_is_identity_when_nothing_is_dead():
    b = GraphBuilder()
    x, unused = b.input("x", (3,)), b.input("unused", (3,))
    y = b.op("relu", x)
    b.op("neg", unused)
    g = b.build([y])
    out = verify(remove_dead_nodes(g))
    assert out.inputs == ("x", "unused") and ops(out) == ["relu"]
    assert remove_dead_nodes(out) is out


def test_fold_constants_on_all_constant_graph():
    b = GraphBuilder()
    b.input("x", (1,))
    c = b.op("reshape", b.op("concat", b.constant(rand(2, 3)), b.constant(rand(1, 3, seed=1)), axis=0), shape=(9,))
    g = verify(simplify(b.build([c])))
    assert not g.compute_nodes
    np.testing.assert_allclose(g.params[c], np.concatenate([rand(2, 3), rand(1, 3, seed=1)]).reshape(9))


# ---- fold_batchnorm --------------------------------------------------------------------------------------
def _bn_params(b, c, seed=0):
    rng = np.random.RandomState(seed)
    return [b.constant(v.astype(np.float32), n) for v, n in (
        (rng.uniform(0.5, 1.5, c), "gamma"), (rng.randn(c) * 0.2, "beta"), (rng.randn(c) * 0.2, "mean"),
        (rng.uniform(0.5, 1.5, c), "var"))]


@pytest.mark.parametrize("zoo_name", ["small_cnn", "resnet18", "mobilenet_v2"])
def test_fold_batchnorm_zoo(zoo_name):
    torch.manual_seed(0)
    module = zoo.randomize_batchnorm_(zoo.MODELS[zoo_name][0]())
    shape = (1, 3, 32, 32)
    g = verify(from_torch(module, (torch.randn(shape),)))
    n_bn = sum(n.op == "batchnorm" for n in g.nodes)
    assert n_bn > 0
    folded = verify(simplify(g), check_instructions=zoo_name == "small_cnn")
    assert not any(n.op == "batchnorm" for n in folded.nodes)
    assert sum(n.op == "conv" for n in folded.nodes) == sum(n.op == "conv" for n in g.nodes)
    assert set(folded.params) == {n.name for n in folded.nodes if n.op == CONSTANT}
    x = rand(*shape, seed=5)
    assert_same_outputs(g, folded, x)
    with torch.no_grad():
        np.testing.assert_allclose(run(folded, x)[0], module(torch.from_numpy(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bias,groups,stride", [(True, 1, 1), (False, 2, 2), (True, 4, 1)])
def test_fold_batchnorm_conv_variants(bias, groups, stride):
    b = GraphBuilder()
    x = b.input("x", (2, 4, 7, 7))
    ins = [x, b.constant(rand(8, 4 // groups, 3, 3, seed=1), "w")]
    if bias:
        ins.append(b.constant(rand(8, seed=2), "b"))
    conv = b.op("conv", *ins, strides=(stride, stride), pads=(1, 1, 1, 1), groups=groups)
    y = b.op("relu", b.op("batchnorm", conv, *_bn_params(b, 8), epsilon=1e-3, name="bn"))
    g = b.build([y])
    folded = verify(fold_batchnorm(g), check_instructions=True)
    assert ops(folded) == ["conv", "relu"]
    assert folded.node("bn").op == "conv" and len(folded.node("bn").inputs) == 3
    assert_same_outputs(g, folded, rand(2, 4, 7, 7, seed=3))


def test_fold_batchnorm_dense():
    b = GraphBuilder()
    x = b.input("x", (5, 6))
    d = b.op("dense", x, b.constant(rand(3, 6, seed=1)), b.constant(rand(3, seed=2)))
    g = b.build([b.op("batchnorm", d, *_bn_params(b, 3))])
    folded = verify(fold_batchnorm(g))
    assert ops(folded) == ["dense"]
    assert_same_outputs(g, folded, rand(5, 6, seed=3))


def test_batchnorms_that_cannot_fold_stay():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    standalone = b.op("batchnorm", x, *_bn_params(b, 4), name="bn_input")       # no producer
    conv = b.op("conv", standalone, b.constant(rand(4, 4, 1, 1)))
    shared = b.op("batchnorm", conv, *_bn_params(b, 4, seed=1), name="bn_shared")  # conv has 2 consumers
    other = b.op("relu", conv)
    w_runtime = b.input("w", (4, 4, 1, 1))
    conv2 = b.op("conv", other, w_runtime)
    runtime = b.op("batchnorm", conv2, *_bn_params(b, 4, seed=2), name="bn_runtime_weight")
    dense3d = b.op("dense", b.op("reshape", runtime, shape=(1, 4, 25)), b.constant(rand(6, 25)))
    bn3d = b.op("batchnorm", dense3d, *_bn_params(b, 4, seed=3), name="bn_dense_3d")  # axis 1 is not features
    g = b.build([shared, bn3d])
    folded = verify(simplify(g))
    assert sorted(n.name for n in folded.nodes if n.op == "batchnorm") == [
        "bn_dense_3d", "bn_input", "bn_runtime_weight", "bn_shared"]
    assert_same_outputs(g, folded, rand(1, 4, 5, 5), rand(4, 4, 1, 1, seed=1))


def test_conv_that_is_a_graph_output_is_not_folded():
    b = GraphBuilder()
    x = b.input("x", (1, 2, 4, 4))
    conv = b.op("conv", x, b.constant(rand(2, 2, 1, 1)))
    g = b.build([conv, b.op("batchnorm", conv, *_bn_params(b, 2))])
    assert fold_batchnorm(g) is g


def test_simplify_is_a_fixpoint():
    torch.manual_seed(0)
    g = from_torch(zoo.small_cnn(), (torch.randn(1, 3, 32, 32),))
    once = simplify(g)
    twice = simplify(once)
    assert twice.nodes == once.nodes and twice.structural_hash() == once.structural_hash()


@settings(max_examples=25, deadline=None)
@given(c_in=st.integers(1, 4), mult=st.integers(1, 3), k=st.sampled_from([1, 3]), depthwise=st.booleans(),
       bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.1]), seed=st.integers(0, 1000))
def test_fold_batchnorm_property(c_in, mult, k, depthwise, bias, eps, seed):
    groups = c_in if depthwise else 1
    c_out = c_in * mult
    b = GraphBuilder()
    x = b.input("x", (1, c_in, 5, 5))
    ins = [x, b.constant(rand(c_out, c_in // groups, k, k, seed=seed))]
    if bias:
        ins.append(b.constant(rand(c_out, seed=seed + 1)))
    conv = b.op("conv", *ins, pads=(k // 2,) * 4, groups=groups)
    g = b.build([b.op("batchnorm", conv, *_bn_params(b, c_out, seed=seed + 2), epsilon=eps)])
    folded = verify(simplify(g))
    assert ops(folded) == ["conv"]
    assert_same_outputs(g, folded, rand(1, c_in, 5, 5, seed=seed + 3))


def test_fold_bias_moves_a_per_channel_constant_add_into_the_layer():
    # nacos' own export writes a rank-3 dense's bias as MatMul + Add: re-imported, the bias was a separate kernel
    # and missing from the parameter count
    from ir.analysis import graph_cost
    from ir.passes import fold_bias

    b = GraphBuilder()
    x = b.input("x", (2, 5, 8))
    d = b.op("add", b.op("dense", x, b.constant(rand(16, 8), "w")), b.constant(rand(16, seed=1), "c"))
    img = b.input("img", (1, 3, 6, 6))
    conv = b.op("conv", img, b.constant(rand(4, 3, 3, 3, seed=2), "k"), b.constant(rand(4, seed=3), "kb"))
    c = b.op("add", b.constant(rand(1, 4, 1, 1, seed=4), "cc"), conv)        # constant on the left, 4-D
    not_bias = b.op("add", b.op("dense", x, b.constant(rand(16, 8), "w2")), b.constant(rand(5, 16), "grid"))
    graph = verify(b.build([d, c, not_bias]))
    folded = verify(fold_bias(graph))
    assert ops(folded).count("add") == 1                                     # the (5, 16) constant is no bias
    assert graph_cost(folded).params == graph_cost(graph).params + 16    # the conv's add merges into its bias
    assert_same_outputs(graph, folded, rand(2, 5, 8, seed=5), rand(1, 3, 6, 6, seed=6))
