"""PyTorch → IR, through ``torch.export``.

``from_torch(module, example_inputs)`` exports the module in eval mode and walks the FX graph. High-level ops such
as ``linear``, ``conv2d``, ``layer_norm`` and ``scaled_dot_product_attention`` are kept (not decomposed) because
they map to IR ops one to one. In-place ops (``relu_``) are read as their functional form followed by a rebinding
of the mutated tensor; only when a view could observe a mutation is the graph functionalized by torch
(``run_decompositions({})``, slow on big models). Parameters, buffers and lifted constants become IR constants
named after their state-dict keys; nodes whose tensor inputs are all constants are evaluated with torch on the
spot. Every other node goes through ONE table, ``CONVERTERS``, keyed by aten overload. Shapes come from the example
inputs and flow through the IR type rules; each converted node's shape is checked against torch's own shape
metadata.
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import fx

from ir.frontends import ModelImportError
from ir.graph import Graph, GraphBuilder

aten = torch.ops.aten


class _Unsupported(Exception):
    """A node the converter cannot express; becomes a ModelImportError naming the node."""


def _np_dtype(dtype: torch.dtype) -> str:
    return torch.empty((), dtype=dtype).numpy().dtype.name


class Importer:
    """Conversion state and the helpers converters use. Values: IR name (str), torch.Tensor (a constant known
    at import time), Python scalars and lists/tuples of values (multi-output ops)."""

    def __init__(self, name: str) -> None:
        self.b = GraphBuilder(name)
        self.env: dict[fx.Node, Any] = {}
        self.hint = "v"
        self._materialized: dict[int, tuple[torch.Tensor, str]] = {}
        self.const_names: dict[int, str] = {}

    def t(self, v: Any, like: str | None = None) -> str:
        """``v`` as an IR tensor: constants become IR constant nodes (once per tensor); Python scalars become
        0-d constants of ``like``'s dtype (float32 by default)."""
        if isinstance(v, str):
            return v
        if isinstance(v, torch.Tensor):
            key = id(v)
            if key not in self._materialized:
                arr = v.detach().cpu().contiguous().numpy()
                arr = arr.astype(np.float32) if arr.dtype == np.float64 else arr
                self._materialized[key] = (v, self.b.constant(arr, self.const_names.get(key, self.hint + "_const")))
            return self._materialized[key][1]
        if isinstance(v, (bool, int, float)):
            dtype = self.b.type_of(like).dtype if like else "float32"
            return self.b.constant(np.asarray(v, dtype=dtype), self.hint + "_scalar")
        raise _Unsupported(f"expected a tensor, got {type(v).__name__}")

    def shape(self, v: Any) -> tuple[int, ...]:
        if isinstance(v, torch.Tensor):
            return tuple(v.shape)
        return self.b.type_of(v).shape

    def op(self, op: str, *inputs: str, **attrs: Any) -> str:
        return self.b.op(op, *inputs, name=self.hint, **attrs)


def _bind(node: fx.Node, env: dict, target: Any) -> dict[str, Any]:
    """The node's arguments by ``target``'s schema names, defaults filled in, FX nodes replaced by their values."""
    def value(a):
        if isinstance(a, fx.Node):
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(value(x) for x in a)
        return a
    schema = target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = value(node.args[i])
        elif arg.name in node.kwargs:
            out[arg.name] = value(node.kwargs[arg.name])
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _Unsupported(f"dim {axis} out of range for rank {rank}")
    return axis % rank


