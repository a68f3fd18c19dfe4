"""Data movement: concat, reshape, flatten, transpose, pad, slice. No arithmetic, only index expressions."""

from __future__ import annotations

import sympy

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, axes, idiv, imod, read, tensor
from ir.registry import OpDef, register_op
from operators.common import normalize_axis, same_dtype
from operators.conv import pad_stage


def _prod(xs):
    p = 1
    for x in xs:
        p *= int(x)
    return p


# ---- concat ------------------------------------------------------------------------------------------
def _concat_axis(attrs, in_types):
    first = in_types[0]
    if not first.shape:
        raise ValueError("concat: inputs must have rank ≥ 1")
    axis = normalize_axis(int(attrs.get("axis", 0)), len(first.shape), "concat")
    for t in in_types[1:]:
        if len(t.shape) != len(first.shape) or any(a != b for d, (a, b) in enumerate(zip(t.shape, first.shape))
                                                   if d != axis):
            raise ValueError(f"concat: input {t} does not match {first} outside axis {axis}")
    return axis


def concat_infer(attrs, in_types):
    dtype = same_dtype(in_types, "concat")
    axis = _concat_axis(attrs, in_types)
    shape = list(in_types[0].shape)
    shape[axis] = sum(t.shape[axis] for t in in_types)
    return TensorType(tuple(shape), dtype)


def concat_instruction(attrs, in_types, out_type):
    """Y[..., i, ...] = X1[..., i] if i < n1 else (X2[..., i − n1] if i < n1 + n2 else ...): nested selects."""
    axis = _concat_axis(attrs, in_types)
    names = tuple(f"X{k + 1}" for k in range(len(in_types)))
    i = axes("i", len(out_type.shape))
    parts, offset = [], 0  # (access, end of its range along the axis)
    for name, t in zip(names, in_types):
        if t.shape[axis]:  # an empty input contributes no range
            idx = i[:axis] + (i[axis] - offset,) + i[axis + 1:]
            offset += t.shape[axis]
            parts.append((tensor(name)[idx], offset))
    body = parts[-1][0]
    for access, end in reversed(parts[:-1]):
        body = sympy.Piecewise((access, i[axis] < end), (body, True))
    return Instruction(names, (Stage("Y", i, out_type.shape, body),))


def concat_torch(attrs, *xs):
    import torch

    return torch.cat(xs, normalize_axis(int(attrs.get("axis", 0)), xs[0].dim(), "concat"))


def concat_onnx(attrs, ins, out, ctx):
    from onnx import helper

    axis = normalize_axis(int(attrs.get("axis", 0)), len(ctx.shape(ins[0])), "concat")
    return [helper.make_node("Concat", list(ins), [out], axis=axis)]


register_op(OpDef(
    "concat", concat_infer, concat_instruction, concat_torch, concat_onnx, arity=(1, 1 << 16),
    doc="concatenation of X1..Xn along axis",
    example=lambda: ({"axis": 1}, (TensorType((2, 2, 3)), TensorType((2, 3, 3)), TensorType((2, 1, 3)))),
))


# ---- reshape / flatten -------------------------------------------------------------------------------
def _reshape_blocks(in_shape, out_shape):
    """Pair up runs of input and output dims with equal products, so each run is raveled/unraveled on its own.

    Size-1 dims join no run (their index is 0). A reshape that only splits or merges dims then reads
    X[i0, 4·i1 + i2] instead of unraveling one flat index over the whole tensor. Zero-size tensors use one run.
    """
    if 0 in in_shape or 0 in out_shape:
        return [(list(range(len(in_shape))), list(range(len(out_shape))))]
    xs = [d for d, s in enumerate(in_shape) if s != 1]
    ys = [d for d, s in enumerate(out_shape) if s != 1]
    blocks, a, b = [], 0, 0
    while a < len(xs):
        bx, by = [xs[a]], [ys[b]]
        px, py = in_shape[xs[a]], out_shape[ys[b]]
        a, b = a + 1, b + 1
        while px != py:
            if px < py:
                bx.append(xs[a]); px *= in_shape[xs[a]]; a += 1  # noqa: E702
            else:
                by.append(ys[b]); py *= out_shape[ys[b]]; b += 1  # noqa: E702
        blocks.append((bx, by))
    return blocks


def reshape_index(in_shape, out_shape, out_axes):
    """X's index for output index ``out_axes`` of a row-major reshape: X[unravel(ravel(i))], run by run."""
    idx = [sympy.Integer(0)] * len(in_shape)
    for bx, by in _reshape_blocks(in_shape, out_shape):
        flat, stride = sympy.Integer(0), 1
        for d in reversed(by):
            flat += out_axes[d] * stride
            stride *= out_shape[d]
        stride = 1
        for q, d in reversed(list(enumerate(bx))):
            # the first dim of a run needs no modulo: the flat index is below the run's size
            idx[d] = idiv(flat, stride) if q == 0 else imod(idiv(flat, stride), in_shape[d])
            stride *= in_shape[d]
    return tuple(idx)


