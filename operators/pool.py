"""Pooling (max, average, global average) and reductions (mean, sum, max over given axes)."""

from __future__ import annotations

import sympy

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, axes, index_vars, read, tensor
from ir.registry import OpDef, register_op
from operators.common import conv_out_size, floating_only, normalize_axis, spatial_attrs
from operators.conv import pad_stage

# the lowering emits plain floats, so "-inf" padding is the most negative float32
NEG_LARGE = sympy.Float(-3.4028234663852886e38)


# ---- windowed pools ----------------------------------------------------------------------------------
def _pool_parts(op, attrs, x, dilated):
    """kernel, strides, pads, dilations, ceil_mode, output spatial shape and the end pads the padded input needs."""
    nd = len(x.shape) - 2
    if nd < 1:
        raise ValueError(f"{op}: input {x} needs rank ≥ 3 (N, C, spatial...)")
    kernel = tuple(int(k) for k in attrs.get("kernel", ()))
    if len(kernel) != nd or min(kernel) < 1:
        raise ValueError(f"{op}: kernel {kernel} should be {nd} sizes ≥ 1 for input {x}")
    try:
        strides, pads, dilations = spatial_attrs(attrs, nd, kernel)
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None
    if not dilated and any(d != 1 for d in dilations):
        raise ValueError(f"{op}: dilations are not supported, got {dilations}")
    ceil = bool(attrs.get("ceil_mode", 0))
    out = tuple(conv_out_size(x.shape[2 + d], kernel[d], strides[d], pads[d], pads[nd + d], dilations[d], ceil)
                for d in range(nd))
    if min(out) < 1:
        raise ValueError(f"{op}: kernel {kernel} larger than padded input {x.shape[2:]}")
    # in ceil_mode the last window may overhang the end padding: pad the input far enough to hold it
    ends = tuple(max(pads[nd + d], (out[d] - 1) * strides[d] + dilations[d] * (kernel[d] - 1) + 1
                     - x.shape[2 + d] - pads[d]) for d in range(nd))
    return kernel, strides, pads, dilations, ceil, out, ends


def _window_stage(name, src, reducer, x, kernel, strides, dilations, out):
    """name[n, c, o...] = reducer_{r...} src[n, c, o·stride + r·dilation]."""
    nd = len(kernel)
    n, c = index_vars("n c")
    o, r = axes("o", nd), axes("r", nd)
    idx = (n, c) + tuple(o[d] * strides[d] + r[d] * dilations[d] for d in range(nd))
    return Stage(name, (n, c) + o, x.shape[:2] + out, tensor(src)[idx], reducer, r, kernel)


def _padded(x, pads, ends, value):
    """The pad stage (if any padding is needed) and the name of the tensor the windows read."""
    nd = len(ends)
    full = tuple(pads[:nd]) + tuple(ends)
    if not any(full):
        return [], "X"
    return [pad_stage("Xp", "X", x.shape, 2, full, value)], "Xp"


def _torch_window(x, pads, ends, out, value, pool):
    """Pad explicitly (begin, extended end), pool without padding, keep the first ``out`` windows."""
    import torch.nn.functional as F

    nd = len(out)
    flat = []
    for d in reversed(range(nd)):
        flat += [pads[d], ends[d]]
    y = pool(F.pad(x, flat, value=value))
    return y[(slice(None), slice(None)) + tuple(slice(0, k) for k in out)]


def maxpool_infer(attrs, in_types):
    x = in_types[0]
    out = _pool_parts("maxpool", attrs, x, True)[5]
    return TensorType(x.shape[:2] + out, x.dtype)


def maxpool_instruction(attrs, in_types, out_type):
    """Pad with the most negative float (pads never win a max), then Y = max over each (dilated) window."""
    x = in_types[0]
    kernel, strides, pads, dilations, _, out, ends = _pool_parts("maxpool", attrs, x, True)
    stages, src = _padded(x, pads, ends, NEG_LARGE)
    stages.append(_window_stage("Y", src, "max", x, kernel, strides, dilations, out))
    return Instruction(("X",), tuple(stages))


def maxpool_torch(attrs, x):
    import torch.nn.functional as F

    kernel, strides, pads, dilations, ceil, out, ends = _pool_parts("maxpool", attrs, TensorType(tuple(x.shape)), True)
    nd = len(kernel)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    if pads[:nd] == pads[nd:] and all(2 * p <= k for p, k in zip(pads, kernel)):
        return fn(x, kernel, strides, pads[:nd], dilations, ceil)
    return _torch_window(x, pads, ends, out, float("-inf"), lambda t: fn(t, kernel, strides, 0, dilations))


def maxpool_node(attrs, x: str, out: str, shape: tuple[int, ...]):
    """The ONNX MaxPool of ``x`` (an NCHW-like tensor of ``shape``) into ``out``."""
    from onnx import helper

    kernel, strides, pads, dilations, ceil, _, _ = _pool_parts("maxpool", attrs, TensorType(tuple(shape)), True)
    return helper.make_node("MaxPool", [x], [out], kernel_shape=list(kernel), strides=list(strides),
                            pads=list(pads), dilations=list(dilations), ceil_mode=int(ceil))