def _tup(v: Any, n: int) -> tuple[int, ...]:
    """An int or list argument as n ints (``[2]`` and ``2`` both mean ``(2, 2)`` for a 2-d window)."""
    vals = [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return tuple(vals * n if len(vals) == 1 else vals)


def _reshape(imp: Importer, x: str, shape) -> str:
    shape = tuple(int(d) for d in shape)
    return x if imp.shape(x) == shape else imp.op("reshape", x, shape=shape)


def _resolve_shape(in_shape: tuple, shape) -> tuple[int, ...]:
    shape = [int(d) for d in shape]
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(in_shape) // max(known, 1)
    return tuple(shape)


def _slice(imp: Importer, x: str, dim: int, start, end, step: int = 1) -> str:
    shape = imp.shape(x)
    dim = _axis(dim, len(shape))
    size = shape[dim]
    start = 0 if start is None else int(start)
    end = size if end is None else int(end)
    start, end = (s + size if s < 0 else s for s in (start, end))
    start, end = min(max(start, 0), size), min(max(end, 0), size)
    if step <= 0 or end <= start:
        raise _Unsupported(f"slice [{start}:{end}:{step}] of dim {dim} (size {size}) is empty or reversed")
    if (start, end, step) == (0, size, 1):
        return x
    return imp.op("slice", x, starts=(start,), ends=(end,), axes=(dim,), steps=(int(step),))


# ---- converters: fn(imp, args by schema name, node) -> value ---------------------------------------------
Converter = Callable[[Importer, dict, fx.Node], Any]


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
    x = a["self"]
    if a.get("dtype") is not None and _np_dtype(a["dtype"]) != imp.b.type_of(x).dtype:
        raise _Unsupported(f"dtype conversion to {a['dtype']} is not supported")
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
    x, y = imp.t(x), imp.t(y)
    sa, sb = imp.shape(x), imp.shape(y)
    if len(sa) == 1:
        x = _reshape(imp, x, (1,) + sa)
    if len(sb) == 1:
        y = _reshape(imp, y, sb + (1,))
    out = imp.op("matmul", x, y)
    shape = imp.shape(out)
    if len(sb) == 1:
        shape = shape[:-1]
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:] if len(sb) != 1 else shape[:-1]
    return _reshape(imp, out, shape)


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
        if a.get("dtype") is not None:
            raise _Unsupported("a dtype argument is not supported")
        x = imp.t(a["self"])
        rank = len(imp.shape(x))
        dims = a.get("dim")
        dims = range(rank) if dims is None or dims == [] or dims == () else dims
        dims = [dims] if isinstance(dims, int) else dims
        axes = tuple(sorted({_axis(int(d), rank) for d in dims}))
        return imp.op(ir_op, x, axes=axes, keepdims=int(bool(a.get("keepdim", False))))
    return convert


def _view(imp, a, node):
    x = imp.t(a["self"])
    return _reshape(imp, x, _resolve_shape(imp.shape(x), a.get("size", a.get("shape"))))


def _flatten(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    if not shape:
        return _reshape(imp, x, (1,))
    s, e = _axis(a["start_dim"], len(shape)), _axis(a["end_dim"], len(shape))
    return _reshape(imp, x, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def _permute(imp, a, node):
    x = imp.t(a["self"])
    rank = len(imp.shape(x))
    perm = tuple(_axis(int(d), rank) for d in a["dims"])
    return x if perm == tuple(range(rank)) else imp.op("transpose", x, perm=perm)


def _transpose(imp, a, node):
    x = imp.t(a["self"])
    rank = len(imp.shape(x))
    if node.target is aten.t.default:
        d0, d1 = (0, 1) if rank == 2 else (0, 0)
    else:
        d0, d1 = _axis(int(a["dim0"]), rank), _axis(int(a["dim1"]), rank)
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return x if d0 == d1 else imp.op("transpose", x, perm=tuple(perm))


def _cat(imp, a, node):
    tensors = [v for v in a["tensors"] if not (isinstance(v, torch.Tensor) and v.numel() == 0)]
    like = next((v for v in tensors if isinstance(v, str)), None)
    ins = [imp.t(v, like) for v in tensors]
    if len(ins) == 1:
        return ins[0]
    return imp.op("concat", *ins, axis=_axis(int(a["dim"]), len(imp.shape(ins[0]))))


def _slice_node(imp, a, node):
    return _slice(imp, imp.t(a["self"]), int(a["dim"]), a["start"], a["end"], int(a["step"]))


def _select(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a["dim"]), len(shape))
    i = int(a["index"])
    i = i + shape[dim] if i < 0 else i
    return _reshape(imp, _slice(imp, x, dim, i, i + 1), shape[:dim] + shape[dim + 1:])


def _split(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a.get("dim", 0)), len(shape))
    size = shape[dim]
    if node.target is aten.split_with_sizes.default:
        sizes = [int(s) for s in a["split_sizes"]]
    elif node.target is aten.chunk.default:
        part = -(-size // int(a["chunks"]))
        sizes = [min(part, size - k) for k in range(0, size, part)]
    else:
        part = int(a["split_size"])
        sizes = [min(part, size - k) for k in range(0, size, part)]
    outs, begin = [], 0
    for s in sizes:
        outs.append(_slice(imp, x, dim, begin, begin + s))
        begin += s
    return outs


def _unbind(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a["dim"]), len(shape))
    rest = shape[:dim] + shape[dim + 1:]
    return [_reshape(imp, _slice(imp, x, dim, i, i + 1), rest) for i in range(shape[dim])]


