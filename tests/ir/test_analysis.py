"""Costs derived from instructions (ir.analysis) equal hand counts.

Conventions (ir/analysis.py docstring): one FLOP per add/mul/div/exp/max-compare in a stage body, plus one per
reduced element for the combine of a sum/max reduction, so a conv/matmul costs 2·MACs and a bias adds one FLOP
per output; index arithmetic and padding selects are free; params count constant weight inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from ir import GraphBuilder, verify
from ir.analysis import MemoryEstimate, graph_cost, graph_costs, node_cost, peak_memory
from ir.registry import get_op


def _zeros(*shape):
    return np.zeros(shape, np.float32)


def _conv_graph(c, k, hw, groups=1, stride=1, bias=True):
    b = GraphBuilder("conv")
    x = b.input("x", (2, c, hw, hw))
    ins = [x, b.constant(_zeros(k, c // groups, 3, 3), "w")] + ([b.constant(_zeros(k), "b")] if bias else [])
    y = b.op("conv", *ins, strides=(stride, stride), pads=(1, 1, 1, 1), groups=groups)
    return verify(b.build([y]), check_instructions=True), y


@pytest.mark.parametrize("c,k,hw,groups,stride,bias", [
    (8, 16, 10, 1, 1, True),
    (8, 16, 10, 1, 1, False),
    (8, 16, 11, 1, 2, True),   # strided: 11 → 6
    (8, 16, 10, 2, 1, True),   # grouped: each filter sees c/2 channels
    (8, 8, 10, 8, 1, False),   # depthwise: each filter sees one channel
])
def test_conv3x3_costs(c, k, hw, groups, stride, bias):
    g, y = _conv_graph(c, k, hw, groups, stride, bias)
    out = (hw + 2 - 3) // stride + 1
    outputs = 2 * k * out * out                        # batch 2
    macs = outputs * (c // groups) * 9
    cost = node_cost(g, g.node(y))
    assert g.node(y).shape == (2, k, out, out)
    assert cost.macs == macs
    assert cost.flops == 2 * macs + (outputs if bias else 0)
    assert cost.params == k * (c // groups) * 9 + (k if bias else 0)
    assert cost.bytes_read == 4 * (2 * c * hw * hw + k * (c // groups) * 9 + (k if bias else 0))
    assert cost.bytes_written == 4 * outputs


@pytest.mark.parametrize("bias", [True, False])
def test_dense_costs(bias):
    b = GraphBuilder("dense")
    x = b.input("x", (4, 7, 32))
    ins = [x, b.constant(_zeros(16, 32), "w")] + ([b.constant(_zeros(16), "b")] if bias else [])
    g = verify(b.build([b.op("dense", *ins)]), check_instructions=True)
    cost = graph_cost(g)
    rows = 4 * 7
    assert cost.macs == rows * 16 * 32
    assert cost.flops == 2 * rows * 16 * 32 + (rows * 16 if bias else 0)
    assert cost.params == 16 * 32 + (16 if bias else 0)


def test_matmul_costs():
    b = GraphBuilder("mm")
    a = b.input("a", (2, 3, 4, 5))
    x = b.input("x", (3, 5, 6))          # batch dims broadcast: (2, 3) with (3,)
    w = b.constant(_zeros(6, 7), "w")    # a constant operand is a weight
    y = b.op("matmul", a, x)
    z = b.op("matmul", y, w)
    g = verify(b.build([z]), check_instructions=True)
    costs = graph_costs(g)
    assert g.node(y).shape == (2, 3, 4, 6) and g.node(z).shape == (2, 3, 4, 7)
    assert costs[y].macs == 2 * 3 * 4 * 6 * 5 and costs[y].flops == 2 * costs[y].macs and costs[y].params == 0
    assert costs[z].macs == 2 * 3 * 4 * 7 * 6 and costs[z].flops == 2 * costs[z].macs and costs[z].params == 6 * 7


def test_softmax_cost_is_five_flops_per_element():
    """max (1 compare per element) → exp(x − max) (1 sub + 1 exp) → sum (1 add) → scale (1 mul): 5 per
    element, plus one reciprocal per row."""
    b = GraphBuilder("sm")
    y = b.op("softmax", b.input("x", (3, 4, 10)), axis=2)
    g = b.build([y])
    assert graph_cost(g).flops == 5 * 3 * 4 * 10 + 3 * 4
    assert graph_cost(g).macs == 0


def test_multi_head_self_attention_costs():
    """One MHSA block from dense/reshape/transpose/matmul/mul/softmax, against a hand count.

    batch 1, T tokens, width D, H heads of width d = D/H:
      Q, K, V and output projections   4 · (2·T·D² + T·D)      (dense: 2·MACs plus one bias add per output)
      scores Q·Kᵀ                       2 · H·T·T·d
      scale by 1/√d                     H·T·T                    (one mul per score)
      softmax                           5 · H·T·T                (see test_softmax_cost_is_five_flops_per_element)
      attention · V                     2 · H·T·T·d
      reshape / transpose               0                        (index arithmetic only)
    """
    T_, D, H = 6, 16, 4
    d = D // H
    b = GraphBuilder("mhsa")
    x = b.input("x", (1, T_, D))

    def proj(src, name):
        return b.op("dense", src, b.constant(_zeros(D, D), f"w{name}"), b.constant(_zeros(D), f"b{name}"), name=name)

    def heads(t, perm):
        return b.op("transpose", b.op("reshape", t, shape=(1, T_, H, d)), perm=perm)

    q = heads(proj(x, "q"), (0, 2, 1, 3))                # [1, H, T, d]
    kt = heads(proj(x, "k"), (0, 2, 3, 1))               # [1, H, d, T]
    v = heads(proj(x, "v"), (0, 2, 1, 3))                # [1, H, T, d]
    scores = b.op("mul", b.op("matmul", q, kt), b.constant(np.full((1,), d ** -0.5, np.float32), "scale"))
    attn = b.op("softmax", scores, axis=3)
    o = b.op("matmul", attn, v)                          # [1, H, T, d]
    o = b.op("reshape", b.op("transpose", o, perm=(0, 2, 1, 3)), shape=(1, T_, D))
    y = proj(o, "out")
    g = verify(b.build([y]), check_instructions=True)

    cost = graph_cost(g)
    projections = 4 * (2 * T_ * D * D + T_ * D)
    softmax = 5 * H * T_ * T_ + H * T_  # 5 per element, one reciprocal per row
    assert cost.flops == projections + 2 * H * T_ * T_ * d + H * T_ * T_ + softmax + 2 * H * T_ * T_ * d
    assert cost.macs == 4 * T_ * D * D + 2 * H * T_ * T_ * d
    assert cost.params == 4 * (D * D + D)
    data_movement = [n.name for n in g.compute_nodes if n.op in ("reshape", "transpose")]
    assert len(data_movement) == 8 and all(graph_costs(g)[n].flops == 0 for n in data_movement)


def test_flops_agree_with_torch_flop_counter():
    """conv + relu + global_avgpool + flatten + dense: conv/dense FLOPs match FlopCounterMode within 1%.

    FlopCounterMode counts only the conv and the matmul (2·MACs) and not the bias adds, which the instruction counts
    (1/(2·C·9) of a conv, 1/(2·in) of a dense), hence the tolerance.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rng = np.random.default_rng(0)
    b = GraphBuilder("cnn")
    x = b.input("x", (2, 16, 8, 8))
    conv = b.op("conv", x, b.constant(rng.standard_normal((64, 16, 3, 3)), "w1"),
                b.constant(rng.standard_normal(64), "b1"), strides=(1, 1), pads=(1, 1, 1, 1))
    h = b.op("flatten", b.op("global_avgpool", b.op("relu", conv)), axis=1)
    dense = b.op("dense", h, b.constant(rng.standard_normal((10, 64)), "w2"), b.constant(rng.standard_normal(10), "b2"))
    g = verify(b.build([dense]), check_instructions=True)

    values = {"x": torch.randn(2, 16, 8, 8)}
    counted = {}
    for n in g.nodes:
        if n.op == "constant":
            values[n.name] = torch.from_numpy(np.array(g.params[n.name]))
        elif n.op != "input":
            with FlopCounterMode(display=False) as fc:
                values[n.name] = get_op(n.op).torch(n.attr_dict, *(values[i] for i in n.inputs))
            counted[n.name] = fc.get_total_flops()
    costs = graph_costs(g)
    for name in (conv, dense):
        assert counted[name] > 0
        assert abs(costs[name].flops - counted[name]) <= 0.01 * counted[name], (name, costs[name].flops, counted[name])
        assert costs[name].flops >= counted[name] == 2 * costs[name].macs
    total_ours = costs[conv].flops + costs[dense].flops
    assert abs(total_ours - sum(counted.values())) <= 0.01 * sum(counted.values())


