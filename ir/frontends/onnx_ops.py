"""ONNX converters for computation (activations, arithmetic, conv/gemm/matmul, normalization, pooling,
reductions) and THE table of all ONNX converters, ``CONVERTERS``, keyed by ONNX ``op_type``.

Shape/layout converters (Reshape, Slice, Gather, Pad, ...) live in :mod:`ir.frontends.onnx_layout_ops`; they are
listed in the same table here so that adding an op stays one entry in one place.
"""

from __future__ import annotations

import math

import numpy as np

from ir.frontends import numpy_matmul
from ir.frontends.onnx_base import Converter, _axis, _ints, _reshape, _Unsupported, _window_pads
# the shape/layout converters, registered in CONVERTERS below
from ir.frontends.onnx_layout_ops import (_cast, _concat, _expand, _flatten, _gather, _needs_constants, _pad,
                                          _reshape_node, _shape, _size, _slice_node, _split, _squeeze, _transpose,
                                          _unsqueeze)

UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Exp": "exp", "Sqrt": "sqrt",
         "Neg": "neg", "HardSwish": "hardswish"}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Max": "max", "Min": "min",
          "Sum": "add"}


def _unary(ir_op: str) -> Converter:
    return lambda imp, node, a: [imp.op(ir_op, imp.t(node, 0))]


def _binary(ir_op: str) -> Converter:
    def convert(imp, node, a):
        acc = imp.t(node, 0)
        if len(node.input) == 1:  # variadic Sum/Max/Min of one tensor
            return [acc]
        for i in range(1, len(node.input)):
            known = imp.c(node, i)
            if (ir_op == "pow" and known is not None and np.issubdtype(known.dtype, np.integer)
                    and np.issubdtype(np.dtype(imp.b.type_of(acc).dtype), np.floating)):
                # a constant integer exponent (allowed from opset 12) is exact in the base's float type
                b = imp.constant(known.astype(imp.b.type_of(acc).dtype), node.input[i])
            else:
                b = imp.t(node, i)
            if a.get("broadcast") and "axis" in a:  # opset < 7: B aligned to A starting at `axis`
                ra, rb = len(imp.shape(acc)), len(imp.shape(b))
                b = _reshape(imp, b, imp.shape(b) + (1,) * (ra - _axis(a["axis"], ra) - rb))
            acc = imp.op(ir_op, acc, b)
        return [acc]
    return convert


def _identity(imp, node, a):
    imp.refuse_used(node, 1, "mask")
    if a.get("training_mode") or imp.c(node, 2) is not None and bool(imp.c(node, 2)):
        raise _Unsupported("training-mode dropout is not supported")
    return [imp.value(node, 0)]


def _leaky_relu(imp, node, a):
    return [imp.op("leaky_relu", imp.t(node, 0), alpha=float(a.get("alpha", 0.01)))]


def _hardsigmoid(imp, node, a):
    return [imp.op("hardsigmoid", imp.t(node, 0), alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)))]


def _gelu(imp, node, a):
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise _Unsupported(f"approximate={approx!r} is not supported")
    return [imp.op("gelu" if approx == "none" else "gelu_tanh", imp.t(node, 0))]


def _scalar(v: np.ndarray, what: str) -> float:
    """A scalar input's value; a one-element tensor (shape [1], as some exporters write it) is accepted too."""
    v = np.asarray(v)
    if v.size != 1:
        raise _Unsupported(f"{what} must be a scalar, got shape {list(v.shape)}")
    return float(v.reshape(-1)[0])


def _clip(imp, node, a):
    if imp.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo, hi = (None if not imp.has(node, i) else _scalar(imp.const_input(node, i, name), f"Clip {name}")
                  for i, name in ((1, "min"), (2, "max")))
    x = imp.t(node, 0)
    if lo is None and hi is None:
        return [x]
    return [imp.op("clip", x, min=None if lo is None else float(lo), max=None if hi is None else float(hi))]


