"""Normalizations: inference batch norm, layer norm, softmax."""

from __future__ import annotations

import sympy

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, axes, broadcast_index, index_vars, read, tensor
from ir.registry import OpDef, register_op
from operators.common import normalize_axis, same_dtype


def _eps(attrs):
    return sympy.Float(float(attrs.get("epsilon", 1e-5)))


# ---- batchnorm ---------------------------------------------------------------------------------------
def batchnorm_infer(attrs, in_types):
    dtype = same_dtype(in_types, "batchnorm")
    x = in_types[0]
    if len(x.shape) < 2:
        raise ValueError(f"batchnorm: input {x} needs rank ≥ 2 (channels at axis 1)")
    for name, t in zip(("scale", "bias", "mean", "var"), in_types[1:]):
        if t.shape != (x.shape[1],):
            raise ValueError(f"batchnorm: {name} shape {t.shape} should be ({x.shape[1]},)")
    return TensorType(x.shape, dtype)


def batchnorm_instruction(attrs, in_types, out_type):
    """One stage: Y = (X − mean[c]) · scale[c] / √(var[c] + ε) + bias[c] (running statistics, no training)."""
    i = axes("i", len(out_type.shape))
    c = i[1]
    body = (tensor("X")[i] - tensor("mean")[c]) * tensor("scale")[c] / sympy.sqrt(tensor("var")[c] + _eps(attrs)) \
        + tensor("bias")[c]
    return Instruction(("X", "scale", "bias", "mean", "var"), (Stage("Y", i, out_type.shape, body),))


def batchnorm_torch(attrs, x, scale, bias, mean, var):
    import torch.nn.functional as F

    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(attrs.get("epsilon", 1e-5)))


def batchnorm_onnx(attrs, ins, out, ctx):
    from onnx import helper

    return [helper.make_node("BatchNormalization", list(ins), [out], epsilon=float(attrs.get("epsilon", 1e-5)))]


register_op(OpDef(
    "batchnorm", batchnorm_infer, batchnorm_instruction, batchnorm_torch, batchnorm_onnx,
    weight_inputs=(1, 2), arity=(5, 5),
    doc="inference batch norm over axis 1: (X − mean)·scale/√(var + epsilon) + bias; "
        "inputs X, scale, bias, mean, var",
    example=lambda: ({"epsilon": 1e-5}, (TensorType((2, 3, 4, 4)),) + (TensorType((3,)),) * 4),
))


# ---- layernorm ---------------------------------------------------------------------------------------
def _layernorm_axis(attrs, x):
    return normalize_axis(int(attrs.get("axis", -1)), len(x.shape), "layernorm") if x.shape else None


def layernorm_infer(attrs, in_types):
    dtype = same_dtype(in_types, "layernorm")
    x = in_types[0]
    if not x.shape:
        raise ValueError("layernorm: input must have rank ≥ 1")
    norm = x.shape[_layernorm_axis(attrs, x):]
    for name, t in zip(("scale", "bias"), in_types[1:]):
        s = t.shape
        if not s or len(s) > len(norm) or any(d not in (1, n) for d, n in zip(s, norm[len(norm) - len(s):])):
            raise ValueError(f"layernorm: {name} shape {s} should have rank ≥ 1 and broadcast to the "
                             f"normalized shape {norm}")
    return TensorType(x.shape, dtype)


def layernorm_instruction(attrs, in_types, out_type):
    """mean over the normalized dims → centered X and its variance → normalize, then · scale + bias."""
    x = in_types[0]
    axis = _layernorm_axis(attrs, x)
    i = axes("i", len(x.shape))
    red = axes("r", len(x.shape) - axis)
    lead, norm = i[:axis], i[axis:]
    count = 1
    for d in x.shape[axis:]:
        count *= d
    stages = [  # mean and var are per row of the leading dims (rank 0 when axis is 0, read as [0])
        Stage("mean", lead, x.shape[:axis], tensor("X")[lead + red] / count, "sum", red, x.shape[axis:]),
        Stage("xc", i, x.shape, tensor("X")[i] - read("mean", lead)),
        Stage("var", lead, x.shape[:axis], tensor("xc")[lead + red] ** 2 / count, "sum", red, x.shape[axis:]),
    ]
    y = tensor("xc")[i] / sympy.sqrt(read("var", lead) + _eps(attrs))
    names = ("X", "scale", "bias")[: len(in_types)]
    if len(in_types) > 1:
        y = y * tensor("scale")[broadcast_index(in_types[1].shape, norm)]
    if len(in_types) > 2:
        y = y + tensor("bias")[broadcast_index(in_types[2].shape, norm)]
    stages.append(Stage("Y", i, x.shape, y))
    return Instruction(names, tuple(stages))


def layernorm_torch(attrs, x, scale=None, bias=None):
    import torch.nn.functional as F

    axis = normalize_axis(int(attrs.get("axis", -1)), x.dim(), "layernorm")
    norm = tuple(x.shape[axis:])
    eps = float(attrs.get("epsilon", 1e-5))
    if all(t is None or tuple(t.shape) == norm for t in (scale, bias)):
        return F.layer_norm(x, norm, scale, bias, eps)
    y = F.layer_norm(x, norm, None, None, eps)  # broadcast scale/bias: apply them by hand
    y = y if scale is None else y * scale
    return y if bias is None else y + bias


def layernorm_onnx(attrs, ins, out, ctx):
    import numpy as np
    from onnx import helper

    shape = ctx.shape(ins[0])
    axis = normalize_axis(int(attrs.get("axis", -1)), len(shape), "layernorm")
    ins = list(ins)
    if len(ins) == 1:  # ONNX requires Scale
        ins.append(ctx.initializer(np.ones(shape[axis:]), "ln_scale", like=ins[0]))
    return [helper.make_node("LayerNormalization", ins, [out], axis=axis,
                             epsilon=float(attrs.get("epsilon", 1e-5)))]


