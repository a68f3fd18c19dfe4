"""``mbv2``: a MobileNetV2 / ProxylessNAS-style space of inverted-residual stages.

Network: stem 3×3 conv (relu6) → a fixed MBConv (expansion 1, 3×3) → 5 searchable stages → 1×1 head conv →
global average pool → dense. Each stage chooses its depthwise ``kernel`` (3/5/7), ``expand`` ratio (3/4/6),
``depth`` and ``width``; its first block downsamples (see :func:`nacos.spaces.base.stride_plan`). 20 variables.
Widths are sized so 16×16 digits models stay under ~200k parameters; ``width_mult`` scales them.
"""

from __future__ import annotations

from typing import Sequence

from ir.graph import Graph
from nacos.spaces.base import Arch, LayerBuilder, SearchSpace, Variable, round_channels, stride_plan
from nacos.spaces.hyt import mbconv

STAGES = 5
WIDTHS = ((8, 12, 16), (12, 16, 24), (16, 24, 32), (24, 32, 40), (32, 40, 48))
DEPTHS = ((1, 2), (1, 2, 3), (1, 2, 3), (1, 2), (1, 2))


class MBV2Space(SearchSpace):
    """MobileNetV2 / ProxylessNAS-style space (see the module docstring)."""

    name = "mbv2"

    def __init__(self, width_mult: float = 1.0, head: int = 96) -> None:
        self.width_mult = float(width_mult)
        self.head = int(head)
        vs = []
        for s in range(STAGES):
            p = f"s{s + 1}"
            vs += [Variable(f"{p}_kernel", (3, 5, 7), "depthwise kernel size"),
                   Variable(f"{p}_expand", (3, 4, 6), "expansion ratio of the inverted residual"),
                   Variable(f"{p}_depth", DEPTHS[s], "inverted-residual blocks in the stage"),
                   Variable(f"{p}_width", WIDTHS[s], "output channels (× width_mult)")]
        self._vars = tuple(vs)

    def variables(self) -> tuple[Variable, ...]:
        return self._vars

    def to_graph(self, arch: Arch, input_shape: Sequence[int] = (1, 1, 16, 16), num_classes: int = 10,
                 seed: int = 0) -> Graph:
        lb = LayerBuilder(f"mbv2_{arch.archid}", input_shape, seed)
        ch = lambda c: round_channels(c * self.width_mult, 4)  # noqa: E731
        stem_stride, strides = stride_plan(min(input_shape[2:]), STAGES)
        x = lb.conv(lb.x, ch(8), 3, stem_stride, act="relu6", name="stem")
        # MobileNetV2's first bottleneck (expansion 1): depthwise 3×3 then a linear 1×1 projection
        x = lb.conv(x, ch(8), 3, groups=ch(8), act="relu6", name="first.dw")
        x = lb.conv(x, ch(8), 1, name="first.project")
        for s in range(STAGES):
            p = f"s{s + 1}"
            for d in range(arch[f"{p}_depth"]):
                x = mbconv(lb, x, ch(arch[f"{p}_width"]), arch[f"{p}_kernel"], arch[f"{p}_expand"],
                           strides[s] if d == 0 else 1, f"{p}.b{d}", act="relu6")
        x = lb.conv(x, round_channels(self.head * self.width_mult, 4), 1, act="relu6", name="head")
        return lb.build(lb.classifier(x, num_classes))
