"""Convolutions (1-d and 2-d, strided, padded, dilated, grouped; depthwise is groups = C) and dense/Gemm."""

from __future__ import annotations

import sympy

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, idiv, index_vars, tensor
from ir.registry import OpDef, register_op
from operators.common import conv_out_size, same_dtype, spatial_attrs


def pad_stage(name: str, source: str, shape: tuple[int, ...], lead: int, pads: tuple[int, ...],
              value=0) -> Stage:
    """``name`` = ``source`` zero-padded on its last ``len(pads)//2`` dims (pads = begin..., end...)."""
    nd = len(pads) // 2
    idx = tuple(sympy.Symbol(f"p{i}", integer=True) for i in range(len(shape)))
    out_shape = list(shape)
    src_index = list(idx)
    cond = []
    for d in range(nd):
        axis = lead + d
        b, e = pads[d], pads[nd + d]
        out_shape[axis] = shape[axis] + b + e
        src_index[axis] = idx[axis] - b
        if b:
            cond.append(idx[axis] >= b)
        if e:
            cond.append(idx[axis] < shape[axis] + b)
    read = tensor(source)[tuple(src_index)]
    body = sympy.Piecewise((read, sympy.And(*cond)), (sympy.sympify(value), True)) if cond else read
    return Stage(name, idx, tuple(out_shape), body)


def _conv_parts(attrs, in_types):
    x, w = in_types[0], in_types[1]
    nd = len(x.shape) - 2
    if nd not in (1, 2, 3) or len(w.shape) != nd + 2:
        raise ValueError(f"conv: input {x} and weight {w} must both have rank 3, 4 or 5")
    groups = int(attrs.get("groups", 1))
    strides, pads, dilations = spatial_attrs(attrs, nd, w.shape[2:])
    n, c = x.shape[:2]
    k, cg = w.shape[:2]
    if groups < 1 or c % groups or k % groups or cg != c // groups:
        raise ValueError(f"conv: {c} input channels, {k} filters of {cg} channels and groups={groups} disagree")
    if len(in_types) == 3 and in_types[2].shape != (k,):
        raise ValueError(f"conv: bias shape {in_types[2].shape} should be ({k},)")
    out_sp = tuple(conv_out_size(x.shape[2 + d], w.shape[2 + d], strides[d], pads[d], pads[nd + d], dilations[d])
                   for d in range(nd))
    if min(out_sp) < 1:
        raise ValueError(f"conv: kernel {w.shape[2:]} larger than padded input {x.shape[2:]}")
    return nd, groups, strides, pads, dilations, (n, k) + out_sp


def conv_infer(attrs, in_types):
    same_dtype(in_types, "conv")
    return TensorType(_conv_parts(attrs, in_types)[-1], in_types[0].dtype)


