"""The public entry points: load a model into the IR, inspect it, compile it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ir.graph import Graph


def load(model: Any, example_inputs: tuple | None = None, input_shapes: dict | None = None,
         simplify: bool = True) -> Graph:
    """Import a model into the nacos IR.

    ``model`` is a path to an ``.onnx`` file, an ``onnx.ModelProto``, a ``torch.nn.Module`` (then
    ``example_inputs`` is required: ``torch.export`` traces it with them), or an ``ir.Graph`` (returned as is).
    ``input_shapes`` fixes symbolic ONNX input dimensions, e.g. ``{"input": (1, 3, 224, 224)}``.
    With ``simplify`` the import folds constants, batch norms and constant bias adds into their conv/dense, and
    removes dead nodes.
    Errors are :class:`ir.frontends.ModelImportError` with a one-line message naming the node and op.
    """
    from ir import frontends, passes

    if isinstance(model, Graph):
        graph = model
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() != ".onnx":
            raise frontends.ModelImportError(f"{path}: only .onnx files can be loaded from a path "
                                             f"(for PyTorch pass the nn.Module and example_inputs)")
        graph = frontends.from_onnx(path, input_shapes=input_shapes)
    elif type(model).__module__.startswith("onnx"):
        graph = frontends.from_onnx(model, input_shapes=input_shapes)
    elif _is_torch_module(model):
        if example_inputs is None:
            raise frontends.ModelImportError("a torch.nn.Module needs example_inputs, e.g. "
                                             "nacos.load(model, (torch.randn(1, 3, 224, 224),))")
        graph = frontends.from_torch(model, example_inputs)  # a tensor or a list of them is taken as a tuple
    else:
        raise frontends.ModelImportError(f"cannot load a {type(model).__name__}: pass an .onnx path, an "
                                         f"onnx.ModelProto, a torch.nn.Module or an ir.Graph")
    return passes.simplify(graph) if simplify else graph


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def compile(graph: Graph, target: Any = None, schedules: Any = None, layout: str | None = None,
            chains: bool | None = None):
    """Compile ``graph`` into a runnable :class:`nacos.Compiled` (see :func:`nacos.compiler.compile`)."""
    from nacos.compiler import compile as _compile

    return _compile(graph, target=target, schedules=schedules, layout=layout, chains=chains)


def inspect(graph: Graph) -> dict:
    """Per-node op, shapes, FLOPs, MACs, params and bytes, plus totals — all derived from the instructions."""
    from ir.analysis import graph_cost, node_cost

    nodes = graph.node_map
    rows = []
    for node in graph.compute_nodes:
        cost = node_cost(graph, node)
        rows.append({
            "name": node.name, "op": node.op,
            "inputs": [list(nodes[i].shape) for i in node.inputs],
            "output": list(node.shape), "dtype": node.dtype,
            "attrs": {k: v for k, v in node.attrs},
            **cost.as_dict(),
        })
    total = graph_cost(graph)
    return {
        "name": graph.name,
        "hash": graph.structural_hash(),
        "inputs": [{"name": n, "shape": list(nodes[n].shape), "dtype": nodes[n].dtype} for n in graph.inputs],
        "outputs": [{"name": n, "shape": list(nodes[n].shape), "dtype": nodes[n].dtype} for n in graph.outputs],
        "nodes": rows,
        "totals": {"nodes": len(rows), **total.as_dict()},
    }