def _conv(imp, node, a):
    xs, ws = imp.in_shape(node, 0), imp.in_shape(node, 1)
    nd = len(ws) - 2
    strides = tuple(_ints(a.get("strides", [1] * nd)))
    dilations = tuple(_ints(a.get("dilations", [1] * nd)))
    pads = _window_pads(a, xs[2:], ws[2:], strides, dilations)
    ins = [imp.t(node, i) for i in range(3) if imp.has(node, i)]
    return [imp.op("conv", *ins, strides=strides, pads=pads, dilations=dilations, groups=int(a.get("group", 1)))]


def _gemm(imp, node, a):
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_b = bool(a.get("transB", 0))
    x = imp.t(node, 0)
    if a.get("transA", 0):
        x = imp.op("transpose", x, perm=(1, 0))
    w, c = imp.c(node, 1), imp.c(node, 2)
    has_c = imp.has(node, 2) and beta != 0.0
    if w is not None:  # constant B: a dense layer with weight [out, in] (alpha folded into it)
        if trans_b and alpha == 1.0:
            ins = [x, imp.t(node, 1)]
        else:
            wm = (w if trans_b else w.T) * np.asarray(alpha, w.dtype)
            ins = [x, imp.constant(np.ascontiguousarray(wm), "weight")]
        n = imp.shape(ins[1])[0]
        # a constant C that is one value per output column is the dense layer's bias
        if has_c and c is not None and c.ndim <= 2 and (c.ndim < 2 or c.shape[0] == 1) \
                and c.shape[-1:] in ((), (1,), (n,)):
            same = beta == 1.0 and c.shape == (n,)
            ins.append(imp.t(node, 2) if same else
                       imp.constant(np.broadcast_to(c.reshape(-1) * np.asarray(beta, c.dtype), (n,)).copy(), "bias"))
            has_c = False
        y = imp.op("dense", *ins)
    else:
        b = imp.t(node, 1)
        y = imp.op("matmul", x, imp.op("transpose", b, perm=(1, 0)) if trans_b else b)
        if alpha != 1.0:
            y = imp.op("mul", y, imp.constant(np.float32(alpha), "alpha"))
    if has_c:
        if c is not None:
            bias = imp.t(node, 2) if beta == 1.0 else imp.constant(c * np.asarray(beta, c.dtype), "bias")
        else:
            bias = imp.t(node, 2)
            if beta != 1.0:
                bias = imp.op("mul", bias, imp.constant(np.float32(beta), "beta"))
        y = imp.op("add", y, bias)
    return [y]


def _matmul(imp, node, a):
    w = imp.c(node, 1)
    if w is not None and w.ndim == 2:  # x @ W with a constant 2-D W is a dense layer with weight Wᵀ
        return [imp.op("dense", imp.t(node, 0), imp.constant(np.ascontiguousarray(w.T), "weight"))]
    return [numpy_matmul(imp, imp.t(node, 0), imp.t(node, 1))]


def _batchnorm(imp, node, a):
    imp.refuse_used(node, 1, "training statistics")
    if a.get("training_mode", 0) or a.get("spatial", 1) != 1:
        raise _Unsupported("only inference-mode spatial batch normalization is supported")
    return [imp.op("batchnorm", *(imp.t(node, i) for i in range(5)), epsilon=float(a.get("epsilon", 1e-5)))]


def _pool_common(imp, node, a):
    xs = imp.in_shape(node, 0)
    kernel = tuple(_ints(a["kernel_shape"]))
    nd = len(kernel)
    strides = tuple(_ints(a.get("strides", [1] * nd)))
    dilations = tuple(_ints(a.get("dilations", [1] * nd)))
    pads = _window_pads(a, xs[2:], kernel, strides, dilations)
    return kernel, strides, pads, dilations, int(a.get("ceil_mode", 0))


def _maxpool(imp, node, a):
    imp.refuse_used(node, 1, "indices")
    kernel, strides, pads, dilations, ceil = _pool_common(imp, node, a)
    return [imp.op("maxpool", imp.t(node, 0), kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                   ceil_mode=ceil)]


