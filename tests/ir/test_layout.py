"""ir.passes.select_layout: convolution chains in NCHW[b]c, conversions only where needed, same numerics."""

import numpy as np
import pytest
import torch

from ir.exporters import to_torch
from ir.graph import GraphBuilder
from ir.passes import select_layout
from ir.verify import verify

RNG = np.random.default_rng(0)


def _w(*shape):
    return (RNG.standard_normal(shape) * 0.2).astype("float32")


def block_net(channels=16, first_in=8):
    """conv+bias → relu → depthwise (stride 2) → clip → 1×1 conv → residual add → global pool; the add is also an
    output, so the pass must hand it back in NCHW under its own name."""
    b = GraphBuilder("blocky")
    x = b.input("x", (1, first_in, 10, 10))
    y = b.op("relu", b.op("conv", x, b.constant(_w(channels, first_in, 3, 3), "w1"), b.constant(_w(channels), "b1"),
                          strides=(1, 1), pads=(1, 1, 1, 1)))
    d = b.op("clip", b.op("conv", y, b.constant(_w(channels, 1, 3, 3), "wd"), strides=(2, 2), pads=(1, 1, 1, 1),
                          groups=channels), min=0.0, max=6.0)
    s = b.op("add", b.op("conv", d, b.constant(_w(channels, channels, 1, 1), "w2")), d)
    return b.build([b.op("global_avgpool", s), s])


def _run(graph, *arrays):
    with torch.no_grad():
        out = to_torch(graph)(*[torch.from_numpy(a) for a in arrays])
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def test_chain_stays_blocked_with_conversions_only_at_the_edges():
    g = block_net()
    out = select_layout(g, 8)
    verify(out)
    ops = [n.op for n in out.compute_nodes]
    assert ops.count("to_blocked") == 1 and ops.count("from_blocked") == 1
    assert ops.count("conv2d_nchwc") == 2 and ops.count("dwconv2d_nchwc") == 1 and "conv" not in ops
    assert [n.op for n in out.compute_nodes if n.op in ("relu", "clip", "add")] == ["relu", "clip", "add"]
    assert all(len(out.node(n.name).shape) == 5 for n in out.compute_nodes if n.op in ("relu", "clip", "add"))
    assert out.outputs == g.outputs and out.inputs == g.inputs
    assert out.output_types() == g.output_types()
    x = RNG.standard_normal((1, 8, 10, 10)).astype("float32")
    for got, want in zip(_run(out, x), _run(g, x)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_pass_is_pure_and_a_no_op_when_nothing_qualifies():
    g = block_net()
    before = g.structural_key()
    select_layout(g, 8)
    assert g.structural_key() == before
    assert select_layout(g, 1) is g
    assert select_layout(g, 32) is g  # 16 channels: no block of 32 divides them


def stem_net(pool=True):
    """An image stem: conv 3→8 (3 channels fill no block) + bias → relu → max pool 3×3/2 → 1×1 conv → relu."""
    b = GraphBuilder("stem")
    x = b.input("x", (1, 3, 13, 12))
    y = b.op("relu", b.op("conv", x, b.constant(_w(8, 3, 3, 3), "w"), b.constant(_w(8), "b"), strides=(2, 2),
                          pads=(1, 1, 1, 1)))
    if pool:
        y = b.op("maxpool", y, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), ceil_mode=0)
    y = b.op("relu", b.op("conv", y, b.constant(_w(8, 8, 1, 1), "w2")))
    return b.build([y])


@pytest.mark.parametrize("pool", [True, False])
def test_image_conv_writes_the_blocked_layout_and_max_pool_stays_blocked(pool):
    """The stem conv reads the NCHW image as it is (no to_blocked of the input) and writes NCHW8c; a max pool of a
    blocked tensor stays blocked; one conversion back, at the output."""
    g = stem_net(pool)
    out = select_layout(g, 8)
    ops = [n.op for n in out.compute_nodes]
    assert {op: ops.count(op) for op in set(ops)} == {"conv2d_nchwc": 2, "relu": 2, "from_blocked": 1,
                                                       **({"maxpool2d_nchwc": 1} if pool else {})}
    stem = next(n for n in out.compute_nodes if n.op == "conv2d_nchwc")
    assert stem.inputs[0] == "x" and out.node(stem.inputs[1]).shape == (1, 3, 3, 3, 1, 8)
    x_in = RNG.standard_normal((1, 3, 13, 12)).astype("float32")
    np.testing.assert_allclose(_run(out, x_in)[0], _run(g, x_in)[0], rtol=1e-5, atol=1e-5)


