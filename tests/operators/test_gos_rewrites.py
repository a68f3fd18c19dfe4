"""GOS rewrite rules: each verifies, keeps the replaced op's boundary, and cuts MACs by the expected amount;
compositions of primitives give new valid candidates; the candidates/apply API used by joint search."""

from __future__ import annotations

import numpy as np
import pytest

import operators.gos as gos
from ir.analysis import graph_cost
from ir.graph import GraphBuilder
from ir.verify import verify
from operators.gos import examples
from operators.gos.space import evaluate_rewrite, node_candidates

C, K, HW, KK = 16, 16, 8, 9


def conv_graph(c=C, k=K, kernel=3, hw=HW, stride=1, seed=0):
    """x → conv (the anchor, named "conv") → relu → output."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("one_conv")
    x = b.input("x", (1, c, hw, hw))
    w = b.constant(rng.standard_normal((k, c, kernel, kernel)).astype(np.float32), "w")
    bias = b.constant(rng.standard_normal(k).astype(np.float32), "b")
    p = kernel // 2
    y = b.op("conv", x, w, bias, strides=(stride, stride), pads=(p,) * 4, dilations=(1, 1), groups=1, name="conv")
    return b.build([b.op("relu", y, name="act")])


# new MACs of the replaced region for C = K = 16, 3×3, 8×8 output; the original is K·C·9·64
EXPECTED_MACS = {
    "group:4": K * (C // 4) * KK * 64,
    "dwsep": C * KK * 64 + K * C * 64,
    "dwsep:2": 2 * C * KK * 64 + K * 2 * C * 64,
    "spatial:0.5": 8 * C * 3 * 64 + K * 8 * 3 * 64,
    "spatial:4": 4 * C * 3 * 64 + K * 4 * 3 * 64,
    "lowrank:0.25": 4 * C * KK * 64 + K * 4 * 64,
    "bottleneck:0.5": 8 * C * 64 + 8 * 8 * KK * 64 + K * 8 * 64,
    "dwsep>group:4": C * KK * 64 + K * (C // 4) * 64,
    "bottleneck:0.5>dwsep": 8 * C * 64 + (8 * KK * 64 + 8 * 8 * 64) + K * 8 * 64,
    "spatial:0.5>lowrank:4": 8 * C * 3 * 64 + (4 * 8 * 3 * 64 + K * 4 * 64),   # the 1×3 (it has the bias) is costlier
}


@pytest.mark.parametrize("rewrite", sorted(EXPECTED_MACS))
def test_rewrite_verifies_keeps_boundary_and_cuts_macs(rewrite):
    g = conv_graph()
    out = gos.apply(g, {"conv": rewrite})
    verify(out, check_instructions=True)
    before, after = g.node_map, out.node_map
    assert after["conv"].type == before["conv"].type          # the replaced op's boundary
    assert after["act"].inputs == ("conv",) and out.output_types() == g.output_types()
    original = K * C * KK * 64
    assert graph_cost(g).macs - graph_cost(out).macs == original - EXPECTED_MACS[rewrite]
    assert EXPECTED_MACS[rewrite] < original
    assert g.node_map == before                                # apply is pure: the input graph is unchanged


def test_strided_and_dense_and_matmul_rewrites_keep_shapes():
    g = conv_graph(stride=2, hw=9)
    for rw in ("spatial:0.5", "dwsep", "bottleneck:0.5", "group:2", "lowrank:0.5"):
        out = verify(gos.apply(g, {"conv": rw}), check_instructions=True)
        assert out.node("conv").type == g.node("conv").type
    att = examples.attention()
    out = verify(gos.apply(att, {"q": "lowrank:4", "proj": "lowrank:0.25"}), check_instructions=True)
    assert out.node("q").type == att.node("q").type
    assert graph_cost(out).params < graph_cost(att).params
    b = GraphBuilder("mm")
    x = b.input("x", (1, 5, 12))
    y = b.op("matmul", x, b.constant(np.ones((12, 12), np.float32), "w"), name="mm")
    mm = b.build([y])
    out = verify(gos.apply(mm, {"mm": "lowrank:3"}), check_instructions=True)
    assert [n.op for n in out.compute_nodes] == ["matmul", "matmul"]
    assert graph_cost(out).macs == 5 * 12 * 3 * 2


def test_group_adds_a_shuffle_of_reshape_transpose_reshape():
    out = gos.apply(conv_graph(), {"conv": "group:4"})
    ops = [n.op for n in out.compute_nodes]
    assert ops == ["conv", "reshape", "transpose", "reshape", "relu"]
    assert out.node("conv.grouped").attr("groups") == 4
    assert out.node("conv.shuffle.split").shape == (1, 4, 4, HW, HW)


def test_rules_refuse_what_they_do_not_fit():
    g = conv_graph()
    with pytest.raises(gos.RewriteError):
        gos.apply(g, {"conv": "group:3"})                     # 3 does not divide 16
    with pytest.raises(gos.RewriteError):
        gos.apply(g, {"conv": "nonsense"})
    with pytest.raises(gos.RewriteError):
        gos.apply(g, {"act": "dwsep"})                        # not a conv
    with pytest.raises(gos.RewriteError):
        gos.apply(conv_graph(kernel=1), {"conv": "dwsep"})   # nothing to factor in a 1×1
    with pytest.raises(gos.RewriteError):
        gos.apply(g, {"missing": "dwsep"})
    for bad in ("0", "0.5", "-1", "abc"):  # "0.5" made a depthwise conv of 0 channels that still verified
        with pytest.raises(gos.RewriteError, match="whole number"):
            gos.apply(g, {"conv": f"dwsep:{bad}"})


def test_composition_generates_new_valid_candidates():
    g = conv_graph(c=32, k=32)
    found = node_candidates(g, "conv", max_per_op=50)
    names = [c.rewrite for c in found]
    composed = [n for n in names if ">" in n]
    assert composed, names
    for c in found:
        assert c.flops_ratio <= 0.8
        verify(gos.apply(g, {"conv": c.rewrite}), check_instructions=True)
    # a composition cuts more than its first step alone, and its structure is new
    for name in composed:
        first = name.split(">")[0]
        assert evaluate_rewrite(g, "conv", name).flops_after < evaluate_rewrite(g, "conv", first).flops_after
    assert len({c.signature for c in found}) == len(found)


def test_candidates_and_apply_api():
    g = examples.tiny_cnn()
    cands = gos.candidates(g)
    assert {n for n, _ in cands} >= {"conv2", "conv3"}
    assert all(isinstance(rws, list) and rws for _, rws in cands)
    choice = {n: rws[-1] for n, rws in cands}
    out = gos.apply(g, choice)
    verify(out, check_instructions=True)
    assert out.output_types() == g.output_types()
    assert graph_cost(out).flops < graph_cost(g).flops
    kept = gos.apply(g, {n: gos.KEEP for n, _ in cands})
    assert kept.structural_hash() == g.structural_hash()


def test_parse_names():
    steps = gos.parse("bottleneck:0.5>dwsep")
    assert [str(s) for s in steps] == ["bottleneck:0.5", "dwsep:1"]
    assert gos.parse("spatial:4")[0].arg == 4 and gos.parse("lowrank:full")[0].arg == "full"


def test_compositions_deeper_than_pairs_are_refused_not_silently_cut():
    with pytest.raises(ValueError, match="depth 3"):
        node_candidates(conv_graph(), "conv", depth=3)
