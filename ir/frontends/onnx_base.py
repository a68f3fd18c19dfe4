"""ONNX importer state and the helpers every ONNX converter shares.

:class:`Importer` maps each ONNX tensor name to an IR node name or a numpy array known at import time, and
materializes known arrays as IR constants the first time an IR op reads them. The attribute/index helpers here
(axis normalization, auto_pad resolution, Slice parameter resolution) are used by converters in
:mod:`ir.frontends.onnx_ops` and :mod:`ir.frontends.onnx_layout_ops`; the driver is :mod:`ir.frontends.onnx`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ir.frontends import ModelImportError, reshape_to
from ir.graph import GraphBuilder

Value = Any  # str (an IR node name) or np.ndarray (a value known at import time)

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
                if any(d < 1 for d in shape):
                    raise ModelImportError(f"{self.source}: input_shapes gives '{inp.name}' the shape {shape}; "
                                           "every dimension must be at least 1")
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
                                               f"input_shapes={{'{inp.name}': (...)}} (on the command line "
                                               f"--input-shape {inp.name}=D1,D2,...; static shapes only)")
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


_reshape = reshape_to  # shared by both frontends (ir.frontends)


def _slice(imp: Importer, x: str, starts, ends, axes, steps=None) -> str:
    s, e, a, st = _slice_params(imp.shape(x), starts, ends, axes, steps)
    return imp.op("slice", x, starts=tuple(s), ends=tuple(e), axes=tuple(a), steps=tuple(st)) if a else x



# a converter: fn(imp, node, attrs) -> list of output values (IR names or numpy arrays), one per node output
Converter = Callable[[Importer, onnx.NodeProto, dict], list]