register_op(OpDef(
    "layernorm", layernorm_infer, layernorm_instruction, layernorm_torch, layernorm_onnx,
    weight_inputs=(1, 2), arity=(1, 3),
    doc="layer norm over the dims axis..last: (X − mean)/√(var + epsilon) · scale + bias (scale, bias optional)",
    example=lambda: ({"axis": 2, "epsilon": 1e-5}, (TensorType((2, 3, 8)), TensorType((8,)), TensorType((8,)))),
))


# ---- softmax -----------------------------------------------------------------------------------------
def softmax_infer(attrs, in_types):
    x = in_types[0]
    if not x.shape:
        raise ValueError("softmax: input must have rank ≥ 1")
    normalize_axis(int(attrs.get("axis", -1)), len(x.shape), "softmax")
    return x


def softmax_instruction(attrs, in_types, out_type):
    """max → exp(x − max) → sum → scale by the reciprocal: the max keeps exp from overflowing, as every real kernel
    does."""
    shape = out_type.shape
    a = normalize_axis(int(attrs.get("axis", -1)), len(shape), "softmax")
    i = axes("i", len(shape))
    (k,) = index_vars("k")
    along = i[:a] + (k,) + i[a + 1:]  # i with the softmax axis replaced by the reduction variable
    rows, row_shape = i[:a] + i[a + 1:], shape[:a] + shape[a + 1:]  # M and S have one value per row
    return Instruction(("X",), (
        Stage("M", rows, row_shape, tensor("X")[along], "max", (k,), (shape[a],)),
        Stage("E", i, shape, sympy.exp(tensor("X")[i] - read("M", rows))),
        Stage("S", rows, row_shape, tensor("E")[along], "sum", (k,), (shape[a],)),
        # one reciprocal per row, then a multiply per element: a vector divide costs several multiplies
        Stage("R", rows, row_shape, 1 / read("S", rows)),
        Stage("Y", i, shape, tensor("E")[i] * read("R", rows)),
    ))


def softmax_torch(attrs, x):
    import torch

    return torch.softmax(x, normalize_axis(int(attrs.get("axis", -1)), x.dim(), "softmax"))


def softmax_onnx(attrs, ins, out, ctx):
    from onnx import helper

    axis = normalize_axis(int(attrs.get("axis", -1)), len(ctx.shape(ins[0])), "softmax")
    return [helper.make_node("Softmax", list(ins), [out], axis=axis)]


register_op(OpDef(
    "softmax", softmax_infer, softmax_instruction, softmax_torch, softmax_onnx,
    doc="softmax along one axis: exp(x − max) / Σ exp(x − max)",
    example=lambda: ({"axis": 1}, (TensorType((2, 5, 3)),)),
))


# ---- local response norm (AlexNet, GoogLeNet) -------------------------------------------------------------
def _lrn_window(attrs):
    size = int(attrs["size"])
    if size < 1:
        raise ValueError(f"lrn: size must be ≥ 1, got {size}")
    return size, (size - 1) // 2, size - 1 - (size - 1) // 2


def lrn_infer(attrs, in_types):
    x = in_types[0]
    if len(x.shape) < 3:
        raise ValueError(f"lrn: input {x} needs rank ≥ 3 (N, C, spatial...)")
    _lrn_window(attrs)
    return x


def lrn_instruction(attrs, in_types, out_type):
    """ONNX LRN: Y = X · (bias + α/size · Σ_{channel window} X²)^(−β); the window is zero-padded at the ends."""
    from operators.conv import pad_stage

    x = in_types[0]
    size, begin, end = _lrn_window(attrs)
    rank = len(x.shape)
    pads = (0,) * rank
    pads = tuple(begin if d == 1 else 0 for d in range(rank)) + tuple(end if d == 1 else 0 for d in range(rank))
    pad = pad_stage("Xp", "X", x.shape, 0, pads)
    i = axes("i", rank)
    (r,) = index_vars("r")
    window = tensor("Xp")[(i[0], i[1] + r) + i[2:]]
    ssum = Stage("S", i, x.shape, window ** 2, "sum", (r,), (size,))
    alpha = sympy.Float(float(attrs.get("alpha", 1e-4)))
    beta = sympy.Float(float(attrs.get("beta", 0.75)))
    bias = sympy.Float(float(attrs.get("bias", 1.0)))
    body = tensor("X")[i] * (bias + alpha / size * tensor("S")[i]) ** (-beta)
    return Instruction(("X",), (pad, ssum, Stage("Y", i, x.shape, body)))


def lrn_torch(attrs, x):
    import torch.nn.functional as F

    size, begin, end = _lrn_window(attrs)
    sq = F.pad(x * x, (0, 0) * (x.dim() - 2) + (begin, end))
    ssum = sum(sq[:, k: k + x.shape[1]] for k in range(size))
    return x * (float(attrs.get("bias", 1.0)) + float(attrs.get("alpha", 1e-4)) / size * ssum) ** (
        -float(attrs.get("beta", 0.75)))


def lrn_onnx(attrs, ins, out, ctx):
    from onnx import helper

    return [helper.make_node("LRN", list(ins), [out], size=int(attrs["size"]), alpha=float(attrs.get("alpha", 1e-4)),
                             beta=float(attrs.get("beta", 0.75)), bias=float(attrs.get("bias", 1.0)))]


register_op(OpDef(
    "lrn", lrn_infer, lrn_instruction, lrn_torch, lrn_onnx,
    doc="local response normalization across channels (ONNX LRN): size, alpha, beta, bias",
    example=lambda: ({"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, (TensorType((1, 8, 4, 4)),)),
))