def _reshape_instruction(in_shape, out_shape):
    i = axes("i", len(out_shape))
    return Instruction(("X",), (Stage("Y", i, out_shape, read("X", reshape_index(in_shape, out_shape, i))),))


def reshape_infer(attrs, in_types):
    x = in_types[0]
    shape = tuple(int(s) for s in attrs.get("shape", ()))
    if any(s < 0 for s in shape):
        raise ValueError(f"reshape: shape {shape} must be fully resolved (no -1)")
    if _prod(shape) != x.size:
        raise ValueError(f"reshape: cannot reshape {x} ({x.size} elements) to {shape}")
    return TensorType(shape, x.dtype)


def reshape_instruction(attrs, in_types, out_type):
    return _reshape_instruction(in_types[0].shape, out_type.shape)


def reshape_torch(attrs, x):
    return x.reshape(tuple(int(s) for s in attrs["shape"]))


def reshape_onnx(attrs, ins, out, ctx):
    import numpy as np
    from onnx import helper

    shape = ctx.initializer(np.asarray(attrs["shape"], np.int64), "shape")
    return [helper.make_node("Reshape", [ins[0], shape], [out])]


register_op(OpDef(
    "reshape", reshape_infer, reshape_instruction, reshape_torch, reshape_onnx,
    doc="row-major reshape to a fully resolved shape",
    example=lambda: ({"shape": (2, 3, 4)}, (TensorType((2, 12)),)),
))


def _flatten_shape(attrs, x):
    rank = len(x.shape)
    axis = int(attrs.get("axis", 1))
    if not -rank <= axis <= rank:
        raise ValueError(f"flatten: axis {axis} out of range for rank {rank}")
    axis += rank if axis < 0 else 0  # ONNX Flatten: a negative axis counts from the end, -1 is the last dim
    return (_prod(x.shape[:axis]), _prod(x.shape[axis:]))


def flatten_infer(attrs, in_types):
    x = in_types[0]
    if not x.shape:
        raise ValueError("flatten: input must have rank ≥ 1")
    return TensorType(_flatten_shape(attrs, x), x.dtype)


def flatten_instruction(attrs, in_types, out_type):
    return _reshape_instruction(in_types[0].shape, out_type.shape)


def flatten_torch(attrs, x):
    return x.reshape(_flatten_shape(attrs, TensorType(tuple(x.shape))))


def flatten_onnx(attrs, ins, out, ctx):
    from onnx import helper

    rank = len(ctx.shape(ins[0]))
    axis = int(attrs.get("axis", 1))
    return [helper.make_node("Flatten", list(ins), [out], axis=axis + rank if axis < 0 else axis)]


register_op(OpDef(
    "flatten", flatten_infer, flatten_instruction, flatten_torch, flatten_onnx,
    doc="ONNX Flatten: 2-D [prod(dims before axis), prod(dims from axis)]",
    example=lambda: ({"axis": 2}, (TensorType((2, 3, 4, 5)),)),
))


# ---- transpose ---------------------------------------------------------------------------------------
def _perm(attrs, x):
    rank = len(x.shape)
    perm = tuple(int(p) for p in attrs.get("perm", tuple(reversed(range(rank)))))
    if sorted(perm) != list(range(rank)):
        raise ValueError(f"transpose: perm {perm} is not a permutation of {rank} axes")
    return perm


def transpose_infer(attrs, in_types):
    x = in_types[0]
    if not x.shape:
        raise ValueError("transpose: input must have rank ≥ 1")
    return TensorType(tuple(x.shape[p] for p in _perm(attrs, x)), x.dtype)


def transpose_instruction(attrs, in_types, out_type):
    """Y[i0, i1, ...] = X[j] with j[perm[k]] = i[k]."""
    perm = _perm(attrs, in_types[0])
    i = axes("i", len(perm))
    j = [None] * len(perm)
    for k, p in enumerate(perm):
        j[p] = i[k]
    return Instruction(("X",), (Stage("Y", i, out_type.shape, tensor("X")[tuple(j)]),))


def transpose_torch(attrs, x):
    return x.permute(_perm(attrs, TensorType(tuple(x.shape))))


def transpose_onnx(attrs, ins, out, ctx):
    from onnx import helper

    return [helper.make_node("Transpose", list(ins), [out], perm=list(_perm(attrs, TensorType(ctx.shape(ins[0])))))]


register_op(OpDef(
    "transpose", transpose_infer, transpose_instruction, transpose_torch, transpose_onnx,
    doc="axis permutation: output dim k is input dim perm[k] (default: reversed)",
    example=lambda: ({"perm": (0, 2, 3, 1)}, (TensorType((2, 3, 4, 5)),)),
))


# ---- pad ---------------------------------------------------------------------------------------------
def _pads(attrs, x):
    pads = tuple(int(p) for p in attrs.get("pads", ()))
    if len(pads) != 2 * len(x.shape) or min(pads, default=0) < 0:
        raise ValueError(f"pad: pads {pads} should be {2 * len(x.shape)} values ≥ 0 (begin..., end...) for {x}")
    return pads