# ---- peak memory -----------------------------------------------------------------------------------------------
# x: float32[1, 4, 8, 8] = 1024 B; conv1 (4 → 8 channels) and relu outputs 2048 B; conv2 (8 → 4) output 1024 B;
# w1 [8, 4, 3, 3] and w2 [4, 8, 3, 3] 1152 B each.
def _block(residual: bool):
    b = GraphBuilder("block")
    x = b.input("x", (1, 4, 8, 8))
    y = b.op("conv", x, b.constant(_zeros(8, 4, 3, 3), "w1"), pads=(1, 1, 1, 1))
    y = b.op("conv", b.op("relu", y), b.constant(_zeros(4, 8, 3, 3), "w2"), pads=(1, 1, 1, 1))
    if residual:
        y = b.op("add", x, y)
    return verify(b.build([y]))


def test_peak_memory_of_a_chain():
    """conv1 {x, y1} 3072 → x dies → relu {y1, y2} 4096 → y1 dies → conv2 {y2, y3} 3072: peak 4096."""
    m = peak_memory(_block(residual=False))
    assert m == MemoryEstimate(weights_bytes=2304, peak_activation_bytes=4096)
    assert m.total_bytes == 2304 + 4096


def test_peak_memory_of_a_residual_block_keeps_the_skip_alive():
    """The skip keeps x (1024 B) alive until the add: relu {x, y1, y2} 5120 is the peak, above the chain's."""
    m = peak_memory(_block(residual=True))
    assert m == MemoryEstimate(weights_bytes=2304, peak_activation_bytes=5120)
    assert m.peak_activation_bytes > peak_memory(_block(residual=False)).peak_activation_bytes


