"""Blocked activation layout NCHW[b]c: the ops that :func:`ir.passes.select_layout` puts into a graph.

In NCHW[b]c an activation ``(N, C, H, W)`` is stored as ``(N, C/b, H, W, b)``: ``b`` consecutive channels are
contiguous, so a convolution computes a whole vector of output channels from one broadcast input value and one
vector of weights, and stores it in one write; a depthwise convolution vectorizes over channels. Elementwise ops
keep their meaning in any layout, so only convolutions and the two conversions need their own instructions.

These ops normally exist only between :func:`~ir.passes.select_layout` and code generation; they still have
PyTorch references and ONNX spellings (Reshape/Transpose around a plain Conv), so a blocked graph exports too.
"""

from __future__ import annotations

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, idiv, imod, index_vars, tensor
from ir.registry import OpDef, register_op
from operators.common import conv_out_size, same_dtype, spatial_attrs
from operators.conv import pad_stage


def _block(attrs) -> int:
    b = int(attrs.get("block", 0))
    if b < 1:
        raise ValueError(f"layout ops need a positive 'block' attribute, got {b}")
    return b


# ---- conversions -----------------------------------------------------------------------------------------
def to_blocked_infer(attrs, in_types):
    (x,) = in_types
    b = _block(attrs)
    if len(x.shape) < 3 or x.shape[1] % b:
        raise ValueError(f"to_blocked: input {x} needs rank ≥ 3 and channels divisible by {b}")
    n, c, *sp = x.shape
    return TensorType((n, c // b, *sp, b), x.dtype)


def to_blocked_instruction(attrs, in_types, out_type):
    b = _block(attrs)
    idx = index_vars(" ".join(f"i{d}" for d in range(len(out_type.shape))))
    n, co, *sp, ci = idx
    return Instruction(("X",), (Stage("Y", idx, out_type.shape, tensor("X")[(n, co * b + ci, *sp)]),))


def to_blocked_torch(attrs, x):
    b = _block(attrs)
    n, c, *sp = x.shape
    return x.reshape(n, c // b, b, *sp).movedim(2, -1).contiguous()


def from_blocked_infer(attrs, in_types):
    (x,) = in_types
    b = _block(attrs)
    if len(x.shape) < 4 or x.shape[-1] != b:
        raise ValueError(f"from_blocked: input {x} needs rank ≥ 4 and a last dimension of {b}")
    n, cb, *sp, _ = x.shape
    return TensorType((n, cb * b, *sp), x.dtype)


def from_blocked_instruction(attrs, in_types, out_type):
    b = _block(attrs)
    idx = index_vars(" ".join(f"i{d}" for d in range(len(out_type.shape))))
    n, c, *sp = idx
    body = tensor("X")[(n, idiv(c, b), *sp, imod(c, b))]
    return Instruction(("X",), (Stage("Y", idx, out_type.shape, body),))


def from_blocked_torch(attrs, x):
    n, cb, *sp, b = x.shape
    return x.movedim(-1, 2).reshape(n, cb * b, *sp).contiguous()


def unblocked_conv_weight_torch(w):
    """conv2d_nchwc weights W[K/b', C/b, R, S, b, b'] back to PyTorch's [K, C, R, S]."""
    kb, cb, r, q, b, bo = w.shape
    return w.permute(0, 5, 1, 4, 2, 3).reshape(kb * bo, cb * b, r, q)


def _onnx_to_blocked(x: str, out: str, shape: tuple[int, ...], b: int, ctx) -> list:
    """(N, C, *S) → (N, C/b, *S, b) as Reshape + Transpose."""
    import numpy as np
    from onnx import helper

    n, c, *sp = shape
    split = ctx.fresh("split")
    rank = len(shape) + 1
    return [helper.make_node("Reshape", [x, ctx.initializer(np.asarray([n, c // b, b, *sp], np.int64), "shape")],
                             [split]),
            helper.make_node("Transpose", [split], [out], perm=[0, 1, *range(3, rank), 2])]


def _onnx_from_blocked(x: str, out: str, shape: tuple[int, ...], ctx) -> list:
    """(N, C/b, *S, b) → (N, C, *S) as Transpose + Reshape."""
    import numpy as np
    from onnx import helper

    n, cb, *sp, b = shape
    moved = ctx.fresh("moved")
    return [helper.make_node("Transpose", [x], [moved], perm=[0, 1, len(shape) - 1, *range(2, len(shape) - 1)]),
            helper.make_node("Reshape", [moved, ctx.initializer(np.asarray([n, cb * b, *sp], np.int64), "shape")],
                             [out])]


def to_blocked_onnx(attrs, ins, out, ctx):
    return _onnx_to_blocked(ins[0], out, ctx.shape(ins[0]), _block(attrs), ctx)


def from_blocked_onnx(attrs, ins, out, ctx):
    return _onnx_from_blocked(ins[0], out, ctx.shape(ins[0]), ctx)


register_op(OpDef(
    "to_blocked", to_blocked_infer, to_blocked_instruction, to_blocked_torch, to_blocked_onnx, elementwise=False,
    doc="NCHW → NCHW[b]c: (N, C, *S) → (N, C/b, *S, b), channel c at [c // b, ..., c % b]",
    example=lambda: ({"block": 4}, (TensorType((1, 8, 5, 6)),)),
))
register_op(OpDef(
    "from_blocked", from_blocked_infer, from_blocked_instruction, from_blocked_torch, from_blocked_onnx,
    doc="NCHW[b]c → NCHW, the inverse of to_blocked",
    example=lambda: ({"block": 4}, (TensorType((1, 2, 5, 6, 4)),)),
))


# ---- convolutions ----------------------------------------------------------------------------------------
def _conv_blocked_parts(attrs, in_types, depthwise: bool):
    x, w = in_types[0], in_types[1]
    plain_input = len(x.shape) == 4 and not depthwise  # NCHW in, blocked out: b = 1 (see the op's doc)
    if len(x.shape) != 5 and not plain_input:
        raise ValueError(f"conv2d_nchwc: input {x} must be (N, C/b, H, W, b)"
                         + ("" if depthwise else " or (N, C, H, W)"))
    b = 1 if plain_input else x.shape[4]
    if depthwise:
        if len(w.shape) != 4 or w.shape[0] != x.shape[1] or w.shape[3] != b:
            raise ValueError(f"dwconv2d_nchwc: weight {w} must be (C/b, R, S, b) for input {x}")
        kernel, kb, bo = w.shape[1:3], w.shape[0], b
    else:
        if len(w.shape) != 6 or w.shape[1] != x.shape[1] or w.shape[4] != b:
            raise ValueError(f"conv2d_nchwc: weight {w} must be (K/bo, C/b, R, S, b, bo) for input {x}")
        kernel, kb, bo = w.shape[2:4], w.shape[0], w.shape[5]
    if len(in_types) == 3 and in_types[2].shape != (kb, bo):
        raise ValueError(f"conv2d_nchwc: bias {in_types[2]} should be ({kb}, {bo})")
    strides, pads, dilations = spatial_attrs(attrs, 2, kernel)
    out_sp = tuple(conv_out_size(x.shape[2 + d], kernel[d], strides[d], pads[d], pads[2 + d], dilations[d])
                   for d in range(2))
    if min(out_sp) < 1:
        raise ValueError(f"conv2d_nchwc: kernel {kernel} larger than padded input {x.shape[2:4]}")
    return kernel, strides, pads, dilations, (x.shape[0], kb, *out_sp, bo)


def _make_conv_blocked(depthwise: bool):
    op = "dwconv2d_nchwc" if depthwise else "conv2d_nchwc"

    def infer(attrs, in_types):
        same_dtype(in_types, op)
        return TensorType(_conv_blocked_parts(attrs, in_types, depthwise)[-1], in_types[0].dtype)

    def instruction(attrs, in_types, out_type):
        kernel, strides, pads, dilations, out_shape = _conv_blocked_parts(attrs, in_types, depthwise)
        x = in_types[0]
        stages, src = [], "X"
        if any(pads):
            stages.append(pad_stage("Xp", "X", x.shape, 2, pads))  # pads H and W, keeps the lane dimension
            src = "Xp"
        n, ko, h, w, ki, r, s, c, cb = index_vars("n ko h w ki r s c cb")
        hi, wi = h * strides[0] + r * dilations[0], w * strides[1] + s * dilations[1]
        if depthwise:
            body = tensor(src)[n, ko, hi, wi, ki] * tensor("W")[ko, r, s, ki]
            red, red_shape = (r, s), tuple(kernel)
        elif len(x.shape) == 4:
            body = tensor(src)[n, c, hi, wi] * tensor("W")[ko, c, r, s, 0, ki]
            red, red_shape = (c, r, s), (x.shape[1], *kernel)
        else:
            body = tensor(src)[n, c, hi, wi, cb] * tensor("W")[ko, c, r, s, cb, ki]
            red, red_shape = (c, r, s, cb), (x.shape[1], *kernel, x.shape[4])
        out_axes = (n, ko, h, w, ki)
        has_bias = len(in_types) == 3
        stages.append(Stage("conv" if has_bias else "Y", out_axes, out_shape, body, "sum", red, red_shape))
        if has_bias:
            stages.append(Stage("Y", out_axes, out_shape, tensor("conv")[out_axes] + tensor("B")[ko, ki]))
        return Instruction(("X", "W", "B")[: len(in_types)], tuple(stages))

    def torch_ref(attrs, x, w, bias=None):
        import torch.nn.functional as F

        xn = x if x.dim() == 4 else from_blocked_torch({}, x)
        if depthwise:
            wn = w.permute(0, 3, 1, 2).reshape(-1, 1, w.shape[1], w.shape[2])
            groups = xn.shape[1]
        else:
            wn = unblocked_conv_weight_torch(w)
            groups = 1
        strides, pads, dilations = spatial_attrs(attrs, 2, wn.shape[2:])
        xn = F.pad(xn, (pads[1], pads[3], pads[0], pads[2]))
        y = F.conv2d(xn, wn, None if bias is None else bias.reshape(-1), strides, 0, dilations, groups)
        return to_blocked_torch({"block": y.shape[1] // w.shape[0]}, y)

    def onnx_spelling(attrs, ins, out, ctx):
        """Unblock X and W, a plain Conv, block the result again (the weights stay blocked in the file)."""
        import numpy as np
        from onnx import helper

        xs, ws = ctx.shape(ins[0]), ctx.shape(ins[1])
        b = xs[4] if len(xs) == 5 else 1
        w, y = ctx.fresh("w_kcrs"), ctx.fresh("y_nchw")
        if len(xs) == 5:
            x = ctx.fresh("x_nchw")
            nodes = _onnx_from_blocked(ins[0], x, xs, ctx)
        else:
            x, nodes = ins[0], []
        wt = ctx.fresh("w_t")
        if depthwise:  # (C/b, R, S, b) → (C, 1, R, S)
            perm, kcrs, groups = [0, 3, 1, 2], [ws[0] * b, 1, ws[1], ws[2]], ws[0] * b
        else:  # (K/bo, C/b, R, S, b, bo) → (K, C, R, S)
            perm, kcrs, groups = [0, 5, 1, 4, 2, 3], [ws[0] * ws[5], ws[1] * b, ws[2], ws[3]], 1
        nodes += [helper.make_node("Transpose", [ins[1]], [wt], perm=perm),
                  helper.make_node("Reshape", [wt, ctx.initializer(np.asarray(kcrs, np.int64), "shape")], [w])]
        conv_in = [x, w]
        if len(ins) == 3:
            bias = ctx.fresh("bias")
            nodes.append(helper.make_node("Reshape", [ins[2], ctx.initializer(np.asarray([-1], np.int64), "flat")],
                                          [bias]))
            conv_in.append(bias)
        strides, pads, dilations = spatial_attrs(attrs, 2, ())
        nodes.append(helper.make_node("Conv", conv_in, [y], strides=list(strides), pads=list(pads),
                                      dilations=list(dilations), group=groups))
        out_shape = _conv_blocked_parts(attrs, [TensorType(ctx.shape(i)) for i in ins], depthwise)[-1]
        nodes += _onnx_to_blocked(y, out, (out_shape[0], out_shape[1] * out_shape[4], *out_shape[2:4]),
                                  out_shape[4], ctx)
        return nodes

    return infer, instruction, torch_ref, onnx_spelling


for _dw in (False, True):
    _infer, _instr, _torch, _onnx = _make_conv_blocked(_dw)
    register_op(OpDef(
        "dwconv2d_nchwc" if _dw else "conv2d_nchwc", _infer, _instr, _torch, _onnx, weight_inputs=(1, 2),
        arity=(2, 3),
        doc=("depthwise 2-d convolution in NCHW[b]c: X (N, C/b, H, W, b), W (C/b, R, S, b), bias (C/b, b)" if _dw
             else "2-d convolution in NCHW[b]c: X (N, C/b, H, W, b), W (K/bo, C/b, R, S, b, bo), bias (K/bo, bo); "
                  "X may be plain NCHW (N, C, H, W) with W (K/bo, C, R, S, 1, bo) — a first conv over image "
                  "channels that no block divides, writing the blocked layout directly"),
        example=(lambda: ({"strides": (1, 1), "pads": (1, 1, 1, 1)},
                          (TensorType((1, 2, 6, 7, 4)), TensorType((2, 3, 3, 4)), TensorType((2, 4)))))
        if _dw else
        (lambda: ({"strides": (2, 2), "pads": (1, 0, 1, 1)},
                  (TensorType((1, 2, 7, 6, 4)), TensorType((3, 2, 3, 3, 4, 4)), TensorType((3, 4))))),
    ))


# ---- pooling -----------------------------------------------------------------------------------------------
def _maxpool_blocked_parts(attrs, x):
    from operators.pool import _pool_parts

    if len(x.shape) != 5:
        raise ValueError(f"maxpool2d_nchwc: input {x} must be (N, C/b, H, W, b)")
    kernel, strides, pads, dilations, _, out, ends = _pool_parts("maxpool2d_nchwc", attrs, TensorType(x.shape[:4]),
                                                                 True)
    return kernel, strides, pads, dilations, out, ends


def maxpool_blocked_infer(attrs, in_types):
    (x,) = in_types
    out = _maxpool_blocked_parts(attrs, x)[4]
    return TensorType((*x.shape[:2], *out, x.shape[4]), x.dtype)


def maxpool_blocked_instruction(attrs, in_types, out_type):
    """The windows of :func:`operators.pool.maxpool_instruction` over H and W; the lane dimension rides along, so a
    vector of channels takes its maximum at once."""
    from operators.pool import NEG_LARGE

    (x,) = in_types
    kernel, strides, pads, dilations, out, ends = _maxpool_blocked_parts(attrs, x)
    stages, src = [], "X"
    full = (*pads[:2], *ends)
    if any(full):
        stages.append(pad_stage("Xp", "X", x.shape, 2, full, NEG_LARGE))  # pads H and W, keeps the lanes
        src = "Xp"
    n, c, h, w, lane, r, s = index_vars("n c h w lane r s")
    body = tensor(src)[n, c, h * strides[0] + r * dilations[0], w * strides[1] + s * dilations[1], lane]
    stages.append(Stage("Y", (n, c, h, w, lane), out_type.shape, body, "max", (r, s), tuple(kernel)))
    return Instruction(("X",), tuple(stages))


def maxpool_blocked_torch(attrs, x):
    from operators.pool import maxpool_torch

    return to_blocked_torch({"block": x.shape[4]}, maxpool_torch(attrs, from_blocked_torch({}, x)))


def maxpool_blocked_onnx(attrs, ins, out, ctx):
    """Unblock, a plain MaxPool, block again."""
    from operators.pool import maxpool_node

    xs = ctx.shape(ins[0])
    x, y = ctx.fresh("x_nchw"), ctx.fresh("y_nchw")
    n, cb, h, w, b = xs
    out_sp = _maxpool_blocked_parts(attrs, TensorType(xs))[4]
    return (_onnx_from_blocked(ins[0], x, xs, ctx) + [maxpool_node(attrs, x, y, (n, cb * b, h, w))]
            + _onnx_to_blocked(y, out, (n, cb * b, *out_sp), b, ctx))


register_op(OpDef(
    "maxpool2d_nchwc", maxpool_blocked_infer, maxpool_blocked_instruction, maxpool_blocked_torch,
    maxpool_blocked_onnx,
    doc="2-d max pool in NCHW[b]c: X (N, C/b, H, W, b) → (N, C/b, OH, OW, b), maxpool's attributes",
    example=lambda: ({"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1),
                      "ceil_mode": 0}, (TensorType((1, 2, 7, 7, 4)),)),
))
