"""``resnet``: an AnalogNAS-style ResNet space.

Network: stem k×k conv (``channels``) → ``stages`` macro blocks → global average pool → dense. Macro block ``i``
has ``s{i}_blocks`` residual blocks of ``s{i}_type`` (``basic``: two 3×3 convs; ``bottleneck``: 1×1 reduce to
half the width, 3×3, 1×1 expand), each block summing ``s{i}_branches`` parallel conv branches (AnalogNAS'
branches) onto its shortcut; the width grows by ``s{i}_widen`` at each macro block (the first keeps the stem
width) and macro blocks after the first downsample by 2. Variables of macro blocks beyond ``stages`` are
inactive. 14 variables. Widths are sized so 16×16 digits models stay under ~200k parameters.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ir.graph import Graph
from nacos.spaces.base import Arch, LayerBuilder, SearchSpace, Variable, round_channels, stride_plan

MAX_STAGES = 3


class ResNetSpace(SearchSpace):
    """AnalogNAS-style ResNet space (see the module docstring)."""

    name = "resnet"

    def __init__(self, width_mult: float = 1.0) -> None:
        self.width_mult = float(width_mult)
        vs = [Variable("channels", (8, 12, 16), "initial (stem) channels (× width_mult)"),
              Variable("stem_kernel", (3, 5), "stem conv kernel size"),
              Variable("stages", (1, 2, 3), "macro blocks (M)")]
        for s in range(MAX_STAGES):
            p = f"s{s + 1}"
            vs += [Variable(f"{p}_blocks", (1, 2), "residual blocks in the macro block (R)"),
                   Variable(f"{p}_type", ("basic", "bottleneck"), "residual block type (B)"),
                   Variable(f"{p}_widen", (1.0, 1.5, 2.0), "width growth at this macro block (WF)"),
                   Variable(f"{p}_branches", (1, 2), "parallel conv branches per block")]
        self._vars = tuple(v for v in vs if v.name != "s1_widen")  # the first macro block keeps the stem width

    def variables(self) -> tuple[Variable, ...]:
        return self._vars

    def active(self, values: Mapping[str, Any]) -> set[str]:
        m = int(values["stages"])
        stage = lambda name: int(name[1]) if re.match(r"s\d_", name) else 0  # noqa: E731
        return {v.name for v in self._vars if stage(v.name) <= m}

    def to_graph(self, arch: Arch, input_shape: Sequence[int] = (1, 1, 16, 16), num_classes: int = 10,
                 seed: int = 0) -> Graph:
        lb = LayerBuilder(f"resnet_{arch.archid}", input_shape, seed)
        stages = arch["stages"]
        stem_stride, strides = stride_plan(min(input_shape[2:]), MAX_STAGES)
        width = round_channels(arch["channels"] * self.width_mult, 4)
        x = lb.conv(lb.x, width, arch["stem_kernel"], stem_stride, act="relu", name="stem")
        if min(input_shape[2:]) >= 128:  # ImageNet-sized inputs: the usual stem max pool
            x = lb.b.op("maxpool", x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1),
                        ceil_mode=0)
        for s in range(stages):
            p = f"s{s + 1}"
            if s > 0:
                width = round_channels(width * arch[f"{p}_widen"], 4)
            for d in range(arch[f"{p}_blocks"]):
                x = residual_block(lb, x, width, strides[s] if d == 0 else 1, arch[f"{p}_type"],
                                   arch[f"{p}_branches"], f"{p}.b{d}")
        return lb.build(lb.classifier(x, num_classes))


def residual_block(lb: LayerBuilder, x: str, cout: int, stride: int, kind: str, branches: int, name: str) -> str:
    """relu(shortcut(x) + Σ branches(x)); the shortcut is a strided 1×1 conv when the shape changes."""
    cin = lb.shape(x)[1]
    total = None
    for j in range(branches):
        n = f"{name}.br{j}"
        if kind == "basic":
            h = lb.conv(x, cout, 3, stride, act="relu", name=n + ".conv1")
            h = lb.conv(h, cout, 3, last=True, name=n + ".conv2")
        else:
            mid = max(4, cout // 2)
            h = lb.conv(x, mid, 1, act="relu", name=n + ".reduce")
            h = lb.conv(h, mid, 3, stride, act="relu", name=n + ".conv")
            h = lb.conv(h, cout, 1, last=True, name=n + ".expand")
        total = h if total is None else lb.add(total, h)
    shortcut = x if stride == 1 and cin == cout else lb.conv(x, cout, 1, stride, name=name + ".shortcut")
    return lb.act(lb.add(shortcut, total), "relu")
