"""Exporters from the IR: ONNX models (:func:`to_onnx`) and PyTorch modules (:func:`to_torch`).

``onnx`` and ``torch`` are imported only inside the exporter modules, so ``import ir.exporters`` is cheap.
"""

from __future__ import annotations

from typing import Any


def to_onnx(graph: Any, path: Any = None, opset: int = 17):
    """Export an IR graph as an ``onnx.ModelProto``; see :func:`ir.exporters.onnx.to_onnx`."""
    from ir.exporters.onnx import to_onnx as _to_onnx

    return _to_onnx(graph, path, opset)


def to_torch(graph: Any):
    """A ``torch.nn.Module`` running the graph with the ops' PyTorch references; see :mod:`ir.exporters.torch`."""
    from ir.exporters.torch import to_torch as _to_torch

    return _to_torch(graph)


__all__ = ["to_onnx", "to_torch"]