def pad_infer(attrs, in_types):
    x = in_types[0]
    if not x.shape:
        raise ValueError("pad: input must have rank ≥ 1")
    pads = _pads(attrs, x)
    r = len(x.shape)
    return TensorType(tuple(s + pads[d] + pads[r + d] for d, s in enumerate(x.shape)), x.dtype)


def pad_instruction(attrs, in_types, out_type):
    """Y = X where the index falls inside X, else the constant value (a Piecewise select)."""
    x = in_types[0]
    value = sympy.Float(float(attrs.get("value", 0.0)))
    return Instruction(("X",), (pad_stage("Y", "X", x.shape, 0, _pads(attrs, x), value),))


def pad_torch(attrs, x):
    import torch.nn.functional as F

    pads = _pads(attrs, TensorType(tuple(x.shape)))
    r = x.dim()
    flat = []
    for d in reversed(range(r)):
        flat += [pads[d], pads[r + d]]
    return F.pad(x, flat, value=float(attrs.get("value", 0.0)))


def pad_onnx(attrs, ins, out, ctx):
    import numpy as np
    from onnx import helper

    pads = ctx.initializer(np.asarray(_pads(attrs, TensorType(ctx.shape(ins[0]))), np.int64), "pads")
    value = ctx.initializer(float(attrs.get("value", 0.0)), "pad_value", like=ins[0])
    return [helper.make_node("Pad", [ins[0], pads, value], [out], mode="constant")]


register_op(OpDef(
    "pad", pad_infer, pad_instruction, pad_torch, pad_onnx,
    doc="constant padding: pads (begin..., end...) over all dims, value",
    example=lambda: ({"pads": (0, 1, 2, 0, 0, 1), "value": 0.5}, (TensorType((2, 3, 4)),)),
))


# ---- slice -------------------------------------------------------------------------------------------
def _slice_parts(attrs, x):
    """{axis: (start, step, length)} with starts/ends clamped to the dim."""
    starts, ends = tuple(attrs.get("starts", ())), tuple(attrs.get("ends", ()))
    axes_ = tuple(attrs.get("axes", range(len(starts))))
    steps = tuple(attrs.get("steps", (1,) * len(starts)))
    if not len(starts) == len(ends) == len(axes_) == len(steps):
        raise ValueError(f"slice: starts {starts}, ends {ends}, axes {axes_}, steps {steps} differ in length")
    if len(set(axes_)) != len(axes_) or any(not 0 <= a < len(x.shape) for a in axes_):
        raise ValueError(f"slice: axes {axes_} must be distinct and in [0, {len(x.shape)})")
    if min(starts + ends, default=0) < 0 or min(steps, default=1) < 1:
        raise ValueError(f"slice: starts/ends must be ≥ 0 and steps > 0, got {starts}, {ends}, {steps}")
    parts = {}
    for a, s, e, st in zip(axes_, starts, ends, steps):
        s, e = min(int(s), x.shape[a]), min(int(e), x.shape[a])
        n = max(0, -(-(e - s) // int(st)))
        if n == 0:
            raise ValueError(f"slice: empty result along axis {a} (start {s}, end {e}) of {x}")
        parts[int(a)] = (s, int(st), n)
    return parts


def slice_infer(attrs, in_types):
    x = in_types[0]
    parts = _slice_parts(attrs, x)
    return TensorType(tuple(parts[d][2] if d in parts else s for d, s in enumerate(x.shape)), x.dtype)


def slice_instruction(attrs, in_types, out_type):
    """Y[..., i, ...] = X[..., start + i·step, ...] on the sliced axes."""
    parts = _slice_parts(attrs, in_types[0])
    i = axes("i", len(out_type.shape))
    idx = tuple(parts[d][0] + i[d] * parts[d][1] if d in parts else i[d] for d in range(len(i)))
    return Instruction(("X",), (Stage("Y", i, out_type.shape, tensor("X")[idx]),))


def slice_torch(attrs, x):
    parts = _slice_parts(attrs, TensorType(tuple(x.shape)))
    key = tuple(slice(parts[d][0], parts[d][0] + parts[d][1] * parts[d][2], parts[d][1]) if d in parts
                else slice(None) for d in range(x.dim()))
    return x[key]


def slice_onnx(attrs, ins, out, ctx):
    import numpy as np
    from onnx import helper

    parts = _slice_parts(attrs, TensorType(ctx.shape(ins[0])))
    ax = sorted(parts)
    arr = lambda vals, hint: ctx.initializer(np.asarray(vals, np.int64), hint)  # noqa: E731
    return [helper.make_node("Slice", [ins[0], arr([parts[a][0] for a in ax], "starts"),
                                       arr([parts[a][0] + parts[a][1] * parts[a][2] for a in ax], "ends"),
                                       arr(ax, "axes"), arr([parts[a][1] for a in ax], "steps")], [out])]


register_op(OpDef(
    "slice", slice_infer, slice_instruction, slice_torch, slice_onnx,
    doc="strided slice: starts, ends, axes, steps (resolved: non-negative, steps > 0; ends clamp to the dim)",
    example=lambda: ({"starts": (1, 0), "ends": (4, 10), "axes": (1, 2), "steps": (2, 3)}, (TensorType((2, 5, 7)),)),
))
