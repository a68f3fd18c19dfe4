"""PyTorch converters for computation (activations, arithmetic, conv/linear/matmul, normalization, pooling,
reductions, attention) and THE table of all aten converters, ``CONVERTERS``, keyed by aten overload.

Shape/view converters (view, permute, cat, slice, split, ...) live in :mod:`ir.frontends.torch_layout_ops`; they
are listed in the same table here so that adding an op stays one entry in one place.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ir.frontends import numpy_matmul
from ir.frontends.torch_base import Converter, Importer, _axis, _np_dtype, _tup, _Unsupported, aten
# the shape/view converters, registered in CONVERTERS below
from ir.frontends.torch_layout_ops import (_cat, _expand, _flatten, _permute, _select, _slice_node, _split,
                                           _squeeze, _transpose, _unbind, _unflatten, _unsqueeze, _view)

_A = aten


def _unary(ir_op: str, **fixed) -> Converter:
    return lambda imp, a, node: imp.op(ir_op, imp.t(a["self"]), **fixed)


def _binary(ir_op: str, reverse: bool = False) -> Converter:
    def convert(imp, a, node):
        x, y = a["self"], a["other"] if "other" in a else a["exponent"]
        tensor = x if isinstance(x, str) else y if isinstance(y, str) else None
        x, y = imp.t(x, like=tensor), imp.t(y, like=tensor)
        alpha = a.get("alpha", 1)
        if alpha not in (None, 1):  # add/sub: other·alpha; rsub: self·alpha
            if reverse:
                x = imp.op("mul", x, imp.t(alpha, like=x))
            else:
                y = imp.op("mul", y, imp.t(alpha, like=y))
        return imp.op(ir_op, y, x) if reverse else imp.op(ir_op, x, y)
    return convert


def _div(imp, a, node):
    if a.get("rounding_mode") is not None:
        raise _Unsupported(f"rounding_mode={a['rounding_mode']!r} is not supported")
    return _binary("div")(imp, a, node)


def _identity(imp, a, node):
    return a["self"] if "self" in a else a["input"]


def _dropout(imp, a, node):
    if a.get("train"):
        raise _Unsupported("training-mode dropout is not supported")
    return a["input"]


def _to_copy(imp, a, node):
    """``_to_copy`` / ``to``: a conversion to the dtype the tensor has already (``x.float()`` on float32) is a
    no-op; a real conversion is refused (the IR has no cast). Device and layout arguments do not matter here."""
    x = a["self"]
    dtype = a.get("dtype")
    if dtype is not None and _np_dtype(dtype) != imp.b.type_of(imp.t(x)).dtype:
        raise _Unsupported(f"dtype conversion to {dtype} is not supported")
    return x


def _abs(imp, a, node):
    x = imp.t(a["self"])
    return imp.op("max", x, imp.op("neg", x))  # |x| = max(x, -x); the IR has no abs op


def _hardtanh(imp, a, node):
    return imp.op("clip", imp.t(a["self"]), min=float(a["min_val"]), max=float(a["max_val"]))


def _gelu(imp, a, node):
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise _Unsupported(f"approximate={approx!r} is not supported")
    return imp.op("gelu" if approx == "none" else "gelu_tanh", imp.t(a["self"]))


def _conv(imp, a, node):
    if a.get("transposed"):
        raise _Unsupported("transposed convolution is not supported")
    x, w = imp.t(a["input"]), imp.t(a["weight"])
    ws = imp.shape(w)
    nd = len(ws) - 2
    stride, dilation = _tup(a["stride"], nd), _tup(a["dilation"], nd)
    padding = a["padding"]
    if padding == "valid":
        pads = (0,) * 2 * nd
    elif padding == "same":  # torch puts the odd extra padding at the end
        total = [dilation[d] * (ws[2 + d] - 1) for d in range(nd)]
        pads = tuple(t // 2 for t in total) + tuple(t - t // 2 for t in total)
    else:
        pads = _tup(padding, nd) * 2
    ins = [x, w] + ([imp.t(a["bias"])] if a.get("bias") is not None else [])
    return imp.op("conv", *ins, strides=stride, pads=pads, dilations=dilation, groups=int(a["groups"]))


def _linear(imp, a, node):
    ins = [imp.t(a["input"]), imp.t(a["weight"])] + ([imp.t(a["bias"])] if a.get("bias") is not None else [])
    return imp.op("dense", *ins)


def _matmul_values(imp: Importer, x: Any, y: Any) -> str:
    """numpy matmul; a constant 2-D right operand makes a dense layer (weight = its transpose)."""
    if isinstance(y, torch.Tensor) and y.dim() == 2 and not isinstance(x, torch.Tensor):
        return imp.op("dense", imp.t(x), imp.t(y.t().contiguous()))
    return numpy_matmul(imp, imp.t(x), imp.t(y))


def _matmul(imp, a, node):
    return _matmul_values(imp, a["self"], a.get("other", a.get("mat2")))


def _addmm(imp, a, node):
    bias, x, w = a["self"], a["mat1"], a["mat2"]
    beta, alpha = a.get("beta", 1), a.get("alpha", 1)
    n = imp.shape(w)[1]
    if isinstance(w, torch.Tensor) and isinstance(bias, torch.Tensor) and tuple(bias.shape) in ((n,), (1, n)):
        return imp.op("dense", imp.t(x), imp.t((w * alpha).t().contiguous()), imp.t((bias * beta).reshape(n)))
    y = _matmul_values(imp, x, w)
    if alpha != 1:
        y = imp.op("mul", y, imp.t(float(alpha), like=y))
    b = imp.t(bias)
    if beta != 1:
        b = imp.op("mul", b, imp.t(float(beta), like=b))
    return imp.op("add", y, b)


def _batchnorm(imp, a, node):
    if a.get("training"):
        raise _Unsupported("training-mode batch norm is not supported")
    x = imp.t(a["input"])
    c = imp.shape(x)[1]
    scale = a["weight"] if a["weight"] is not None else torch.ones(c)
    bias = a["bias"] if a["bias"] is not None else torch.zeros(c)
    ins = [imp.t(v) for v in (scale, bias, a["running_mean"], a["running_var"])]
    y = imp.op("batchnorm", x, *ins, epsilon=float(a["eps"]))
    return (y, None, None) if node.target is aten._native_batch_norm_legit_no_training.default else y


def _layernorm(imp, a, node):
    x = imp.t(a["input"])
    rank = len(imp.shape(x))
    ins = [x]
    if a.get("weight") is not None or a.get("bias") is not None:
        n = tuple(int(d) for d in a["normalized_shape"])
        ins.append(imp.t(a["weight"] if a["weight"] is not None else torch.ones(n)))
        if a.get("bias") is not None:
            ins.append(imp.t(a["bias"]))
    y = imp.op("layernorm", *ins, axis=rank - len(a["normalized_shape"]), epsilon=float(a["eps"]))
    return (y, None, None) if node.target is aten.native_layer_norm.default else y


def _softmax(imp, a, node):
    x = imp.t(a["self"])
    return imp.op("softmax", x, axis=_axis(int(a["dim"]), len(imp.shape(x))))


def _maxpool(imp, a, node):
    x = imp.t(a["self"])
    nd = len(imp.shape(x)) - 2
    kernel = _tup(a["kernel_size"], nd)
    stride = _tup(a["stride"], nd) if a["stride"] not in (None, [], ()) else kernel
    y = imp.op("maxpool", x, kernel=kernel, strides=stride, pads=_tup(a["padding"], nd) * 2,
               dilations=_tup(a["dilation"], nd), ceil_mode=int(bool(a["ceil_mode"])))
    return (y, None) if "with_indices" in str(node.target) else y


def _avgpool(imp, a, node):
    if a.get("divisor_override") is not None:
        raise _Unsupported("divisor_override is not supported")
    x = imp.t(a["self"])
    nd = len(imp.shape(x)) - 2
    kernel = _tup(a["kernel_size"], nd)
    stride = _tup(a["stride"], nd) if a["stride"] not in (None, [], ()) else kernel
    return imp.op("avgpool", x, kernel=kernel, strides=stride, pads=_tup(a["padding"], nd) * 2,
                  ceil_mode=int(bool(a["ceil_mode"])), count_include_pad=int(bool(a["count_include_pad"])))


def _adaptive_avgpool(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    nd = len(shape) - 2
    out = tuple(shape[2 + d] if o is None else int(o) for d, o in enumerate(_tup(a["output_size"], nd)))
    if all(o == 1 for o in out):
        return imp.op("global_avgpool", x)
    if any(shape[2 + d] % out[d] for d in range(nd)):
        raise _Unsupported(f"adaptive pooling of {shape[2:]} to {out} needs sizes that divide evenly")
    if out == shape[2:]:
        return x
    kernel = tuple(shape[2 + d] // out[d] for d in range(nd))
    return imp.op("avgpool", x, kernel=kernel, strides=kernel, pads=(0,) * 2 * nd, ceil_mode=0, count_include_pad=0)


def _reduce(ir_op: str) -> Converter:
    def convert(imp, a, node):
        x = imp.t(a["self"])
        if a.get("dtype") is not None and _np_dtype(a["dtype"]) != imp.b.type_of(x).dtype:
            raise _Unsupported(f"a dtype argument that converts ({a['dtype']}) is not supported")
        rank = len(imp.shape(x))
        dims = a.get("dim")
        dims = range(rank) if dims is None or dims == [] or dims == () else dims
        dims = [dims] if isinstance(dims, int) else dims
        axes = tuple(sorted({_axis(int(d), rank) for d in dims}))
        return imp.op(ir_op, x, axes=axes, keepdims=int(bool(a.get("keepdim", False))))
    return convert


def _sdpa(imp, a, node):
    """softmax(q·kᵀ·scale + mask)·v, spelled with IR matmul/mul/add/softmax."""
    if a.get("dropout_p"):
        raise _Unsupported("attention dropout is not supported")
    if a.get("enable_gqa"):
        raise _Unsupported("grouped-query attention (enable_gqa) is not supported")
    q, k, v = imp.t(a["query"]), imp.t(a["key"]), imp.t(a["value"])
    qs, ks = imp.shape(q), imp.shape(k)
    rank = len(ks)
    scale = a.get("scale")
    scale = 1.0 / math.sqrt(qs[-1]) if scale is None else float(scale)
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    scores = imp.op("matmul", q, imp.op("transpose", k, perm=perm))
    scores = imp.op("mul", scores, imp.t(scale, like=scores))
    mask = a.get("attn_mask")
    if a.get("is_causal"):
        lq, lk = qs[-2], ks[-2]
        mask = torch.ones(lq, lk, dtype=torch.bool).tril()
    if mask is not None:
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:  # keep where True: 0, else a huge negative
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        elif not isinstance(mask, str) and not isinstance(mask, torch.Tensor):
            raise _Unsupported("attn_mask must be a tensor")
        scores = imp.op("add", scores, imp.t(mask))
    probs = imp.op("softmax", scores, axis=rank - 1)
    return imp.op("matmul", probs, v)


CONVERTERS: dict[Any, Converter] = {
    # convolution and linear algebra
    _A.conv1d.default: _conv, _A.conv2d.default: _conv, _A.conv3d.default: _conv,
    _A.conv1d.padding: _conv, _A.conv2d.padding: _conv, _A.conv3d.padding: _conv,
    _A.convolution.default: _conv, _A.linear.default: _linear, _A.addmm.default: _addmm,
    _A.mm.default: _matmul, _A.bmm.default: _matmul, _A.matmul.default: _matmul,
    # activations
    _A.relu.default: _unary("relu"), _A.sigmoid.default: _unary("sigmoid"), _A.tanh.default: _unary("tanh"),
    _A.gelu.default: _gelu, _A.silu.default: _unary("silu"), _A.hardswish.default: _unary("hardswish"),
    _A.hardsigmoid.default: _unary("hardsigmoid", alpha=1 / 6, beta=0.5), _A.hardtanh.default: _hardtanh,
    _A.relu6.default: _unary("clip", min=0.0, max=6.0),
    _A.leaky_relu.default: lambda imp, a, node: imp.op("leaky_relu", imp.t(a["self"]),
                                                       alpha=float(a["negative_slope"])),
    _A.neg.default: _unary("neg"), _A.exp.default: _unary("exp"), _A.sqrt.default: _unary("sqrt"),
    _A.erf.default: _unary("erf"), _A.abs.default: _abs,
    # arithmetic (Scalar overloads: the Python number becomes a constant)
    _A.add.Tensor: _binary("add"), _A.add.Scalar: _binary("add"), _A.sub.Tensor: _binary("sub"),
    _A.sub.Scalar: _binary("sub"), _A.rsub.Scalar: _binary("sub", reverse=True),
    _A.rsub.Tensor: _binary("sub", reverse=True), _A.mul.Tensor: _binary("mul"), _A.mul.Scalar: _binary("mul"),
    _A.div.Tensor: _div, _A.div.Scalar: _div, _A.div.Tensor_mode: _div,
    _A.pow.Tensor_Scalar: _binary("pow"), _A.pow.Tensor_Tensor: _binary("pow"),
    _A.maximum.default: _binary("max"), _A.minimum.default: _binary("min"),
    # normalization, softmax, pooling, reductions
    _A._native_batch_norm_legit_no_training.default: _batchnorm, _A.batch_norm.default: _batchnorm,
    _A.layer_norm.default: _layernorm, _A.native_layer_norm.default: _layernorm,
    _A.softmax.int: _softmax, _A._softmax.default: _softmax, _A._safe_softmax.default: _softmax,
    _A.max_pool1d.default: _maxpool, _A.max_pool2d.default: _maxpool, _A.max_pool3d.default: _maxpool,
    _A.max_pool2d_with_indices.default: _maxpool, _A.max_pool3d_with_indices.default: _maxpool,
    _A.avg_pool1d.default: _avgpool, _A.avg_pool2d.default: _avgpool, _A.avg_pool3d.default: _avgpool,
    _A.adaptive_avg_pool1d.default: _adaptive_avgpool, _A.adaptive_avg_pool2d.default: _adaptive_avgpool,
    _A._adaptive_avg_pool2d.default: _adaptive_avgpool,
    _A.mean.dim: _reduce("reduce_mean"), _A.mean.default: _reduce("reduce_mean"),
    _A.sum.dim_IntList: _reduce("reduce_sum"), _A.sum.default: _reduce("reduce_sum"),
    _A.amax.default: _reduce("reduce_max"),
    # shapes and views
    _A.view.default: _view, _A.reshape.default: _view, _A._unsafe_view.default: _view,
    _A.flatten.using_ints: _flatten, _A.permute.default: _permute, _A.transpose.int: _transpose,
    _A.t.default: _transpose, _A.cat.default: _cat, _A.slice.Tensor: _slice_node, _A.select.int: _select,
    _A.split.Tensor: _split, _A.split_with_sizes.default: _split, _A.chunk.default: _split,
    _A.unbind.int: _unbind, _A.unflatten.int: _unflatten, _A.unsqueeze.default: _unsqueeze,
    _A.squeeze.dim: _squeeze, _A.squeeze.dims: _squeeze, _A.squeeze.default: _squeeze, _A.expand.default: _expand,
    _A.scaled_dot_product_attention.default: _sdpa,
    # no-ops in inference
    _A.clone.default: _identity, _A.alias.default: _identity, _A.contiguous.default: _identity,
    _A.detach.default: _identity, _A.lift_fresh_copy.default: _identity, _A.dropout.default: _dropout,
    _A._to_copy.default: _to_copy, _A.to.dtype: _to_copy, _A.to.dtype_layout: _to_copy,
    _A.to.device: _to_copy,
}
