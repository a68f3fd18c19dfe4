"""IR → ONNX.

``to_onnx(graph, path=None, opset=17)`` spells every compute node with its op's ``OpDef.onnx`` (see
docs/ops-conventions.md for the ``ctx`` interface), turns constants into initializers named after their nodes,
checks the model with ``onnx.checker`` and optionally saves it. IR node names become ONNX tensor names, so the
exported graph's inputs and outputs keep the IR names.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ir.graph import CONSTANT, INPUT, Graph


class ExportError(ValueError):
    """A graph that cannot be written as ONNX; the message names the node."""


class ExportContext:
    """What ``OpDef.onnx`` may ask for while spelling one node: shapes, fresh names and new initializers."""

    def __init__(self, graph: Graph) -> None:
        self._shapes = {n.name: n.type.shape for n in graph.nodes}
        self._dtypes = {n.name: n.type.dtype for n in graph.nodes}
        self._used = set(self._shapes)
        self.initializers: list[TensorProto] = []

    def shape(self, name: str) -> tuple[int, ...]:
        try:
            return self._shapes[name]
        except KeyError:
            raise ExportError(f"no shape known for tensor {name!r}") from None

    def fresh(self, hint: str = "t") -> str:
        name, k = hint, 0
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def dtype(self, name: str) -> str:
        """The element type of tensor ``name`` (so that a constant combined with it can match: ONNX ops take
        operands of one type)."""
        try:
            return self._dtypes[name]
        except KeyError:
            raise ExportError(f"no dtype known for tensor {name!r}") from None

    def initializer(self, value, hint: str = "const", like: str | None = None) -> str:
        """Add a constant initializer: of tensor ``like``'s element type when given, else float32, unless
        ``value`` holds integers (then int64)."""
        arr = np.asarray(value)
        if like is not None:
            arr = arr.astype(self.dtype(like))
        else:
            arr = arr.astype(np.int64) if arr.dtype.kind in "iub" else arr.astype(np.float32)
        return self.add_array(arr, self.fresh(hint))

    def add_array(self, arr: np.ndarray, name: str) -> str:
        self._used.add(name)
        self._shapes[name] = tuple(arr.shape)
        self._dtypes[name] = str(arr.dtype)
        # np.require keeps a 0-d array 0-d (np.ascontiguousarray made scalars shape [1]: Clip's bounds must be scalars)
        self.initializers.append(numpy_helper.from_array(np.require(arr, requirements="C"), name))
        return name


def _value_info(name: str, dtype: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape))


def to_onnx(graph: Graph, path: str | os.PathLike | None = None, opset: int = 17) -> onnx.ModelProto:
    """Export ``graph`` as an ONNX model (checked by ``onnx.checker``); also saved to ``path`` when given."""
    from ir.registry import get_op

    ctx = ExportContext(graph)
    nodes: list[onnx.NodeProto] = []
    inputs = []
    for node in graph.nodes:
        if node.op == INPUT:
            inputs.append(_value_info(node.name, node.type.dtype, node.type.shape))
        elif node.op == CONSTANT:
            ctx.add_array(np.asarray(graph.params[node.name]), node.name)
        else:
            opdef = get_op(node.op)
            if opdef.onnx is None:
                raise ExportError(f"node {node.name!r} (op {node.op}): no ONNX spelling")
            made = opdef.onnx(node.attr_dict, list(node.inputs), node.name, ctx)
            for k, proto in enumerate(made):
                if not proto.name:
                    proto.name = node.name if k == len(made) - 1 else f"{node.name}/{k}"
            nodes.extend(made)
    # ONNX outputs must be distinct and produced by a node: inputs, constants and repeats go through Identity
    by_name = graph.node_map
    outputs, seen = [], set()
    for name in graph.outputs:
        t = by_name[name].type
        out = name
        if name in seen or by_name[name].op in (INPUT, CONSTANT):
            out = ctx.fresh(f"{name}_out")
            nodes.append(helper.make_node("Identity", [name], [out], name=out))
        seen.add(name)
        outputs.append(_value_info(out, t.dtype, t.shape))
    onnx_graph = helper.make_graph(nodes, graph.name, inputs, outputs, initializer=ctx.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="nacos",
                              ir_version=helper.find_min_ir_version_for(opsets))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"graph {graph.name!r}: exported model fails onnx.checker: {' '.join(str(e).split())}") \
            from None
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
