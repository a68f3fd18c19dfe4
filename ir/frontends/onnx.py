"""ONNX → IR.

``from_onnx(model_or_path, input_shapes=None)`` walks the ONNX graph once in order. Every ONNX tensor maps to
either an IR node name or a numpy array known at import time ("folded"): initializers, ``Constant`` nodes and
any node whose inputs are all known (shape arithmetic such as Shape → Gather → Concat → Reshape) are evaluated
right away with ONNX's reference evaluator, so only real computation reaches the IR. Known arrays become IR
``constant`` nodes lazily, the first time an IR op reads them (float64 → float32).

Converters live in ONE table, ``CONVERTERS``, keyed by ONNX ``op_type``; each gets the importer, the node and its
attributes and returns one value per node output. Opset 13+ semantics, plus the older spellings that map
trivially (attribute instead of input for axes/pads/starts, Softmax's 2-D coercion before opset 13, legacy
broadcast attributes).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ir.frontends import ModelImportError
from ir.graph import Graph, GraphBuilder

Value = Any  # str (an IR node name) or np.ndarray (a value known at import time)

# ops never folded even when their inputs are known: they have no inputs and are not deterministic
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


class _Unsupported(Exception):
    """Raised by converters for a node they cannot express; becomes a ModelImportError naming the node."""


def _np_dtype(elem_type: int) -> str:
    name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    return "float32" if name == "float64" else name  # the IR computes in float32


class Importer:
    """Conversion state: the builder, the ONNX-name → value map and helpers for converters."""

    def __init__(self, model: onnx.ModelProto, source: str, input_shapes: dict | None) -> None:
        self.source = source
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not self.opset:
            raise ModelImportError(f"{source}: not a valid ONNX model: no opset_import for the default domain")
        graph = model.graph
        self.b = GraphBuilder(graph.name or os.path.splitext(source)[0] or "onnx")
        self.env: dict[str, Value] = {}
        self._materialized: dict[str, str] = {}  # ONNX name of a known array → its IR constant node
        self.hint = "v"
        # tensors read by some node or graph output: optional outputs (masks, indices) are refused only if used
        self.used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        for init in graph.initializer:
            self.env[init.name] = numpy_helper.to_array(init)
        self._inputs(graph, dict(input_shapes or {}))

    # ---- graph inputs -------------------------------------------------------------------------------------
    def _inputs(self, graph: onnx.GraphProto, shapes: dict) -> None:
        declared = [i for i in graph.input if i.name not in self.env]
        unknown = sorted(set(shapes) - {i.name for i in declared})
        if unknown:
            raise ModelImportError(f"{self.source}: input_shapes names {unknown}, but the graph inputs are "
                                   f"{[i.name for i in declared]}")
        for inp in declared:
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                raise ModelImportError(f"{self.source}: input '{inp.name}' is not a tensor")
            if inp.name in shapes:
                shape = tuple(int(d) for d in shapes[inp.name])
            else:
                if not tt.HasField("shape"):
                    raise ModelImportError(f"{self.source}: input '{inp.name}' has no shape; pass "
                                           f"input_shapes={{'{inp.name}': (...)}}")
                shape = []
                for d in tt.shape.dim:
                    if d.HasField("dim_value") and d.dim_value > 0:
                        shape.append(d.dim_value)
                    else:
                        sym = d.dim_param or "?"
                        raise ModelImportError(f"{self.source}: input '{inp.name}' has symbolic dim '{sym}'; pass "
                                               f"input_shapes={{'{inp.name}': (...)}} (static shapes only)")
                shape = tuple(shape)
            self.env[inp.name] = self.b.input(inp.name, shape, _np_dtype(tt.elem_type))

    # ---- helpers for converters ------------------------------------------------------------------------
    def has(self, node: onnx.NodeProto, i: int) -> bool:
        return i < len(node.input) and node.input[i] != ""

    def value(self, node: onnx.NodeProto, i: int) -> Value:
        name = node.input[i]
        if name not in self.env:
            raise _Unsupported(f"input '{name}' is not defined before it is used")
        return self.env[name]

    def c(self, node: onnx.NodeProto, i: int) -> np.ndarray | None:
        """Input i's value if it is known at import time (None for a missing optional input or a runtime one)."""
        if not self.has(node, i):
            return None
        v = self.value(node, i)
        return v if isinstance(v, np.ndarray) else None

    def const_input(self, node: onnx.NodeProto, i: int, what: str) -> np.ndarray:
        v = self.c(node, i)
        if v is None:
            raise _Unsupported(f"{what} (input {i}) must be a constant (static shapes only)")
        return v

    def t(self, node: onnx.NodeProto, i: int) -> str:
        """Input i as an IR tensor, materializing a known array as a constant node once per ONNX name."""
        v = self.value(node, i)
        if isinstance(v, str):
            return v
        name = node.input[i]
        if name not in self._materialized:
            self._materialized[name] = self.constant(v, name)
        return self._materialized[name]

    def constant(self, value: np.ndarray, hint: str = "const") -> str:
        arr = np.asarray(value)
        return self.b.constant(arr.astype(np.float32) if arr.dtype == np.float64 else arr, hint)

    def shape(self, v: Value) -> tuple[int, ...]:
        return tuple(v.shape) if isinstance(v, np.ndarray) else self.b.type_of(v).shape

    def in_shape(self, node: onnx.NodeProto, i: int) -> tuple[int, ...]:
        return self.shape(self.value(node, i))

    def op(self, op: str, *inputs: str, **attrs: Any) -> str:
        return self.b.op(op, *inputs, name=self.hint, **attrs)

    def refuse_used(self, node: onnx.NodeProto, first: int, what: str) -> None:
        """Optional outputs from ``first`` on are not supported; refuse only if the model reads them."""
        for o in node.output[first:]:
            if o and o in self.used:
                raise _Unsupported(f"its {what} output '{o}' is used, which is not supported")


