"""ONNX converters for shapes and layouts: Concat, Reshape, Flatten, Transpose, Squeeze/Unsqueeze, Pad, Slice,
Gather, Cast, Shape, Size, Split, Expand, and the ops that are accepted only when constant-folded.

They are registered in ``CONVERTERS`` in :mod:`ir.frontends.onnx_ops` (the one table of ONNX converters).
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ir.frontends.onnx_base import _axis, _ints, _np_dtype, _reshape, _slice, _Unsupported

def _concat(imp, node, a):
    ins = [imp.t(node, i) for i in range(len(node.input)) if imp.has(node, i)]
    if len(ins) == 1:
        return ins
    # opsets 1–3 default the axis to 1; from opset 4 on it is required (onnx.checker enforces that)
    return [imp.op("concat", *ins, axis=_axis(int(a.get("axis", 1)), len(imp.shape(ins[0]))))]


def _reshape_node(imp, node, a):
    shape = _ints(a["shape"]) if "shape" in a else _ints(imp.const_input(node, 1, "shape"))
    xs = imp.in_shape(node, 0)
    out = [xs[i] if d == 0 and not a.get("allowzero", 0) else d for i, d in enumerate(shape)]
    if out.count(-1) > 1:
        raise _Unsupported(f"shape {shape} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(xs)
        if known == 0 or total % known:
            raise _Unsupported(f"cannot reshape {xs} to {shape}")
        out[out.index(-1)] = total // known
    return [_reshape(imp, imp.t(node, 0), out)]


def _flatten(imp, node, a):
    rank = len(imp.in_shape(node, 0))
    axis = int(a.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        raise _Unsupported(f"axis {a.get('axis')} out of range for rank {rank}")
    return [imp.op("flatten", imp.t(node, 0), axis=axis)]


def _transpose(imp, node, a):
    rank = len(imp.in_shape(node, 0))
    perm = tuple(_ints(a["perm"])) if "perm" in a else tuple(reversed(range(rank)))
    perm = tuple(_axis(p, rank) for p in perm)
    x = imp.t(node, 0)
    return [x if perm == tuple(range(rank)) else imp.op("transpose", x, perm=perm)]


def _axes_arg(imp, node, a) -> list[int] | None:
    if "axes" in a:
        return _ints(a["axes"])
    return _ints(imp.const_input(node, 1, "axes")) if imp.has(node, 1) else None


def _squeeze(imp, node, a):
    xs = imp.in_shape(node, 0)
    axes = _axes_arg(imp, node, a)
    axes = {i for i, d in enumerate(xs) if d == 1} if axes is None else {_axis(x, len(xs)) for x in axes}
    if any(xs[i] != 1 for i in axes):
        raise _Unsupported(f"cannot squeeze axes {sorted(axes)} of shape {xs}")
    return [_reshape(imp, imp.t(node, 0), [d for i, d in enumerate(xs) if i not in axes])]


def _unsqueeze(imp, node, a):
    xs = imp.in_shape(node, 0)
    axes = _axes_arg(imp, node, a) or []
    rank = len(xs) + len(axes)
    axes = sorted(_axis(x, rank) for x in axes)
    out = list(xs)
    for ax in axes:
        out.insert(ax, 1)
    return [_reshape(imp, imp.t(node, 0), out)]


def _pad(imp, node, a):
    xs = imp.in_shape(node, 0)
    rank = len(xs)
    mode = a.get("mode", "constant")
    if mode != "constant":
        raise _Unsupported(f"pad mode {mode!r} is not supported (only 'constant')")
    if imp.opset < 11:
        pads, value = _ints(a.get("pads", a.get("paddings"))), float(a.get("value", 0.0))
    else:
        pads = _ints(imp.const_input(node, 1, "pads"))
        cv = imp.c(node, 2) if imp.has(node, 2) else None
        if imp.has(node, 2) and cv is None:
            raise _Unsupported("constant_value must be a constant")
        value = float(cv.reshape(-1)[0]) if cv is not None and cv.size else 0.0
        if imp.has(node, 3):  # opset 18: pads only for the listed axes
            axes = [_axis(x, rank) for x in _ints(imp.const_input(node, 3, "axes"))]
            full = [0] * 2 * rank
            for k, ax in enumerate(axes):
                full[ax], full[rank + ax] = pads[k], pads[len(axes) + k]
            pads = full
    if len(pads) != 2 * rank:
        raise _Unsupported(f"{len(pads)} pads for rank {rank}")
    x = imp.t(node, 0)
    grow = tuple(max(p, 0) for p in pads)
    if any(grow):
        x = imp.op("pad", x, pads=grow, value=value)
    if min(pads) < 0:  # negative pads crop: a slice of the padded tensor
        shape = imp.shape(x)
        x = _slice(imp, x, [max(-p, 0) for p in pads[:rank]],
                   [shape[i] - max(-pads[rank + i], 0) for i in range(rank)], list(range(rank)))
    return [x]


def _slice_node(imp, node, a):
    if imp.opset < 10:
        starts, ends, axes, steps = _ints(a["starts"]), _ints(a["ends"]), a.get("axes"), None
        axes = None if axes is None else _ints(axes)
    else:
        starts = _ints(imp.const_input(node, 1, "starts"))
        ends = _ints(imp.const_input(node, 2, "ends"))
        axes = _ints(imp.const_input(node, 3, "axes")) if imp.has(node, 3) else None
        steps = _ints(imp.const_input(node, 4, "steps")) if imp.has(node, 4) else None
    return [_slice(imp, imp.t(node, 0), starts, ends, axes, steps)]


def _gather(imp, node, a):
    xs = imp.in_shape(node, 0)
    axis = _axis(int(a.get("axis", 0)), len(xs))
    idx = imp.const_input(node, 1, "indices")
    if idx.ndim > 1:
        raise _Unsupported("gather with indices of rank > 1 on a runtime tensor is not supported")
    flat = [int(i) + xs[axis] if i < 0 else int(i) for i in idx.reshape(-1)]
    x = imp.t(node, 0)
    steps = {b - a_ for a_, b in zip(flat, flat[1:])}
    if len(flat) == 1 or (len(steps) == 1 and min(steps) > 0):  # an arithmetic progression is one slice
        step = steps.pop() if steps else 1
        y = _slice(imp, x, [flat[0]], [flat[-1] + 1], [axis], [step])
    else:
        y = imp.op("concat", *(_slice(imp, x, [i], [i + 1], [axis]) for i in flat), axis=axis)
    if idx.ndim == 0:
        y = _reshape(imp, y, xs[:axis] + xs[axis + 1:])
    return [y]


def _cast(imp, node, a):
    to = a["to"]
    if isinstance(to, (bytes, str)):  # opsets 1–5 name the type ("FLOAT"); later ones give its number
        name = to.decode() if isinstance(to, bytes) else to
        try:
            to = onnx.TensorProto.DataType.Value(name.upper())
        except ValueError:
            raise _Unsupported(f"unknown type {name!r} in 'to'") from None
    target = _np_dtype(int(to))
    x = imp.t(node, 0)
    if imp.b.type_of(x).dtype != target:
        raise _Unsupported(f"cast of a runtime tensor from {imp.b.type_of(x).dtype} to {target} is not supported")
    return [x]


def _shape(imp, node, a):
    shape = imp.in_shape(node, 0)
    start, end = int(a.get("start", 0)), a.get("end")
    return [np.array(shape[start:None if end is None else int(end)], dtype=np.int64)]


def _size(imp, node, a):
    return [np.array(math.prod(imp.in_shape(node, 0)), dtype=np.int64)]


def _split(imp, node, a):
    xs = imp.in_shape(node, 0)
    axis = _axis(int(a.get("axis", 0)), len(xs))
    n = len(node.output)
    if "split" in a:
        sizes = _ints(a["split"])
    elif imp.has(node, 1):
        sizes = _ints(imp.const_input(node, 1, "split"))
    else:  # equal parts; the last one smaller when not divisible (opset 18 num_outputs rule)
        part = -(-xs[axis] // n)
        sizes = [min(part, xs[axis] - k * part) for k in range(n)]
    if sum(sizes) != xs[axis] or len(sizes) != n or min(sizes) <= 0:
        raise _Unsupported(f"split sizes {sizes} do not partition axis {axis} of size {xs[axis]} into {n}")
    x, begin, outs = imp.t(node, 0), 0, []
    for k, size in enumerate(sizes):
        imp.hint = node.output[k] or imp.hint
        outs.append(_slice(imp, x, [begin], [begin + size], [axis]))
        begin += size
    return outs


def _expand(imp, node, a):
    xs = imp.in_shape(node, 0)
    out = tuple(np.broadcast_shapes(xs, tuple(_ints(imp.const_input(node, 1, "shape")))))
    x = imp.t(node, 0)
    if math.prod(out) == math.prod(xs):
        return [_reshape(imp, x, out)]
    # the IR has no expand op: add zeros that are only as large as the broadcast dims
    padded = (1,) * (len(out) - len(xs)) + xs
    zeros = np.zeros([o if p == 1 else 1 for p, o in zip(padded, out)], dtype=imp.b.type_of(x).dtype)
    return [imp.op("add", x, imp.constant(zeros, "zeros"))]


def _needs_constants(imp, node, a):
    raise _Unsupported("its inputs must be constants (static shapes only)")
