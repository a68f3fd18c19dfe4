"""PyTorch importer state and the helpers every torch converter shares.

:class:`Importer` holds the values of FX nodes (IR names, constant tensors, Python scalars) and materializes
constant tensors as IR constants once each. ``_bind`` names a node's arguments by the aten schema, so converters
read ``a["input"]``, ``a["stride"]``. The converters are in :mod:`ir.frontends.torch_ops` and
:mod:`ir.frontends.torch_layout_ops`; the driver is :mod:`ir.frontends.torch`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import fx

from ir.frontends import reshape_to
from ir.graph import GraphBuilder

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


_reshape = reshape_to  # shared by both frontends (ir.frontends)


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


def broadcast_to(imp: Importer, x: str, out: tuple[int, ...]) -> str:
    """``x`` broadcast to ``out``: a reshape when no data is repeated, else ``x + zeros`` whose zeros are only as
    large as the broadcast dims (the IR has no expand op; add's broadcasting does it)."""
    shape = imp.shape(x)
    if math.prod(out) == math.prod(shape):
        return _reshape(imp, x, out)
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    zeros = np.zeros([o if p == 1 else 1 for p, o in zip(padded, out)], dtype=imp.b.type_of(x).dtype)
    return imp.op("add", x, imp.b.constant(zeros, imp.hint + "_zeros"))


# a converter: fn(imp, args by schema name, node) -> value (an IR name, a constant, or a tuple for multi-output ops)
Converter = Callable[[Importer, dict, fx.Node], Any]
