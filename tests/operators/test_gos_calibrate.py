"""Per-channel output calibration after the weight transfer: exact rewrites stay exact, inexact ones move closer
to the original op's outputs (grouped convs through their channel shuffle, bias-free convs get a bias)."""

from __future__ import annotations

import numpy as np
import pytest

import operators.gos as gos
from ir.graph import GraphBuilder
from operators.gos.calibrate import _outputs, calibrate


def conv_graph(bias: bool = True, c: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("calib")
    x = b.input("x", (1, c, 8, 8))
    ins = [x, b.constant(rng.standard_normal((16, c, 3, 3)).astype(np.float32), "w")]
    if bias:
        ins.append(b.constant(rng.standard_normal(16).astype(np.float32), "b"))
    y = b.op("conv", *ins, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), groups=1, name="conv")
    return b.build([b.op("relu", y, name="act")])


X = np.random.default_rng(1).standard_normal((64, 16, 8, 8)).astype(np.float32)   # 64 examples


def err(graph, ref_graph):
    (a,), (b,) = _outputs(graph, ["conv"], X), _outputs(ref_graph, ["conv"], X)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_exact_rewrites_stay_exact():
    g = conv_graph()
    new = gos.apply(g, {"conv": "lowrank:full"})
    assert err(calibrate(g, new, ["conv"], X), g) < 1e-5


@pytest.mark.parametrize("rewrite,bias", [("dwsep", True), ("group:4", True), ("lowrank:4", False),
                                          ("dwsep>group:4", True)])
def test_inexact_rewrites_move_closer(rewrite, bias):
    g = conv_graph(bias)
    new = gos.apply(g, {"conv": rewrite})
    cal = calibrate(g, new, ["conv"], X)
    assert err(cal, g) < err(new, g)
    assert cal.node("conv").type == g.node("conv").type
    if not bias:
        assert any(n.name.endswith(".calib_b") for n in cal.nodes)