def _unsqueeze(imp, a, node):
    x = imp.t(a["self"])
    shape = list(imp.shape(x))
    shape.insert(_axis(int(a["dim"]), len(shape) + 1), 1)
    return _reshape(imp, x, shape)


def _squeeze(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dims = a.get("dim", a.get("dims"))
    dims = range(len(shape)) if dims is None else [dims] if isinstance(dims, int) else dims
    drop = {_axis(int(d), len(shape)) for d in dims} if shape else set()
    return _reshape(imp, x, [s for i, s in enumerate(shape) if not (i in drop and s == 1)])


def _expand(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    size = [int(s) for s in a["size"]]
    lead = len(size) - len(shape)
    out = tuple(shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return broadcast_to(imp, x, out)


def broadcast_to(imp: Importer, x: str, out: tuple[int, ...]) -> str:
    """``x`` broadcast to ``out``: a reshape when no data is repeated, else ``x + zeros`` whose zeros are only as
    large as the broadcast dims (the IR has no expand op; add's broadcasting does it)."""
    shape = imp.shape(x)
    if math.prod(out) == math.prod(shape):
        return _reshape(imp, x, out)
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    zeros = np.zeros([o if p == 1 else 1 for p, o in zip(padded, out)], dtype=imp.b.type_of(x).dtype)
    return imp.op("add", x, imp.b.constant(zeros, imp.hint + "_zeros"))


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


def _getitem(imp, node):
    seq, index = imp.env[node.args[0]], node.args[1]
    value = seq[index]
    if value is None:
        raise _Unsupported(f"output {index} of '{node.args[0].name}' is not supported (only the main output)")
    return value


_A = aten
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
    _A.unbind.int: _unbind, _A.unsqueeze.default: _unsqueeze, _A.squeeze.dim: _squeeze,
    _A.squeeze.dims: _squeeze, _A.squeeze.default: _squeeze, _A.expand.default: _expand,
    _A.scaled_dot_product_attention.default: _sdpa,
    # no-ops in inference
    _A.clone.default: _identity, _A.alias.default: _identity, _A.contiguous.default: _identity,
    _A.detach.default: _identity, _A.lift_fresh_copy.default: _identity, _A.dropout.default: _dropout,
    _A._to_copy.default: _to_copy,
}

# checks that export leaves in the graph; they have no value
_IGNORED = {_A._assert_tensor_metadata.default, _A._assert_scalar.default,
            _A.sym_constrain_range_for_size.default}


def _functional(target: Any) -> Any:
    """The out-of-place overload of an in-place aten op (``relu_`` → ``relu``); other targets unchanged."""
    if not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
        return target
    packet = target._schema.name.split("::")[-1]
    if not packet.endswith("_"):
        return target
    overload = target._overloadname or "default"
    return getattr(getattr(aten, packet[:-1], None), overload, target)


def _aliases(node: Any, write: bool) -> bool:
    """True for an aten node whose output aliases its input: a view (write=False) or an in-place op (True)."""
    target = getattr(node, "target", None)
    return isinstance(target, torch._ops.OpOverload) and any(
        r.alias_info is not None and r.alias_info.is_write == write for r in target._schema.returns)


def _inplace_is_simple(graph: fx.Graph) -> bool:
    """True when every in-place op can be read as "compute out of place, then rebind the mutated name".

    That holds when the mutated tensor is an intermediate that is mutated once, is neither a view nor the result
    of another in-place op, and is not viewed by another node (a view or alias would see the mutation).
    Otherwise the graph is functionalized by torch (slow for big models)."""
    for node in graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if node.target._schema.is_mutable:
            base = node.args[0] if node.args else None
            if _functional(node.target) is node.target or not isinstance(base, fx.Node) \
                    or base.op == "placeholder" or _aliases(base, False) or _aliases(base, True) \
                    or any(_aliases(u, False) for u in base.users) \
                    or sum(_aliases(u, True) for u in base.users) != 1:
                return False
    return True


def _foldable(node: fx.Node, target: Any, env: dict) -> bool:
    """True when every tensor argument is known, so torch can compute the node now."""
    tags = getattr(target, "tags", ())
    if torch.Tag.nondeterministic_seeded in tags or target in _IGNORED:
        return False
    ok = True

    def visit(a):
        nonlocal ok
        if isinstance(a, fx.Node) and not isinstance(env.get(a), (torch.Tensor, int, float, bool)):
            ok = False
    fx.node.map_aggregate((node.args, node.kwargs), visit)
    return ok and isinstance(target, torch._ops.OpOverload)


def _fold(node: fx.Node, target: Any, env: dict) -> Any:
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
    with torch.no_grad():
        return target(*args, **kwargs)


def _check_shape(imp: Importer, node: fx.Node, value: Any) -> None:
    """Compare each produced IR tensor's shape with torch's shape metadata (catches converter mistakes)."""
    meta = node.meta.get("val")
    pairs = zip(value, meta) if isinstance(value, (list, tuple)) and isinstance(meta, (list, tuple)) \
        else [(value, meta)]
    for v, m in pairs:
        if isinstance(v, str) and isinstance(m, torch.Tensor) and imp.shape(v) != tuple(m.shape):
            raise _Unsupported(f"converted shape {imp.shape(v)} differs from torch's {tuple(m.shape)}")


def _label(target: Any) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))


