"""nacos.spaces.ModelSpace: a model's GOS rewrites as a search space; every arch builds into a verified graph."""

from __future__ import annotations

import numpy as np
import pytest

from ir import verify
from ir.analysis import graph_cost, node_cost
from ir.graph import GraphBuilder
from nacos import spaces
from operators.gos import examples


@pytest.fixture(scope="module")
def tiny():
    graph = examples.tiny_cnn()
    return graph, spaces.from_model(graph)


@pytest.fixture(scope="module")
def attn():
    graph = examples.attention()
    return graph, spaces.from_model(graph, max_variables=3, rewrites_per_node=1)


def test_variables_are_the_rewritable_ops(tiny):
    graph, space = tiny
    assert space.name == "model" and isinstance(space, spaces.ModelSpace)
    names = [v.name for v in space.variables()]
    assert names == ["conv2", "conv3", "classifier"]   # conv1 reads 1 channel: no rewrite cuts enough
    for var in space.variables():
        assert var.categorical and var.choices[0] == "keep" and len(var.choices) >= 2
        assert graph.node(var.name).op in var.doc and "FLOPs" in var.doc
    assert space.dropped == ()
    assert [d["name"] for d in space.describe()] == names and {d["kind"] for d in space.describe()} == {"choice"}


def test_the_cap_keeps_the_costliest_ops(attn):
    graph, space = attn
    kept = [v.name for v in space.variables()]
    assert len(kept) == 3 and all(len(v.choices) == 2 for v in space.variables())
    assert "attn" in kept   # the softmax attention is the costliest op and has the linear-attention rewrite
    assert set(kept) | set(space.dropped) == {"q", "k", "v", "attn", "proj", "classifier"}
    flops = {n.name: node_cost(graph, n).flops for n in graph.compute_nodes}
    assert min(flops[k] for k in kept) >= max(flops[d] for d in space.dropped)


def test_original_arch_is_the_model(tiny):
    graph, space = tiny
    arch = space.original()
    assert arch == space.make() and all(v == "keep" for _, v in arch.values)
    again = space.to_graph(arch, (1, 1, 16, 16), num_classes=10)
    assert again.structural_hash() == graph.structural_hash() and again.weights_hash() == graph.weights_hash()


def test_samples_build_verify_and_run(tiny, attn):
    import torch

    from ir.exporters import to_torch

    for graph, space in (tiny, attn):
        rng = np.random.default_rng(0)
        length = len(space.encode(space.original()))
        shape = graph.input_types()[0].shape
        x = torch.from_numpy(np.random.default_rng(1).normal(size=shape).astype(np.float32))
        for _ in range(4):
            arch = space.mutate(space.sample(rng), rng)
            built = verify(space.to_graph(arch))
            assert built.output_types() == graph.output_types()
            assert space.encode(arch).shape == (length,)
            assert space.to_graph(arch) is built   # cached by archid
            with torch.no_grad():
                assert torch.isfinite(to_torch(built)(x)).all()
        assert space.from_indices(space.indices(arch)) == arch


def test_every_rewrite_cuts_flops(tiny):
    graph, space = tiny
    base = graph_cost(graph).flops
    for var in space.variables():
        for choice in var.choices[1:]:
            assert graph_cost(space.to_graph(space.make({var.name: choice}))).flops < base, (var.name, choice)
    everything = space.make({v.name: v.choices[-1] for v in space.variables()})
    assert graph_cost(space.to_graph(everything)).flops < base / 2


def test_shapes_that_do_not_fit_are_named(tiny):
    _, space = tiny
    arch = space.original()
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 16, 16\).*\(1, 1, 16, 16\)"):
        space.to_graph(arch, (1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"num_classes 7 .*\[\(1, 10\)\]"):
        space.to_graph(arch, num_classes=7)
    space.to_graph(arch, (8, 1, 16, 16), num_classes=10)   # the batch is free, as in `nacos gos`


def test_failing_combination_keeps_the_node(monkeypatch):
    import operators.gos as gos

    real = gos.candidates
    # a rewrite that cannot apply to a conv stands in for a pair of rewrites that clash
    monkeypatch.setattr(gos, "candidates", lambda g, nodes, **kw: [
        (n, rw + (["linear_attn:elu"] if n == "conv3" else [])) for n, rw in real(g, nodes, **kw)])
    graph = examples.tiny_cnn()
    space = spaces.from_model(graph)
    arch = space.make(conv2="lowrank:0.5", conv3="linear_attn:elu")
    built = verify(space.to_graph(arch))
    assert space.fallbacks[arch.archid] == ("conv3",)
    assert built.structural_hash() == space.to_graph(space.make(conv2="lowrank:0.5")).structural_hash()


def test_a_model_without_rewrites_is_refused():
    b = GraphBuilder("plain")
    x = b.input("x", (1, 4))
    with pytest.raises(ValueError, match="no operator in 'plain' has a GOS rewrite; nothing to search"):
        spaces.from_model(b.build([b.op("relu", x)]))
    with pytest.raises(TypeError, match="ir.Graph"):
        spaces.from_model("model.onnx")


def test_model_is_not_created_by_name():
    assert "model" not in spaces.available()
    with pytest.raises(ValueError, match=r"--model MODEL.onnx.*from_model"):
        spaces.create("model")
