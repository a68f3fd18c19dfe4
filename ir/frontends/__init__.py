"""Model importers: ONNX files and PyTorch modules become IR graphs.

Each frontend has one table keyed by the source op type (ONNX ``op_type`` / aten overload) whose entries convert
one source node into IR ops through :class:`ir.graph.GraphBuilder`, so shapes are inferred by the IR's own type
rules. Only static shapes are supported. Every failure is a :class:`ModelImportError` with a one-line message
that names the file or model, and the node and op at fault; no protobuf/onnx/torch traceback escapes.

``onnx`` and ``torch`` are imported only inside the frontend modules, so ``import ir.frontends`` is cheap.
"""

from __future__ import annotations

from typing import Any


class ModelImportError(ValueError):
    """A model that cannot be imported. ``str(e)`` is one line, e.g.
    ``model.onnx: node 'Conv_3' (op ConvTranspose): unsupported op; supported: ...``."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # one line, whatever the cause's text looked like


def from_onnx(model_or_path: Any, input_shapes: dict | None = None):
    """Import an ONNX model (path, bytes or ``onnx.ModelProto``); see :func:`ir.frontends.onnx.from_onnx`."""
    from ir.frontends.onnx import from_onnx as _from_onnx

    return _from_onnx(model_or_path, input_shapes)


def from_torch(module: Any, example_inputs: tuple):
    """Import a ``torch.nn.Module`` via ``torch.export``; see :func:`ir.frontends.torch.from_torch`."""
    from ir.frontends.torch import from_torch as _from_torch

    return _from_torch(module, example_inputs)


def reshape_to(imp: Any, x: str, shape) -> str:
    """``x`` reshaped to ``shape`` (no node when it already has it); ``imp`` is either frontend's importer."""
    shape = tuple(int(d) for d in shape)
    return x if imp.shape(x) == shape else imp.op("reshape", x, shape=shape)


def numpy_matmul(imp: Any, x: str, y: str) -> str:
    """numpy/ONNX/torch ``matmul`` semantics on the IR's rank ≥ 2 ``matmul``: a 1-D operand becomes a row
    (left) or column (right) for the product, and that axis is dropped again from the result."""
    sa, sb = imp.shape(x), imp.shape(y)
    if len(sa) == 1:
        x = reshape_to(imp, x, (1,) + sa)
    if len(sb) == 1:
        y = reshape_to(imp, y, sb + (1,))
    out = imp.op("matmul", x, y)
    shape = imp.shape(out)
    if len(sb) == 1:
        shape = shape[:-1]
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:] if len(sb) != 1 else shape[:-1]
    return reshape_to(imp, out, shape)


__all__ = ["ModelImportError", "from_onnx", "from_torch", "reshape_to", "numpy_matmul"]