# ---- attribute and index helpers ---------------------------------------------------------------------------
def _f32(v: float) -> float:
    """A float32 attribute as the shortest decimal that rounds to it (1e-5, not 9.999999747378752e-06)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="0"))


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.FLOAT:
            v = _f32(v)
        elif a.type == onnx.AttributeProto.FLOATS:
            v = [_f32(x) for x in v]
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _Unsupported(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _ints(v: Any) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _window_pads(a: dict, in_sp: tuple, kernel: tuple, strides: tuple, dilations: tuple) -> tuple[int, ...]:
    """Explicit pads (begin..., end...), resolving auto_pad SAME_UPPER/SAME_LOWER/VALID statically."""
    nd = len(kernel)
    mode = a.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return tuple(_ints(a.get("pads", [0] * 2 * nd)))
    if mode == "VALID":
        return (0,) * 2 * nd
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise _Unsupported(f"auto_pad {mode!r} is not supported")
    begin, end = [], []
    for d in range(nd):
        out = -(-in_sp[d] // strides[d])
        total = max(0, (out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - in_sp[d])
        small = total // 2
        begin.append(small if mode == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return tuple(begin + end)


def _slice_params(shape: tuple, starts, ends, axes, steps) -> tuple[list, list, list, list]:
    """Resolve ONNX Slice parameters against a static shape (negative indices, clamping like numpy)."""
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [_axis(a, rank) for a in axes]
    steps = [1] * len(starts) if steps is None else list(steps)
    rs, re_, ra, rst = [], [], [], []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        dim = shape[ax]
        if st <= 0:
            raise _Unsupported(f"slice step {st} on axis {ax}: only positive steps are supported")
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        if e <= s:
            raise _Unsupported(f"slice [{s}:{e}] on axis {ax} of size {dim} is empty")
        if (s, e, st) != (0, dim, 1):
            rs.append(s), re_.append(e), ra.append(ax), rst.append(st)
    return rs, re_, ra, rst


def _reshape(imp: Importer, x: str, shape: tuple) -> str:
    shape = tuple(int(d) for d in shape)
    return x if imp.shape(x) == shape else imp.op("reshape", x, shape=shape)


def _slice(imp: Importer, x: str, starts, ends, axes, steps=None) -> str:
    s, e, a, st = _slice_params(imp.shape(x), starts, ends, axes, steps)
    return imp.op("slice", x, starts=tuple(s), ends=tuple(e), axes=tuple(a), steps=tuple(st)) if a else x


# ---- converters: fn(imp, node, attrs) -> list of output values ----------------------------------------------
Converter = Callable[[Importer, onnx.NodeProto, dict], list]

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


def _clip(imp, node, a):
    if imp.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo, hi = (None if not imp.has(node, i) else float(imp.const_input(node, i, name))
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
    sa, w = imp.in_shape(node, 0), imp.c(node, 1)
    if w is not None and w.ndim == 2:  # x @ W with a constant 2-D W is a dense layer with weight Wᵀ
        return [imp.op("dense", imp.t(node, 0), imp.constant(np.ascontiguousarray(w.T), "weight"))]
    x, y = imp.t(node, 0), imp.t(node, 1)
    sb = imp.shape(y)
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
    return [_reshape(imp, out, shape)]


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


def _concat(imp, node, a):
    ins = [imp.t(node, i) for i in range(len(node.input)) if imp.has(node, i)]
    if len(ins) == 1:
        return ins
    return [imp.op("concat", *ins, axis=_axis(int(a["axis"]), len(imp.shape(ins[0]))))]


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
    target = _np_dtype(int(a["to"]))
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


# ---- driver --------------------------------------------------------------------------------------------------
def _load(model_or_path: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, model_or_path.graph.name or "<onnx model>"
    if isinstance(model_or_path, (bytes, bytearray)):
        source, data = "<onnx bytes>", bytes(model_or_path)
    elif isinstance(model_or_path, (str, os.PathLike)):
        source = os.path.basename(os.fspath(model_or_path))
        try:
            with open(model_or_path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelImportError(f"{source}: cannot read: {e.strerror or e}") from None
    else:
        raise ModelImportError(f"expected a path, bytes or onnx.ModelProto, got {type(model_or_path).__name__}")
    try:
        model = onnx.ModelProto.FromString(data)
        if isinstance(model_or_path, (str, os.PathLike)) and any(
                t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            onnx.load_external_data_for_model(model, os.path.dirname(os.fspath(model_or_path)) or ".")
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelImportError(f"{source}: not a valid ONNX file (truncated or corrupt): {e}") from None
    return model, source


def _fold(imp: Importer, node: onnx.NodeProto) -> list | None:
    """Evaluate a node whose inputs are all known with ONNX's reference implementation; None if it can't."""
    from onnx.reference import ReferenceEvaluator

    if node.op_type in _NO_FOLD or node.domain not in ("", "ai.onnx"):
        return None
    feeds = {}
    for i, name in enumerate(node.input):
        if name:
            v = imp.c(node, i)
            if v is None:
                return None
            feeds[name] = v
    if not feeds and node.op_type != "Constant":
        return None
    try:
        outs = ReferenceEvaluator(node, opsets={"": imp.opset}).run(None, feeds)
    except Exception:  # not implemented by the reference evaluator: convert as a runtime node instead
        return None
    return [np.asarray(o) for o in outs]


def _label(node: onnx.NodeProto, index: int) -> str:
    return node.name or (node.output[0] if node.output and node.output[0] else f"#{index}")


def from_onnx(model_or_path: Any, input_shapes: dict | None = None) -> Graph:
    """Import an ONNX model (a path, the file's bytes or an ``onnx.ModelProto``) as an IR graph.

    ``input_shapes`` maps input names to static shapes; it is required for inputs with symbolic dims and
    overrides declared shapes otherwise. Raises :class:`ir.frontends.ModelImportError` (one line) on anything
    that cannot be imported.
    """
    from ir.passes.fold import remove_dead_nodes

    model, source = _load(model_or_path)
    # structural sanity (a file cut at a field boundary parses, but misses its tail); onnx.checker is not used
    # because it rejects models that runtimes accept (e.g. outputs without a declared shape)
    if not model.HasField("graph") or not model.graph.output:
        raise ModelImportError(f"{source}: not a valid ONNX model (truncated?): it has no graph outputs")
    imp = Importer(model, source, input_shapes)
    for index, node in enumerate(model.graph.node):
        where = f"{source}: node '{_label(node, index)}' (op {node.op_type})"
        imp.hint = next((o for o in node.output if o), node.op_type)
        try:
            outs = _fold(imp, node)
            if outs is None:
                if node.domain not in ("", "ai.onnx") or node.op_type not in CONVERTERS:
                    op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                    raise ModelImportError(f"{source}: node '{_label(node, index)}' (op {op}): unsupported op; "
                                           f"supported: {', '.join(sorted(CONVERTERS))}")
                outs = CONVERTERS[node.op_type](imp, node, _attrs(node))
        except ModelImportError:
            raise
        except _Unsupported as e:
            raise ModelImportError(f"{where}: {e}") from None
        except Exception as e:  # a type rule or conversion failure: report it against the node
            raise ModelImportError(f"{where}: {type(e).__name__}: {e}") from None
        for name, value in zip(node.output, outs):
            if name:
                imp.env[name] = value
    outputs = []
    for out in model.graph.output:
        if out.name not in imp.env:
            raise ModelImportError(f"{source}: graph output '{out.name}' is not produced by any node")
        v = imp.env[out.name]
        outputs.append(v if isinstance(v, str) else imp.constant(v, out.name))
    return remove_dead_nodes(imp.b.build(outputs))