def from_torch(module: torch.nn.Module, example_inputs: tuple) -> Graph:
    """Import ``module`` (put in eval mode) as an IR graph with static shapes taken from ``example_inputs``."""
    source = type(module).__name__
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise
            warnings.simplefilter("ignore", FutureWarning)
            ep = torch.export.export(module.eval(), example_inputs)
            if not _inplace_is_simple(ep.graph_module.graph):
                ep = ep.run_decompositions({})  # functionalize, keeping high-level ops
    except Exception as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        raise ModelImportError(f"{source}: torch.export failed: {type(e).__name__}: {first}") from None
    sig = ep.graph_signature
    constants: dict[str, torch.Tensor] = {}
    for spec in sig.input_specs:
        if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            store = ep.state_dict if spec.target in ep.state_dict else ep.constants
            constants[spec.arg.name] = (store[spec.target], spec.target)
    imp = Importer(source)
    for node in ep.graph_module.graph.nodes:
        imp.hint = node.name
        where = f"{source}: node '{node.name}' (aten op {_label(node.target)})"
        try:
            if node.op == "placeholder":
                if node.name in constants:
                    tensor, target = constants[node.name]
                    tensor = tensor.detach()
                    imp.const_names[id(tensor)] = target
                    imp.env[node] = tensor
                else:
                    val = node.meta.get("val")
                    if not isinstance(val, torch.Tensor):
                        imp.env[node] = val  # a non-tensor user input: a static Python value
                        continue
                    imp.env[node] = imp.b.input(node.name, tuple(int(d) for d in val.shape), _np_dtype(val.dtype))
                continue
            if node.op == "output":
                break
            if node.op != "call_function":
                raise _Unsupported(f"FX node kind {node.op!r} is not supported")
            target = _functional(node.target)
            if target is operator.getitem:
                value = _getitem(imp, node)
            elif target in _IGNORED:
                value = None
            elif _foldable(node, target, imp.env):
                value = _fold(node, target, imp.env)
            elif target in CONVERTERS:
                value = CONVERTERS[target](imp, _bind(node, imp.env, target), node)
            else:
                supported = sorted(_label(k) for k in CONVERTERS)
                raise ModelImportError(f"{where}: unsupported op; supported: {', '.join(supported)}")
            _check_shape(imp, node, value)
            imp.env[node] = value
            if target is not node.target:  # in place: later readers of the mutated tensor see the result
                imp.env[node.args[0]] = value
        except ModelImportError:
            raise
        except _Unsupported as e:
            raise ModelImportError(f"{where}: {e}") from None
        except Exception as e:
            raise ModelImportError(f"{where}: {type(e).__name__}: {e}") from None
    out_node = next(n for n in ep.graph_module.graph.nodes if n.op == "output")
    flat = fx.node.map_aggregate(out_node.args[0], lambda x: x)
    flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
    outputs = []
    for spec, arg in zip(sig.output_specs, flat):
        if spec.kind.name != "USER_OUTPUT":
            continue
        value = imp.env[arg] if isinstance(arg, fx.Node) else arg
        imp.hint = spec.arg.name if hasattr(spec.arg, "name") else "output"
        try:
            outputs.append(imp.t(value))
        except _Unsupported as e:
            raise ModelImportError(f"{source}: output '{imp.hint}': {e}") from None
    from ir.passes.fold import remove_dead_nodes

    return remove_dead_nodes(imp.b.build(outputs))
