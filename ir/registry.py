"""The op table: one :class:`OpDef` per op name, registered once by the modules of :mod:`operators`.

An entry holds everything that is specific to an op — its type rule, its mathematical instruction, its PyTorch
reference and its ONNX spelling. Everything else (FLOPs, bytes, TVM lowering, schedules) is derived generically
from the instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ir.graph import TensorType
from ir.instruction import Instruction

Attrs = Mapping[str, Any]


class UnsupportedOpError(ValueError):
    """An op the IR does not know; names the op (and the node, where the caller knows it)."""


@dataclass(frozen=True)
class OpDef:
    """Everything op-specific.

    infer(attrs, in_types) -> TensorType               shape and dtype rule (raises ValueError on bad input)
    instruction(attrs, in_types, out_type) -> Instruction
    torch(attrs, *tensors) -> tensor                      reference semantics, also used by the torch exporter
    onnx(attrs, in_names, out_name, ctx) -> list[NodeProto]  export to ONNX (ctx adds initializers); None = none
    elementwise: one output element reads only same-position input elements (fusible as an epilogue)
    weight_inputs: positions of inputs that are learnable weights when they are constants
    """

    name: str
    infer: Callable[[Attrs, tuple[TensorType, ...]], TensorType]
    instruction: Callable[[Attrs, tuple[TensorType, ...], TensorType], Instruction]
    torch: Callable[..., Any]
    onnx: Callable[..., Any] | None = None
    elementwise: bool = False
    weight_inputs: tuple[int, ...] = ()
    arity: tuple[int, int] = (1, 1)
    doc: str = ""
    example: Callable[[], tuple[dict, tuple[TensorType, ...]]] | None = field(default=None, compare=False)


_OPS: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in _OPS:
        raise ValueError(f"op {opdef.name!r} registered twice")
    _OPS[opdef.name] = opdef
    return opdef


def _ensure_loaded() -> None:
    import operators  # noqa: F401  (registers the built-in ops)


def get_op(name: str) -> OpDef:
    _ensure_loaded()
    try:
        return _OPS[name]
    except KeyError:
        raise UnsupportedOpError(f"unknown op {name!r}; known ops: {', '.join(sorted(_OPS))}") from None


def all_ops() -> dict[str, OpDef]:
    _ensure_loaded()
    return dict(sorted(_OPS.items()))