def _avgpool(imp, node, a):
    kernel, strides, pads, dilations, ceil = _pool_common(imp, node, a)
    if any(d != 1 for d in dilations):
        raise _Unsupported("dilated average pooling is not supported")
    return [imp.op("avgpool", imp.t(node, 0), kernel=kernel, strides=strides, pads=pads, ceil_mode=ceil,
                   count_include_pad=int(a.get("count_include_pad", 0)))]


def _global_avgpool(imp, node, a):
    return [imp.op("global_avgpool", imp.t(node, 0))]


def _global_maxpool(imp, node, a):
    rank = len(imp.in_shape(node, 0))
    return [imp.op("reduce_max", imp.t(node, 0), axes=tuple(range(2, rank)), keepdims=1)]


def _reduce(ir_op: str) -> Converter:
    def convert(imp, node, a):
        rank = len(imp.in_shape(node, 0))
        axes = a.get("axes")
        if axes is None and imp.has(node, 1):
            axes = _ints(imp.const_input(node, 1, "axes"))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return [imp.value(node, 0)]
            axes = range(rank)
        axes = tuple(sorted({_axis(int(x), rank) for x in axes}))
        return [imp.op(ir_op, imp.t(node, 0), axes=axes, keepdims=int(a.get("keepdims", 1)))]
    return convert


def _softmax(imp, node, a):
    shape = imp.in_shape(node, 0)
    rank = len(shape)
    if imp.opset >= 13:
        return [imp.op("softmax", imp.t(node, 0), axis=_axis(int(a.get("axis", -1)), rank))]
    axis = _axis(int(a.get("axis", 1)), rank) if rank else 0
    if axis == rank - 1:  # the old 2-D coercion is the same as softmax on the last axis
        return [imp.op("softmax", imp.t(node, 0), axis=axis)]
    flat = _reshape(imp, imp.t(node, 0), (math.prod(shape[:axis]), math.prod(shape[axis:])))
    return [_reshape(imp, imp.op("softmax", flat, axis=1), shape)]


def _lrn(imp, node, a):
    return [imp.op("lrn", imp.t(node, 0), size=int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                   beta=float(a.get("beta", 0.75)), bias=float(a.get("bias", 1.0)))]


def _layernorm(imp, node, a):
    imp.refuse_used(node, 1, "mean/inv_std_dev")
    rank = len(imp.in_shape(node, 0))
    ins = [imp.t(node, i) for i in range(3) if imp.has(node, i)]
    return [imp.op("layernorm", *ins, axis=_axis(int(a.get("axis", -1)), rank), epsilon=float(a.get("epsilon", 1e-5)))]


CONVERTERS: dict[str, Converter] = {
    **{k: _unary(v) for k, v in UNARY.items()},
    **{k: _binary(v) for k, v in BINARY.items()},
    "Identity": _identity, "Dropout": _identity,
    "LeakyRelu": _leaky_relu, "HardSigmoid": _hardsigmoid, "Gelu": _gelu, "Clip": _clip,
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
    "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm, "Softmax": _softmax,
    "LRN": _lrn,
    "MaxPool": _maxpool, "AveragePool": _avgpool, "GlobalAveragePool": _global_avgpool,
    "GlobalMaxPool": _global_maxpool,
    "ReduceMean": _reduce("reduce_mean"), "ReduceSum": _reduce("reduce_sum"), "ReduceMax": _reduce("reduce_max"),
    "Concat": _concat, "Reshape": _reshape_node, "Flatten": _flatten, "Transpose": _transpose,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Pad": _pad, "Slice": _slice_node, "Split": _split,
    "Gather": _gather, "Cast": _cast, "Shape": _shape, "Size": _size, "Expand": _expand,
    "Constant": _needs_constants, "ConstantOfShape": _needs_constants, "Range": _needs_constants,
}
