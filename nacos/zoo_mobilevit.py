"""MobileViT-XXS (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer", 2021), written after Apple's reference implementation (ml-cvnets, ``mobilevit.py`` v1, config
``xx_small``). Exposed as :func:`nacos.zoo.mobilevit_xxs`.

Layout (channels 16/24/48/64/80, transformer widths d = 64/80/96, 2×2 patches, 4 heads, FFN 2·d, SiLU
throughout)::

    stem   conv3×3 s2 3→16, BN, SiLU
    layer1 MV2(16→16, expand 2)
    layer2 MV2(16→24, s2), MV2(24→24) ×2
    layer3 MV2(24→48, s2),  MobileViT block(48, d=64, L=2)
    layer4 MV2(48→64, s2),  MobileViT block(64, d=80, L=4)
    layer5 MV2(64→80, s2),  MobileViT block(80, d=96, L=3)
    head   conv1×1 80→320, BN, SiLU; global average pool; linear 320→classes

A MobileViT block: local conv3×3 (BN, SiLU) → conv1×1 to d → unfold into 2×2 patches ([B·4, N, d]) → L
pre-norm transformer layers (multi-head attention from ``nn.Linear``/matmul/softmax, FFN with SiLU) → LayerNorm
→ fold → conv1×1 back to C (BN, SiLU) → concat with the block input → fusion conv3×3 (BN, SiLU).

Feature maps whose side is not a multiple of the patch size (7×7 in layer5 at 224×224 input; 1×1 at 32×32) are
resized bilinearly to the next multiple before unfolding and back after folding, as the reference does with
``F.interpolate(..., mode="bilinear", align_corners=False)``. Here the resize is written as two products with
constant interpolation matrices (bilinear resizing is separable), so the exported graph needs only
dense/transpose ops that both nacos frontends import; it equals ``F.interpolate`` to float rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MobileViT", "MobileViTBlock", "mobilevit_xxs", "resize_matrix"]


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


class MV2(nn.Module):
    """MobileNetV2 inverted residual with SiLU (cvnets' ``InvertedResidual`` as MobileViT uses it)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 2) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(_conv_bn(cin, hidden), _conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                   _conv_bn(hidden, cout, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class Attention(nn.Module):
    """Multi-head self-attention on [B, N, d] with a fused qkv projection (cvnets' ``MultiHeadAttention``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim ** -0.5
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv_proj(x).reshape(b, n, 3, self.heads, self.head_dim).transpose(1, 3)  # [b, h, 3, n, hd]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        attn = torch.softmax(torch.matmul(q * self.scaling, k.transpose(-1, -2)), dim=-1)
        return self.out_proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm encoder layer: x + MHA(LN(x)), then x + FFN(LN(x)) with FFN = Linear → SiLU → Linear."""

    def __init__(self, dim: int, ffn_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] matrix of 1-D linear interpolation with ``align_corners=False`` (PyTorch's rule)."""
    m = np.zeros((size_out, size_in), dtype=np.float32)
    scale = size_in / size_out
    for o in range(size_out):
        src = max((o + 0.5) * scale - 0.5, 0.0)  # PyTorch clamps negative source coordinates to 0
        i0 = min(int(math.floor(src)), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        frac = src - i0
        m[o, i0] += 1.0 - frac
        m[o, i1] += frac
    return m


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear resize of [B, C, H, W] to [B, C, h, w] as X·Rwᵀ then (·Rhᵀ on the transposed map)."""
    if x.shape[-2:] == (h, w):
        return x
    rw = torch.from_numpy(resize_matrix(x.shape[-1], w))
    rh = torch.from_numpy(resize_matrix(x.shape[-2], h))
    x = torch.matmul(x, rw.t())                                   # [B, C, H, w]
    return torch.matmul(x.transpose(-1, -2), rh.t()).transpose(-1, -2)  # [B, C, h, w]


class MobileViTBlock(nn.Module):
    """Local conv representation → unfold → transformer layers → fold → projection → fusion with the input."""

    def __init__(self, channels: int, dim: int, depth: int, ffn_dim: int, heads: int = 4, patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.local_rep = nn.Sequential(_conv_bn(channels, channels, 3), nn.Conv2d(channels, dim, 1, bias=False))
        self.global_rep = nn.Sequential(*[TransformerLayer(dim, ffn_dim, heads) for _ in range(depth)],
                                        nn.LayerNorm(dim))
        self.conv_proj = _conv_bn(dim, channels)
        self.fusion = _conv_bn(2 * channels, channels, 3)

    def unfold(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """[B, C, H, W] → [B·P, N, C] with P = patch area and N = patches (cvnets' reshape/transpose sequence)."""
        b, c, h, w = x.shape
        p = self.patch
        nh, nw = math.ceil(h / p), math.ceil(w / p)
        x = _resize(x, nh * p, nw * p)
        x = x.reshape(b * c * nh, p, nw, p).transpose(1, 2)          # [B·C·nh, nw, p, p]
        x = x.reshape(b, c, nh * nw, p * p).transpose(1, 3)          # [B, P, N, C]
        return x.reshape(b * p * p, nh * nw, c), (b, c, h, w, nh, nw)

    def fold(self, x: torch.Tensor, info: tuple) -> torch.Tensor:
        b, c, h, w, nh, nw = info
        p = self.patch
        x = x.reshape(b, p * p, nh * nw, c).transpose(1, 3)          # [B, C, N, P]
        x = x.reshape(b * c * nh, nw, p, p).transpose(1, 2)          # [B·C·nh, p, nw, p]
        return _resize(x.reshape(b, c, nh * p, nw * p), h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, info = self.unfold(self.local_rep(x))
        y = self.conv_proj(self.fold(self.global_rep(patches), info))
        return self.fusion(torch.cat([x, y], dim=1))


class MobileViT(nn.Module):
    """MobileViT v1; the defaults are the XXS configuration."""

    def __init__(self, num_classes: int = 1000, channels=(16, 16, 24, 48, 64, 80), dims=(64, 80, 96),
                 depths=(2, 4, 3), expand: int = 2, heads: int = 4, patch: int = 2, last_expand: int = 4) -> None:
        super().__init__()
        c0, c1, c2, c3, c4, c5 = channels
        self.stem = _conv_bn(3, c0, 3, stride=2)
        self.layer1 = MV2(c0, c1, 1, expand)
        self.layer2 = nn.Sequential(MV2(c1, c2, 2, expand), MV2(c2, c2, 1, expand), MV2(c2, c2, 1, expand))
        stages = []
        for cin, cout, d, depth in zip((c2, c3, c4), (c3, c4, c5), dims, depths):
            stages.append(nn.Sequential(MV2(cin, cout, 2, expand),
                                        MobileViTBlock(cout, d, depth, ffn_dim=2 * d, heads=heads, patch=patch)))
        self.layer3, self.layer4, self.layer5 = stages
        self.conv_1x1_exp = _conv_bn(c5, last_expand * c5)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(last_expand * c5, num_classes))
        self._init()

    def _init(self) -> None:
        # as cvnets: kaiming-normal convs, small-normal linears, identity norms (then LN made observable below)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                # LayerNorm's default affine is the identity, which would hide import mistakes: randomize it
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        x = self.conv_1x1_exp(self.layer5(self.layer4(self.layer3(x))))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def mobilevit_xxs(num_classes: int = 1000) -> nn.Module:
    """MobileViT-XXS (1.27 M parameters at 1000 classes) for [B, 3, H, W] inputs, e.g. 224×224 or 32×32."""
    return MobileViT(num_classes).eval()