def test_compiled_stem_and_blocked_max_pool_agree_with_nchw():
    import nacos

    g = stem_net()
    x = RNG.standard_normal((1, 3, 13, 12)).astype("float32")
    blocked = nacos.compile(g, layout="blocked")
    assert any("maxpool2d_nchwc" in k.name for k in blocked.kernels)
    np.testing.assert_allclose(blocked(x)[0], nacos.compile(g, layout="nchw")(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("second", [8, 4])
def test_concat_along_channels_stays_blocked_when_its_parts_are_whole_blocks(second):
    """Two conv branches concatenated along channels, then a conv: with 8 + 8 channels the concat joins the blocked
    region (no conversion around it); a 4-channel part fills no block, so the concat reads NCHW."""
    b = GraphBuilder("cat")
    x = b.input("x", (1, 8, 6, 6))
    y1 = b.op("relu", b.op("conv", x, b.constant(_w(8, 8, 3, 3), "w1"), pads=(1, 1, 1, 1)))
    y2 = b.op("conv", x, b.constant(_w(second, 8, 1, 1), "w2"))
    c = b.op("concat", y1, y2, axis=-3)
    g = b.build([b.op("conv", c, b.constant(_w(8, 8 + second, 1, 1), "w3"))])
    out = select_layout(g, 8)
    cat = next(n for n in out.compute_nodes if n.op == "concat")
    conversions = [n.op for n in out.compute_nodes if n.op in ("to_blocked", "from_blocked")]
    if second == 8:
        assert cat.shape == (1, 2, 6, 6, 8) and cat.attr("axis") == 1
        assert conversions == ["to_blocked", "from_blocked"]  # the input and the output only
    else:
        assert cat.shape == (1, 12, 6, 6)
    x_in = RNG.standard_normal((1, 8, 6, 6)).astype("float32")
    np.testing.assert_allclose(_run(out, x_in)[0], _run(g, x_in)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["grouped", "uneven"])
def test_convolutions_that_do_not_qualify_stay_nchw(case):
    b = GraphBuilder(case)
    if case == "grouped":
        x = b.input("x", (1, 16, 8, 8))
        y = b.op("conv", x, b.constant(_w(16, 8, 3, 3), "w"), pads=(1, 1, 1, 1), groups=2)
        expect = {"conv": 1}
    else:
        x = b.input("x", (1, 12, 8, 8))
        y = b.op("conv", x, b.constant(_w(12, 12, 1, 1), "w"))
        expect = {"conv": 1}
    g = b.build([y])
    out = select_layout(g, 8)
    ops = [n.op for n in out.compute_nodes]
    assert {op: ops.count(op) for op in set(ops)} == expect
    x_in = RNG.standard_normal(g.input_types()[0].shape).astype("float32")
    np.testing.assert_allclose(_run(out, x_in)[0], _run(g, x_in)[0], rtol=1e-5, atol=1e-5)


def test_broadcasting_elementwise_ops_read_nchw():
    """A per-channel scale (1, C, 1, 1) would need its own re-layout: the op gets its input back in NCHW."""
    b = GraphBuilder("scale")
    x = b.input("x", (1, 8, 6, 6))
    y = b.op("conv", x, b.constant(_w(8, 8, 3, 3), "w"), pads=(1, 1, 1, 1))
    y = b.op("conv", y, b.constant(_w(8, 8, 1, 1), "w2"))
    z = b.op("mul", y, b.constant(_w(1, 8, 1, 1), "s"))
    g = b.build([z])
    out = select_layout(g, 8)
    assert out.node("mul").inputs[0] == "conv_1" and out.node("conv_1").op == "from_blocked"
    x_in = RNG.standard_normal((1, 8, 6, 6)).astype("float32")
    np.testing.assert_allclose(_run(out, x_in)[0], _run(g, x_in)[0], rtol=1e-5, atol=1e-5)


def test_a_lone_convolution_is_not_worth_two_conversions():
    b = GraphBuilder("lone")
    x = b.input("x", (1, 8, 6, 6))
    y = b.op("relu", b.op("conv", x, b.constant(_w(8, 8, 3, 3), "w"), pads=(1, 1, 1, 1)))
    g = b.build([b.op("global_avgpool", y)])
    assert [n.op for n in select_layout(g, 8).compute_nodes] == ["conv", "relu", "global_avgpool"]
    assert "conv2d_nchwc" in [n.op for n in select_layout(g, 8, min_convs=1).compute_nodes]


def test_compiled_blocked_and_nchw_agree():
    import nacos

    g = block_net()
    x = RNG.standard_normal((1, 8, 10, 10)).astype("float32")
    blocked = nacos.compile(g, layout="blocked")
    assert any("nchwc" in k.name for k in blocked.kernels)
    for got, want in zip(blocked(x), nacos.compile(g, layout="nchw")(x)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="choose one of"):
        nacos.compile(g, layout="nhwc")
