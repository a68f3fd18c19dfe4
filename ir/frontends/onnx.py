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

This module is the driver. The importer state is in :mod:`ir.frontends.onnx_base`; the converters are in
:mod:`ir.frontends.onnx_ops` (computation, and the ``CONVERTERS`` table, re-exported here) and
:mod:`ir.frontends.onnx_layout_ops` (shapes and layouts).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from ir.frontends import ModelImportError
from ir.frontends.onnx_base import (Converter, Importer, Value, _attrs, _np_dtype,  # noqa: F401 (re-exported)
                                    _Unsupported)
from ir.frontends.onnx_ops import BINARY, CONVERTERS, UNARY  # noqa: F401 (re-exported)
from ir.graph import Graph

# ops never folded even when their inputs are known: they have no inputs and are not deterministic
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


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