def test_peak_memory_keeps_outputs_and_frees_dead_values():
    """Graph outputs live to the end; an output nobody reads is counted while it is produced, then freed;
    an unused input counts only at the start."""
    b = GraphBuilder("multi")
    x = b.input("x", (256,))                    # 1024 B
    b.input("unused", (64,))                    # 256 B, given by the caller, never read
    a = b.op("relu", x)                         # output: lives to the end
    b.op("exp", x)                              # dead: never read, not an output
    c = b.op("sigmoid", a)                      # last reader of a, which still lives on as an output
    g = b.build([a, c])
    # start {x, unused} 1280 → relu {x, a} 2048 → exp {x, a, e} 3072 → x dies → sigmoid {a, c} 2048
    assert peak_memory(g) == MemoryEstimate(0, 3072)


def test_a_padded_average_pools_division_counts_once():
    # 1/(window rows · window cols) is one division: sympy's a**-1 · b**-1 must not count two
    from ir.analysis import graph_cost
    from ir.graph import GraphBuilder

    b = GraphBuilder("pool")
    x = b.input("x", (1, 2, 10, 10))
    y = b.op("avgpool", x, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), count_include_pad=0)
    g = b.build([y])
    outputs = 2 * 10 * 10
    assert graph_cost(g).flops == outputs * 9 + outputs  # 9 reduction combines and one division per output