def maxpool_onnx(attrs, ins, out, ctx):
    return [maxpool_node(attrs, ins[0], out, ctx.shape(ins[0]))]


register_op(OpDef(
    "maxpool", maxpool_infer, maxpool_instruction, maxpool_torch, maxpool_onnx,
    doc="N-d max pool: kernel, strides, pads (begin..., end...), dilations, ceil_mode; padding never wins",
    example=lambda: ({"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1),
                      "ceil_mode": 0}, (TensorType((1, 2, 7, 7)),)),
))


def _avg_count(o, x, kernel, strides, pads, out, include_pad, d, vmax=sympy.Max, vmin=sympy.Min):
    """The element count of window ``o`` along spatial dim ``d``: an index expression of ``o`` (or a number).

    Windows are [o·s, o·s + k) in padded coordinates. They are clipped to the padded input (ceil_mode windows
    may overhang it); with ``include_pad`` false also to the real input [pad_begin, pad_begin + size).
    A bound is written only where some window crosses it, so the common case is the constant k.
    """
    nd = len(kernel)
    start, size, b, e = o * strides[d], x.shape[2 + d], pads[d], pads[nd + d]
    lo, limit = (start, size + b + e) if include_pad else (vmax(start, b) if b else start, size + b)
    hi = vmin(start + kernel[d], limit) if (out[d] - 1) * strides[d] + kernel[d] > limit else start + kernel[d]
    return hi - lo


def _avgpool_parts(attrs, x):
    parts = _pool_parts("avgpool", attrs, x, False)
    kernel, strides, pads, _, _, out, _ = parts
    include = bool(attrs.get("count_include_pad", 0))
    for d in range(len(kernel)):
        if min(_avg_count(o, x, kernel, strides, pads, out, include, d, max, min) for o in range(out[d])) < 1:
            raise ValueError(f"avgpool: a window along spatial dim {d} holds no input element (pads {pads})")
    return parts, include


def avgpool_infer(attrs, in_types):
    x = in_types[0]
    floating_only("avgpool", x.dtype)
    out = _avgpool_parts(attrs, x)[0][5]
    return TensorType(x.shape[:2] + out, x.dtype)


def avgpool_instruction(attrs, in_types, out_type):
    """Zero-pad, sum each window, divide by its element count (an index expression, not a tensor)."""
    x = in_types[0]
    (kernel, strides, pads, dilations, _, out, ends), include = _avgpool_parts(attrs, x)
    stages, src = _padded(x, pads, ends, 0)
    window = _window_stage("S", src, "sum", x, kernel, strides, dilations, out)
    o = window.axes[2:]
    count = sympy.Mul(*(_avg_count(o[d], x, kernel, strides, pads, out, include, d) for d in range(len(kernel))))
    stages += [window, Stage("Y", window.axes, window.shape, tensor("S")[window.axes] / count)]
    return Instruction(("X",), tuple(stages))


def avgpool_torch(attrs, x):
    import torch
    import torch.nn.functional as F

    (kernel, strides, pads, _, ceil, out, ends), include = _avgpool_parts(attrs, TensorType(tuple(x.shape)))
    nd = len(kernel)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    if pads[:nd] == pads[nd:] and all(2 * p <= k for p, k in zip(pads, kernel)):
        return fn(x, kernel, strides, pads[:nd], ceil, include)
    # asymmetric pads: window sums over an explicitly padded input, divided by window counts of a ones mask
    pool = lambda t: fn(t, kernel, strides, 0)  # noqa: E731
    sums = _torch_window(x, pads, ends, out, 0.0, pool)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    if include:
        flat = []
        for d in reversed(range(nd)):
            flat += [pads[d], pads[nd + d]]
        ones = F.pad(ones, flat, value=1.0)
        counts = _torch_window(ones, (0,) * nd, tuple(e - pads[nd + d] for d, e in enumerate(ends)), out, 0.0, pool)
    else:
        counts = _torch_window(ones, pads, ends, out, 0.0, pool)
    return sums / counts


def avgpool_onnx(attrs, ins, out, ctx):
    from onnx import helper

    (kernel, strides, pads, _, ceil, _, _), include = _avgpool_parts(attrs, TensorType(ctx.shape(ins[0])))
    return [helper.make_node("AveragePool", list(ins), [out], kernel_shape=list(kernel), strides=list(strides),
                             pads=list(pads), ceil_mode=int(ceil), count_include_pad=int(include))]


register_op(OpDef(
    "avgpool", avgpool_infer, avgpool_instruction, avgpool_torch, avgpool_onnx,
    doc="N-d average pool: kernel, strides, pads (begin..., end...), ceil_mode, count_include_pad (0: divide by "
        "the valid elements of each window)",
    example=lambda: ({"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": 1,
                      "count_include_pad": 0}, (TensorType((1, 2, 6, 6)),)),
))


