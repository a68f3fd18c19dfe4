"""``hyt``: a HyT-NAS-style hybrid conv/attention space on a 5-stage MobileViT-like backbone.

Network: stem 3×3 conv → 5 stages → global average pool → dense. Stage ``s`` has a ``block`` choice that picks
its operator family and the one setting that differs between the families:

* ``mbconv3`` / ``mbconv5`` / ``mbconv7`` — ``depth`` inverted-residual blocks (1×1 expand by ``expand``, k×k
  depthwise, 1×1 project; hardswish; identity residual when shapes agree);
* ``attn1`` / ``attn2`` / ``attn4`` — a depthwise-separable transition conv (which downsamples and sets the
  width) followed by ``depth`` transformer layers with that many heads: the feature map becomes tokens
  (MobileViT unfolding: ``patch``×``patch`` pixel positions attend separately across the patches), pre-norm
  layernorm, multi-head self-attention (dense/reshape/transpose/matmul/mul/softmax), an FFN of width
  ``expand``·C with gelu, residual adds, then folds back to the map.

``width``, ``depth`` and ``expand`` (MBConv expansion ratio or FFN ratio) are shared by both families, so a stage
has 4 variables; with ``stem`` and the global ``patch`` the space has 22. Stage 1 is conv only (attention on the
largest map is where hybrid nets are least efficient, and it would dominate cost at 224×224). A patch size that
does not divide a stage's map falls back to 1, and it grows (by 2s) while a stage would have more than
``max_tokens`` tokens, so every arch builds at every input size. On 16×16 digits the models range from ~3k to
~215k parameters (MCU-sized to small), so accuracy/cost trade-offs exist; ``width_mult`` scales all widths for
larger inputs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ir.graph import Graph
from nacos.spaces.base import Arch, LayerBuilder, SearchSpace, Variable, round_channels, stride_plan

STAGES = 5
CONV_BLOCKS = ("mbconv3", "mbconv5", "mbconv7")
ATTN_BLOCKS = ("attn1", "attn2", "attn4")
# from MCU-sized (a few thousand parameters) to ~200k on 16×16 inputs: a search needs the whole trade-off range
WIDTHS = ((4, 8, 16), (8, 16, 24), (8, 16, 32), (16, 32, 48), (16, 32, 64))
DEPTHS = ((1, 2), (1, 2), (1, 2), (1, 2), (1, 2))


class HyTSpace(SearchSpace):
    """HyT-NAS-style hybrid space (see the module docstring)."""

    name = "hyt"

    def __init__(self, width_mult: float = 1.0, max_tokens: int = 1024) -> None:
        self.width_mult = float(width_mult)
        self.max_tokens = int(max_tokens)
        vs = [Variable("stem", (4, 8, 16), "stem conv output channels")]
        for s in range(STAGES):
            blocks = CONV_BLOCKS if s == 0 else CONV_BLOCKS + ATTN_BLOCKS
            vs += [Variable(f"s{s + 1}_block", blocks, "mbconvK: MBConv with a K×K depthwise kernel; "
                                                       "attnH: transformer layers with H heads"),
                   Variable(f"s{s + 1}_width", WIDTHS[s], "output channels (× width_mult)"),
                   Variable(f"s{s + 1}_depth", DEPTHS[s], "blocks (MBConv) or transformer layers"),
                   Variable(f"s{s + 1}_expand", (2, 3, 4), "MBConv expansion ratio, or FFN width / channels")]
        vs.append(Variable("patch", (1, 2), "attention patch size (MobileViT unfolding)"))
        self._vars = tuple(vs)

    def variables(self) -> tuple[Variable, ...]:
        return self._vars

    def active(self, values: Mapping[str, Any]) -> set[str]:
        names = {v.name for v in self._vars}
        if not any(str(values[f"s{s + 1}_block"]).startswith("attn") for s in range(STAGES)):
            names.discard("patch")  # no attention stage: the patch size means nothing
        return names

    # ---- graph --------------------------------------------------------------------------------------------
    def to_graph(self, arch: Arch, input_shape: Sequence[int] = (1, 1, 16, 16), num_classes: int = 10,
                 seed: int = 0) -> Graph:
        lb = LayerBuilder(f"hyt_{arch.archid}", input_shape, seed)
        stem_stride, strides = stride_plan(min(input_shape[2:]), STAGES)
        x = lb.conv(lb.x, self._ch(arch["stem"]), 3, stem_stride, act="hardswish", name="stem")
        for s in range(STAGES):
            p = f"s{s + 1}"
            block, width = arch[f"{p}_block"], self._ch(arch[f"{p}_width"])
            depth, expand = arch[f"{p}_depth"], arch[f"{p}_expand"]
            if block.startswith("mbconv"):
                k = int(block[len("mbconv"):])
                for d in range(depth):
                    x = mbconv(lb, x, width, k, expand, strides[s] if d == 0 else 1, f"{p}.b{d}")
            else:
                heads = int(block[len("attn"):])
                # depthwise-separable transition: downsample and set the width before the tokens
                x = lb.conv(x, lb.shape(x)[1], 3, strides[s], groups=lb.shape(x)[1], act="hardswish",
                            name=f"{p}.dw")
                x = lb.conv(x, width, 1, act="hardswish", name=f"{p}.pw")
                x = attention_stage(lb, x, depth, heads, expand, self._patch(arch["patch"], lb.shape(x)), p)
        return lb.build(lb.classifier(x, num_classes))

    def _ch(self, c: int) -> int:
        return round_channels(c * self.width_mult, 4)

    def _patch(self, patch: int, shape: tuple[int, ...]) -> int:
        h, w = shape[2:]
        p = patch if h % patch == 0 and w % patch == 0 else 1
        while (h // p) * (w // p) > self.max_tokens and h % (2 * p) == 0 and w % (2 * p) == 0:
            p *= 2
        return p


def mbconv(lb: LayerBuilder, x: str, cout: int, k: int, expand: int, stride: int, name: str,
           act: str = "hardswish") -> str:
    """Inverted residual: 1×1 expand → k×k depthwise (stride) → 1×1 project, + x when shapes agree."""
    cin = lb.shape(x)[1]
    hidden = cin * expand
    h = lb.conv(x, hidden, 1, act=act, name=name + ".expand")
    h = lb.conv(h, hidden, k, stride, groups=hidden, act=act, name=name + ".dw")
    residual = stride == 1 and cin == cout
    h = lb.conv(h, cout, 1, last=residual, name=name + ".project")
    return lb.add(x, h) if residual else h


def attention_stage(lb: LayerBuilder, x: str, depth: int, heads: int, ffn_ratio: int, patch: int,
                    name: str) -> str:
    """Map [N, C, H, W] → tokens [N·p², HW/p², C] → ``depth`` pre-norm transformer layers → map."""
    b = lb.b
    n, c, h, w = lb.shape(x)
    hp, wp = h // patch, w // patch
    if patch == 1:
        t = b.op("transpose", b.op("reshape", x, shape=(n, c, h * w)), perm=(0, 2, 1))
    else:
        t = b.op("reshape", x, shape=(n, c, hp, patch, wp, patch))
        t = b.op("transpose", t, perm=(0, 3, 5, 2, 4, 1))            # [N, p, p, H/p, W/p, C]
        t = b.op("reshape", t, shape=(n * patch * patch, hp * wp, c))
    for d in range(depth):
        t = lb.add(t, self_attention(lb, lb.layernorm(t, f"{name}.l{d}.ln1"), heads, f"{name}.l{d}.attn"))
        f = lb.dense(lb.layernorm(t, f"{name}.l{d}.ln2"), c * ffn_ratio, act="gelu", gain=math.sqrt(2.0),
                     name=f"{name}.l{d}.ffn1")
        t = lb.add(t, lb.dense(f, c, last=True, name=f"{name}.l{d}.ffn2"))
    if patch == 1:
        return b.op("reshape", b.op("transpose", t, perm=(0, 2, 1)), shape=(n, c, h, w))
    t = b.op("reshape", t, shape=(n, patch, patch, hp, wp, c))
    t = b.op("transpose", t, perm=(0, 5, 3, 1, 4, 2))                # [N, C, H/p, p, W/p, p]
    return b.op("reshape", t, shape=(n, c, h, w))


def self_attention(lb: LayerBuilder, t: str, heads: int, name: str) -> str:
    """Multi-head self-attention on tokens [G, T, C]: softmax(Q·Kᵀ/√d)·V per head, then an output projection."""
    b = lb.b
    g, tokens, c = lb.shape(t)
    d = c // heads

    def split(v: str) -> str:  # [G, T, C] → [G, heads, T, d]
        return b.op("transpose", b.op("reshape", v, shape=(g, tokens, heads, d)), perm=(0, 2, 1, 3))

    q = split(lb.dense(t, c, name=name + ".q"))
    k = b.op("transpose", b.op("reshape", lb.dense(t, c, name=name + ".k"), shape=(g, tokens, heads, d)),
             perm=(0, 2, 3, 1))                                      # [G, heads, d, T]
    v = split(lb.dense(t, c, name=name + ".v"))
    scale = b.constant(np.full((1,), 1.0 / math.sqrt(d), np.float32), name + ".scale")
    att = b.op("softmax", b.op("mul", b.op("matmul", q, k), scale), axis=3)
    o = b.op("transpose", b.op("matmul", att, v), perm=(0, 2, 1, 3))  # [G, T, heads, d]
    o = b.op("reshape", o, shape=(g, tokens, c))
    return lb.dense(o, c, last=True, name=name + ".out")
