"""Small example models for GOS, built directly as IR graphs (seeded He-normal weights, zero biases).

Used by the tests, ``bench/gos.py`` and docs/gos.md. Inputs are one 16×16 grey image (digits) unless stated:

* :func:`vgg_style` — plain stacks of 3×3 convs, two per stage, 2×2 max pools between stages;
* :func:`resnet_style` — a stem conv, then residual basic blocks (two 3×3 convs + identity, or a strided
  1×1 projection when the shape changes);
* :func:`tiny_cnn` — three convs, fast enough for end-to-end tests;
* :func:`attention` — one multi-head softmax attention layer over ``tokens`` × ``dim`` inputs.
"""

from __future__ import annotations

import math

import numpy as np

from ir.graph import Graph, GraphBuilder


class _Layers:
    def __init__(self, name: str, shape: tuple[int, ...], seed: int) -> None:
        self.b = GraphBuilder(name)
        self.rng = np.random.default_rng(seed)
        self.x = self.b.input("x", shape)

    def shape(self, v: str) -> tuple[int, ...]:
        return self.b.type_of(v).shape

    def conv(self, x: str, cout: int, k: int = 3, stride: int = 1, relu: bool = True, gain: float = 1.0,
             name: str = "conv") -> str:
        cin = self.shape(x)[1]
        std = gain * math.sqrt(2.0 / (cin * k * k))
        w = self.b.constant(self.rng.normal(0, std, (cout, cin, k, k)).astype(np.float32), name + ".w")
        bias = self.b.constant(np.zeros(cout, np.float32), name + ".b")
        p = k // 2
        y = self.b.op("conv", x, w, bias, strides=(stride, stride), pads=(p, p, p, p), dilations=(1, 1), groups=1,
                      name=name)
        return self.b.op("relu", y) if relu else y

    def dense(self, x: str, out: int, name: str = "dense") -> str:
        fan_in = self.shape(x)[-1]
        w = self.b.constant(self.rng.normal(0, math.sqrt(1.0 / fan_in), (out, fan_in)).astype(np.float32),
                            name + ".w")
        return self.b.op("dense", x, w, self.b.constant(np.zeros(out, np.float32), name + ".b"), name=name)

    def pool(self, x: str) -> str:
        return self.b.op("maxpool", x, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1),
                         ceil_mode=0)

    def head(self, x: str, classes: int) -> Graph:
        n, c = self.shape(x)[:2]
        flat = self.b.op("reshape", self.b.op("global_avgpool", x), shape=(n, c))
        return self.b.build([self.dense(flat, classes, "classifier")])


def vgg_style(widths=(32, 64, 128), in_shape=(1, 1, 16, 16), classes: int = 10, seed: int = 0) -> Graph:
    L = _Layers("vgg_style", in_shape, seed)
    x = L.x
    for s, w in enumerate(widths):
        if s:
            x = L.pool(x)
        x = L.conv(x, w, name=f"s{s + 1}.conv1")
        x = L.conv(x, w, name=f"s{s + 1}.conv2")
    return L.head(x, classes)


def resnet_style(widths=(32, 64, 128), in_shape=(1, 1, 16, 16), classes: int = 10, seed: int = 0) -> Graph:
    L = _Layers("resnet_style", in_shape, seed)
    x = L.conv(L.x, widths[0], name="stem")
    for s, w in enumerate(widths):
        stride = 1 if s == 0 else 2
        h = L.conv(x, w, stride=stride, name=f"s{s + 1}.conv1")
        h = L.conv(h, w, relu=False, gain=0.5, name=f"s{s + 1}.conv2")
        short = x if stride == 1 and L.shape(x)[1] == w else \
            L.conv(x, w, k=1, stride=stride, relu=False, name=f"s{s + 1}.proj")
        x = L.b.op("relu", L.b.op("add", h, short))
    return L.head(x, classes)


def tiny_cnn(channels: int = 8, in_shape=(1, 1, 16, 16), classes: int = 10, seed: int = 0) -> Graph:
    L = _Layers("tiny_cnn", in_shape, seed)
    x = L.conv(L.x, channels, name="conv1")
    x = L.conv(x, 2 * channels, stride=2, name="conv2")
    x = L.conv(x, 2 * channels, name="conv3")
    return L.head(x, classes)


def attention(tokens: int = 32, dim: int = 16, heads: int = 2, classes: int = 10, seed: int = 0) -> Graph:
    """x [1, tokens, dim] → q, k, v (dense) → per-head softmax(q·kᵀ/√d)·v → dense → mean over tokens → logits."""
    L = _Layers("attention", (1, tokens, dim), seed)
    d = dim // heads
    split = lambda t: L.b.op("transpose", L.b.op("reshape", t, shape=(1, tokens, heads, d)),  # noqa: E731
                             perm=(0, 2, 1, 3))
    q, k, v = (split(L.dense(L.x, dim, n)) for n in ("q", "k", "v"))
    kt = L.b.op("transpose", k, perm=(0, 1, 3, 2))
    scores = L.b.op("mul", L.b.op("matmul", q, kt), L.b.constant(np.float32(1 / math.sqrt(d)), "scale"))
    attn = L.b.op("matmul", L.b.op("softmax", scores, axis=3), v, name="attn")
    merged = L.b.op("reshape", L.b.op("transpose", attn, perm=(0, 2, 1, 3)), shape=(1, tokens, dim))
    y = L.dense(merged, dim, "proj")
    pooled = L.b.op("reduce_mean", y, axes=(1,), keepdims=0)
    return L.b.build([L.dense(pooled, classes, "classifier")])