# ---- global average pool -----------------------------------------------------------------------------
def global_avgpool_infer(attrs, in_types):
    x = in_types[0]
    floating_only("global_avgpool", x.dtype)
    if len(x.shape) < 3:
        raise ValueError(f"global_avgpool: input {x} needs rank ≥ 3 (N, C, spatial...)")
    return TensorType(x.shape[:2] + (1,) * (len(x.shape) - 2), x.dtype)


def global_avgpool_instruction(attrs, in_types, out_type):
    """S[n, c] = Σ over all spatial positions; Y[n, c, 0...] = S / (number of positions)."""
    x = in_types[0]
    n, c = index_vars("n c")
    r, z = axes("r", len(x.shape) - 2), axes("z", len(x.shape) - 2)
    count = 1
    for d in x.shape[2:]:
        count *= d
    return Instruction(("X",), (
        Stage("S", (n, c), x.shape[:2], tensor("X")[(n, c) + r], "sum", r, x.shape[2:]),
        Stage("Y", (n, c) + z, out_type.shape, tensor("S")[n, c] / count),
    ))


def global_avgpool_torch(attrs, x):
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def global_avgpool_onnx(attrs, ins, out, ctx):
    from onnx import helper

    return [helper.make_node("GlobalAveragePool", list(ins), [out])]


register_op(OpDef(
    "global_avgpool", global_avgpool_infer, global_avgpool_instruction, global_avgpool_torch, global_avgpool_onnx,
    doc="mean over all dims after axis 1, kept as size 1",
    example=lambda: ({}, (TensorType((2, 3, 4, 4)),)),
))


# ---- reductions --------------------------------------------------------------------------------------
def _reduce_parts(op, attrs, x):
    """Sorted reduced axes (none given = all), keepdims, output shape."""
    rank = len(x.shape)
    if rank < 1:
        raise ValueError(f"{op}: input must have rank ≥ 1")
    given = attrs.get("axes")
    red = tuple(range(rank)) if not given else tuple(sorted(normalize_axis(int(a), rank, op) for a in given))
    if len(set(red)) != len(red):
        raise ValueError(f"{op}: repeated axes {given}")
    keep = int(attrs.get("keepdims", 1))
    if keep not in (0, 1):
        raise ValueError(f"{op}: keepdims must be 0 or 1, got {keep}")
    out = tuple(1 if d in red else s for d, s in enumerate(x.shape) if keep or d not in red)
    return red, keep, out


def _reduce_infer(op):
    def infer(attrs, in_types):
        x = in_types[0]
        if op == "reduce_mean":
            floating_only(op, x.dtype)
        return TensorType(_reduce_parts(op, attrs, x)[2], x.dtype)
    return infer


def _reduce_access(red, keep, x, out):
    """Output axes and the read of X: reduced dims take reduction variables, kept dims the output's."""
    i, r = axes("i", len(out)), axes("r", len(red))
    idx, k = [], 0
    for d in range(len(x.shape)):
        if d in red:
            idx.append(r[red.index(d)])
            k += keep  # a kept size-1 output dim is not read
        else:
            idx.append(i[k])
            k += 1
    return i, r, read("X", idx)


def _make_reduce(op, reducer, torch_name, onnx_op, doc):
    def instruction(attrs, in_types, out_type):
        x = in_types[0]
        red, keep, out = _reduce_parts(op, attrs, x)
        i, r, x_read = _reduce_access(red, keep, x, out)
        extents = tuple(x.shape[d] for d in red)
        if op != "reduce_mean":
            return Instruction(("X",), (Stage("Y", i, out, x_read, reducer, r, extents),))
        count = 1
        for e in extents:
            count *= e
        # sum first, divide once per output element
        return Instruction(("X",), (Stage("S", i, out, x_read, "sum", r, extents),
                                    Stage("Y", i, out, read("S", i) / count)))

    def torch_fn(attrs, x):
        red, keep, _ = _reduce_parts(op, attrs, TensorType(tuple(x.shape)))
        return getattr(x, torch_name)(dim=red, keepdim=bool(keep))

    def onnx_fn(attrs, ins, out, ctx):
        import numpy as np
        from onnx import helper

        red, keep, _ = _reduce_parts(op, attrs, TensorType(ctx.shape(ins[0])))
        if onnx_op == "ReduceSum":  # axes is an input since opset 13 for ReduceSum only
            axes_name = ctx.initializer(np.asarray(red, np.int64), "axes")
            return [helper.make_node(onnx_op, [ins[0], axes_name], [out], keepdims=keep)]
        return [helper.make_node(onnx_op, list(ins), [out], axes=list(red), keepdims=keep)]

    register_op(OpDef(op, _reduce_infer(op), instruction, torch_fn, onnx_fn, doc=doc,
                      example=lambda: ({"axes": (1, 2), "keepdims": 0}, (TensorType((2, 3, 4)),))))


_make_reduce("reduce_mean", "sum", "mean", "ReduceMean", "mean over axes (none = all), keepdims 0/1")
_make_reduce("reduce_sum", "sum", "sum", "ReduceSum", "sum over axes (none = all), keepdims 0/1")
_make_reduce("reduce_max", "max", "amax", "ReduceMax", "max over axes (none = all), keepdims 0/1")
