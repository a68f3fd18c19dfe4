"""Kernel partition: elementwise epilogues join their producer; SiLU-style diamonds fuse; only a group's last
node is read from outside it."""

from __future__ import annotations

import numpy as np
import torch

import nacos
from ir.graph import GraphBuilder
from schedules.fusion import partition


def _conv(b, x, bias=True):
    w = b.constant(np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype("f") * 0.2, "w")
    args = [w] + ([b.constant(np.arange(16, dtype="f") / 16, "b")] if bias else [])
    return b.op("conv", x, *args, pads=(1, 1, 1, 1)), w


def _torch_conv(graph, w, x):
    bias = graph.params.get("b")
    return torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(graph.params[w]),
                                      None if bias is None else torch.tensor(bias), padding=1)


def test_silu_diamond_fuses_into_the_conv_and_matches_torch():
    b = GraphBuilder("silu")
    x = b.input("x", (1, 8, 12, 12))
    c, w = _conv(b, x)
    out = b.op("mul", c, b.op("sigmoid", c))
    graph = b.build([out])
    assert [[n.op for n in g.nodes] for g in partition(graph)] == [["conv", "sigmoid", "mul"]]
    xs = np.random.default_rng(1).standard_normal((1, 8, 12, 12)).astype("f")
    t = _torch_conv(graph, w, xs)
    np.testing.assert_allclose(nacos.compile(graph)(xs)[0], (t * torch.sigmoid(t)).numpy(), rtol=1e-4, atol=1e-4)


def test_a_producer_read_outside_the_group_ends_it():
    b = GraphBuilder("residual")
    x = b.input("x", (1, 8, 12, 12))
    c, w = _conv(b, x, bias=False)
    act = b.op("mul", c, b.op("sigmoid", c))
    out = b.op("add", b.op("relu", act), c)  # c is read a third time, by the residual add
    graph = b.build([out])
    groups = partition(graph)
    assert [[n.op for n in g.nodes] for g in groups] == [["conv"], ["sigmoid", "mul", "relu", "add"]]
    xs = np.random.default_rng(2).standard_normal((1, 8, 12, 12)).astype("f")
    t = _torch_conv(graph, w, xs)
    want = (torch.relu(t * torch.sigmoid(t)) + t).numpy()
    np.testing.assert_allclose(nacos.compile(graph)(xs)[0], want, rtol=1e-4, atol=1e-4)


def test_graph_outputs_are_never_fused_away():
    b = GraphBuilder("two_outputs")
    x = b.input("x", (1, 8, 12, 12))
    c, _ = _conv(b, x)
    r = b.op("relu", c)
    graph = b.build([c, r])
    assert [[n.op for n in g.nodes] for g in partition(graph)] == [["conv"], ["relu"]]
