"""Matrix multiplication with numpy semantics (batch dims broadcast); dense/Gemm lives in :mod:`operators.conv`."""

from __future__ import annotations

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, broadcast_index, index_vars, tensor
from ir.registry import OpDef, register_op
from operators.common import broadcast_shapes, same_dtype


def matmul_infer(attrs, in_types):
    dtype = same_dtype(in_types, "matmul")
    a, b = in_types
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError(f"matmul: both inputs need rank ≥ 2, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dims differ: {a} · {b}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], "matmul")
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dtype)


def matmul_instruction(attrs, in_types, out_type):
    """Y[b..., i, j] = Σ_k A[bA..., i, k] · B[bB..., k, j]; bA, bB are the broadcast views of the batch index."""
    a, b = in_types
    batch = index_vars(" ".join(f"b{d}" for d in range(len(out_type.shape) - 2)))
    i, j, k = index_vars("i j k")
    body = tensor("A")[broadcast_index(a.shape[:-2], batch) + (i, k)] * \
        tensor("B")[broadcast_index(b.shape[:-2], batch) + (k, j)]
    return Instruction(("A", "B"), (Stage("Y", batch + (i, j), out_type.shape, body, "sum", (k,), (a.shape[-1],)),))


def matmul_torch(attrs, a, b):
    import torch

    return torch.matmul(a, b)


def matmul_onnx(attrs, ins, out, ctx):
    from onnx import helper

    return [helper.make_node("MatMul", list(ins), [out])]


register_op(OpDef(
    "matmul", matmul_infer, matmul_instruction, matmul_torch, matmul_onnx, arity=(2, 2),
    weight_inputs=(0, 1),  # an ONNX MatMul with an initializer is a linear layer; activations are never constants
    doc="numpy matmul of two tensors of rank ≥ 2: [..., M, K] · [..., K, N], batch dims broadcast",
    example=lambda: ({}, (TensorType((2, 1, 3, 4)), TensorType((3, 4, 5)))),
))
