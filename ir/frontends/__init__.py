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


__all__ = ["ModelImportError", "from_onnx", "from_torch"]
