"""Small helpers shared by the op definitions."""

from __future__ import annotations

from typing import Sequence

from ir.graph import TensorType


def floating_only(op: str, dtype: str) -> None:
    """Refuse integer inputs to an op whose math is float math: a division (the instruction's x / y is a true
    division, where an integer op truncates in ONNX or floors in Python), exp, erf and the like."""
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(f"{op}: inputs of dtype {dtype} are not supported yet (floating-point only)")


def same_dtype(in_types: Sequence[TensorType], op: str) -> str:
    dtypes = {t.dtype for t in in_types}
    if len(dtypes) != 1:
        raise ValueError(f"{op}: inputs have different dtypes {sorted(dtypes)}")
    return in_types[0].dtype


def broadcast_shapes(a: Sequence[int], b: Sequence[int], op: str) -> tuple[int, ...]:
    """Numpy broadcasting of two shapes, with an error naming both."""
    out = []
    for k in range(max(len(a), len(b))):
        x = a[len(a) - 1 - k] if k < len(a) else 1
        y = b[len(b) - 1 - k] if k < len(b) else 1
        if x != y and 1 not in (x, y):
            raise ValueError(f"{op}: shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(max(x, y))
    return tuple(reversed(out))


def normalize_axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} out of range for rank {rank}")
    return axis % rank


def conv_out_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                  ceil_mode: bool = False) -> int:
    span = dilation * (kernel - 1) + 1
    num = size + pad_begin + pad_end - span
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1  # the last window must start inside the input or left padding (PyTorch/ONNX rule)
    return out


def spatial_attrs(attrs: dict, nd: int, kernel: Sequence[int]) -> tuple[tuple, tuple, tuple]:
    """strides, pads (begin..., end...), dilations with defaults for an nd-dimensional window op."""
    strides = tuple(attrs.get("strides", (1,) * nd))
    pads = tuple(attrs.get("pads", (0,) * (2 * nd)))
    dilations = tuple(attrs.get("dilations", (1,) * nd))
    if len(strides) != nd or len(pads) != 2 * nd or len(dilations) != nd:
        raise ValueError(f"expected {nd} strides/dilations and {2 * nd} pads, got {strides}, {pads}, {dilations}")
    if min(strides) < 1 or min(dilations) < 1 or min(pads, default=0) < 0:
        raise ValueError(f"strides/dilations must be ≥1 and pads ≥0, got {strides}, {pads}, {dilations}")
    return strides, pads, dilations