def conv_instruction(attrs, in_types, out_type):
    nd, groups, strides, pads, dilations, out_shape = _conv_parts(attrs, in_types)
    x, w = in_types[0], in_types[1]
    k, cg = w.shape[:2]
    stages = []
    src = "X"
    if any(pads):
        stages.append(pad_stage("Xp", "X", x.shape, 2, pads))
        src = "Xp"
    sp = index_vars(" ".join(f"o{d}" for d in range(nd)))
    red = index_vars(" ".join(f"r{d}" for d in range(nd)))
    n, kk, c = index_vars("n k c")
    channel = c if groups == 1 else idiv(kk, k // groups) * cg + c
    x_idx = (n, channel) + tuple(sp[d] * strides[d] + red[d] * dilations[d] for d in range(nd))
    body = tensor(src)[x_idx] * tensor("W")[(kk, c) + red]
    out_axes = (n, kk) + sp
    has_bias = len(in_types) == 3
    stages.append(Stage("conv" if has_bias else "Y", out_axes, out_shape, body, "sum", (c,) + red,
                        (cg,) + tuple(w.shape[2:])))
    if has_bias:
        stages.append(Stage("Y", out_axes, out_shape, tensor("conv")[out_axes] + tensor("B")[kk]))
    return Instruction(("X", "W", "B")[: len(in_types)], tuple(stages))


def conv_torch(attrs, x, w, b=None):
    import torch.nn.functional as F

    nd = x.dim() - 2
    strides, pads, dilations = spatial_attrs(attrs, nd, w.shape[2:])
    begin, end = pads[:nd], pads[nd:]
    padding = 0
    if begin == end:
        padding = tuple(begin)
    else:
        flat = []
        for d in reversed(range(nd)):
            flat += [begin[d], end[d]]
        x = F.pad(x, flat)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(x, w, b, tuple(strides), padding, tuple(dilations), int(attrs.get("groups", 1)))


def conv_onnx(attrs, ins, out, ctx):
    from onnx import helper

    nd = len(ctx.shape(ins[1])) - 2
    strides, pads, dilations = spatial_attrs(attrs, nd, ())
    return [helper.make_node("Conv", list(ins), [out], strides=list(strides), pads=list(pads),
                             dilations=list(dilations), group=int(attrs.get("groups", 1)))]


register_op(OpDef(
    "conv", conv_infer, conv_instruction, conv_torch, conv_onnx, weight_inputs=(1, 2), arity=(2, 3),
    doc="N-d convolution (1-d, 2-d, 3-d) with strides, pads (begin..., end...), dilations and groups; "
        "depthwise is groups = channels",
    example=lambda: ({"strides": (1, 1), "pads": (1, 1, 1, 1), "groups": 1},
                     (TensorType((1, 8, 10, 10)), TensorType((16, 8, 3, 3)), TensorType((16,)))),
))


def dense_infer(attrs, in_types):
    same_dtype(in_types, "dense")
    x, w = in_types[0], in_types[1]
    if len(w.shape) != 2 or not x.shape or x.shape[-1] != w.shape[1]:
        raise ValueError(f"dense: input {x} does not match weight {w} (weight is [out, in])")
    if len(in_types) == 3 and in_types[2].shape != (w.shape[0],):
        raise ValueError(f"dense: bias shape {in_types[2].shape} should be ({w.shape[0]},)")
    return TensorType(x.shape[:-1] + (w.shape[0],), x.dtype)


def dense_instruction(attrs, in_types, out_type):
    x, w = in_types[0], in_types[1]
    lead = index_vars(" ".join(f"b{d}" for d in range(len(x.shape) - 1)))
    j, c = index_vars("j c")
    out_axes = lead + (j,)
    body = tensor("X")[lead + (c,)] * tensor("W")[j, c]
    has_bias = len(in_types) == 3
    stages = [Stage("mm" if has_bias else "Y", out_axes, out_type.shape, body, "sum", (c,), (w.shape[1],))]
    if has_bias:
        stages.append(Stage("Y", out_axes, out_type.shape, tensor("mm")[out_axes] + tensor("B")[j]))
    return Instruction(("X", "W", "B")[: len(in_types)], tuple(stages))


def dense_torch(attrs, x, w, b=None):
    import torch.nn.functional as F

    return F.linear(x, w, b)


def dense_onnx(attrs, ins, out, ctx):
    from onnx import helper

    if len(ctx.shape(ins[0])) == 2:
        return [helper.make_node("Gemm", list(ins), [out], transB=1)]
    wt = ctx.fresh("wT")
    nodes = [helper.make_node("Transpose", [ins[1]], [wt], perm=[1, 0])]
    if len(ins) == 2:
        return nodes + [helper.make_node("MatMul", [ins[0], wt], [out])]
    mm = ctx.fresh("mm")
    return nodes + [helper.make_node("MatMul", [ins[0], wt], [mm]), helper.make_node("Add", [mm, ins[2]], [out])]


register_op(OpDef(
    "dense", dense_infer, dense_instruction, dense_torch, dense_onnx, weight_inputs=(1, 2), arity=(2, 3),
    doc="fully connected layer Y = X·Wᵀ + B over the last axis of X (W is [out, in], as torch.nn.Linear)",
    example=lambda: ({}, (TensorType((4, 32)), TensorType((16, 32)), TensorType((16,)))),
))
