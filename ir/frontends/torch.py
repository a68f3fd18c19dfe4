"""PyTorch → IR, through ``torch.export``.

``from_torch(module, example_inputs)`` exports the module in eval mode and walks the FX graph. High-level ops such
as ``linear``, ``conv2d``, ``layer_norm`` and ``scaled_dot_product_attention`` are kept (not decomposed) because
they map to IR ops one to one. In-place ops (``relu_``) are read as their functional form followed by a rebinding
of the mutated tensor; only when a view could observe a mutation is the graph functionalized by torch
(``run_decompositions({})``, slow on big models). Parameters, buffers and lifted constants become IR constants
named after their state-dict keys; nodes whose tensor inputs are all constants are evaluated with torch on the
spot. Every other node goes through ONE table, ``CONVERTERS``, keyed by aten overload. Shapes come from the example
inputs and flow through the IR type rules; each converted node's shape is checked against torch's own shape
metadata.

This module is the driver. The importer state is in :mod:`ir.frontends.torch_base`; the converters are in
:mod:`ir.frontends.torch_ops` (computation, and the ``CONVERTERS`` table, re-exported here) and
:mod:`ir.frontends.torch_layout_ops` (shapes and views).
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
from torch import fx

from ir.frontends import ModelImportError
from ir.frontends.torch_base import (Converter, Importer, _bind, _np_dtype, _Unsupported, aten,  # noqa: F401
                                     broadcast_to)
from ir.frontends.torch_ops import CONVERTERS
from ir.graph import Graph

_A = aten


def _getitem(imp, node):
    seq, index = imp.env[node.args[0]], node.args[1]
    value = seq[index]
    if value is None:
        raise _Unsupported(f"output {index} of '{node.args[0].name}' is not supported (only the main output)")
    return value


# checks that export leaves in the graph; they have no value
_IGNORED = {_A._assert_tensor_metadata.default, _A._assert_scalar.default,
            _A.sym_constrain_range_for_size.default}


def _functional(target: Any) -> Any:
    """The out-of-place overload of an in-place aten op (``relu_`` → ``relu``); other targets unchanged."""
    if not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
        return target
    packet = target._schema.name.split("::")[-1]
    if not packet.endswith("_"):
        return target
    overload = target._overloadname or "default"
    return getattr(getattr(aten, packet[:-1], None), overload, target)


def _aliases(node: Any, write: bool) -> bool:
    """True for an aten node whose output aliases its input: a view (write=False) or an in-place op (True)."""
    target = getattr(node, "target", None)
    return isinstance(target, torch._ops.OpOverload) and any(
        r.alias_info is not None and r.alias_info.is_write == write for r in target._schema.returns)


def _inplace_is_simple(graph: fx.Graph) -> bool:
    """True when every in-place op can be read as "compute out of place, then rebind the mutated name".

    That holds when the mutated tensor is an intermediate that is mutated once, is neither a view nor the result
    of another in-place op, and is not viewed by another node (a view or alias would see the mutation).
    Otherwise the graph is functionalized by torch (slow for big models)."""
    for node in graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if node.target._schema.is_mutable:
            base = node.args[0] if node.args else None
            if _functional(node.target) is node.target or not isinstance(base, fx.Node) \
                    or base.op == "placeholder" or _aliases(base, False) or _aliases(base, True) \
                    or any(_aliases(u, False) for u in base.users) \
                    or sum(_aliases(u, True) for u in base.users) != 1:
                return False
    return True


def _foldable(node: fx.Node, target: Any, env: dict) -> bool:
    """True when every tensor argument is known, so torch can compute the node now."""
    tags = getattr(target, "tags", ())
    if torch.Tag.nondeterministic_seeded in tags or target in _IGNORED:
        return False
    ok = True

    def visit(a):
        nonlocal ok
        if isinstance(a, fx.Node) and not isinstance(env.get(a), (torch.Tensor, int, float, bool)):
            ok = False
    fx.node.map_aggregate((node.args, node.kwargs), visit)
    return ok and isinstance(target, torch._ops.OpOverload)


def _fold(node: fx.Node, target: Any, env: dict) -> Any:
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
    with torch.no_grad():
        return target(*args, **kwargs)


def _check_shape(imp: Importer, node: fx.Node, value: Any) -> None:
    """Compare each produced IR tensor's shape with torch's shape metadata (catches converter mistakes)."""
    meta = node.meta.get("val")
    pairs = zip(value, meta) if isinstance(value, (list, tuple)) and isinstance(meta, (list, tuple)) \
        else [(value, meta)]
    for v, m in pairs:
        if isinstance(v, str) and isinstance(m, torch.Tensor) and imp.shape(v) != tuple(m.shape):
            raise _Unsupported(f"converted shape {imp.shape(v)} differs from torch's {tuple(m.shape)}")
        if isinstance(v, str) and isinstance(m, torch.Tensor):
            want = str(m.dtype).removeprefix("torch.")
            want = "float32" if want == "float64" else want  # doubles are imported as float32
            got = imp.b.type_of(v).dtype
            if got != want:  # e.g. int64 · 0.5, which torch promotes to float32
                raise _Unsupported(f"converted dtype {got} differs from torch's {want} (type promotion between "
                                   "integer and floating-point values is not supported yet)")


def _label(target: Any) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))


def from_torch(module: torch.nn.Module, example_inputs: tuple) -> Graph:
    """Import ``module`` as an IR graph with static shapes taken from ``example_inputs``. It is exported in eval
    mode, then left in the mode it had."""
    source = type(module).__name__
    if isinstance(example_inputs, list):  # [x, y] means the inputs x and y, as a tuple does
        example_inputs = tuple(example_inputs)
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    modes = {m: m.training for m in module.modules()}  # the caller's module is left as it was given
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise
            warnings.simplefilter("ignore", FutureWarning)
            ep = torch.export.export(module.eval(), example_inputs)
            if not _inplace_is_simple(ep.graph_module.graph):
                ep = ep.run_decompositions({})  # functionalize, keeping high-level ops
    except Exception as e:
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        raise ModelImportError(f"{source}: torch.export failed: {type(e).__name__}: {first}") from None
    finally:
        for m, training in modes.items():
            m.training = training
    sig = ep.graph_signature
    constants: dict[str, torch.Tensor] = {}
    for spec in sig.input_specs:
        if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            store = ep.state_dict if spec.target in ep.state_dict else ep.constants
            constants[spec.arg.name] = (store[spec.target], spec.target)
    imp = Importer(source)
    for node in ep.graph_module.graph.nodes:
        imp.hint = node.name
        where = f"{source}: node '{node.name}' (aten op {_label(node.target)})"
        try:
            if node.op == "placeholder":
                if node.name in constants:
                    tensor, target = constants[node.name]
                    tensor = tensor.detach()
                    imp.const_names[id(tensor)] = target
                    imp.env[node] = tensor
                else:
                    val = node.meta.get("val")
                    if not isinstance(val, torch.Tensor):
                        imp.env[node] = val  # a non-tensor user input: a static Python value
                        continue
                    imp.env[node] = imp.b.input(node.name, tuple(int(d) for d in val.shape), _np_dtype(val.dtype))
                continue
            if node.op == "output":
                break
            if node.op != "call_function":
                raise _Unsupported(f"FX node kind {node.op!r} is not supported")
            target = _functional(node.target)
            if target is operator.getitem:
                value = _getitem(imp, node)
            elif target in _IGNORED:
                value = None
            elif _foldable(node, target, imp.env):
                value = _fold(node, target, imp.env)
            elif target in CONVERTERS:
                value = CONVERTERS[target](imp, _bind(node, imp.env, target), node)
            else:
                supported = sorted(_label(k) for k in CONVERTERS)
                raise ModelImportError(f"{where}: unsupported op; supported: {', '.join(supported)}")
            _check_shape(imp, node, value)
            imp.env[node] = value
            if target is not node.target:  # in place: later readers of the mutated tensor see the result
                imp.env[node.args[0]] = value
        except ModelImportError:
            raise
        except _Unsupported as e:
            raise ModelImportError(f"{where}: {e}") from None
        except Exception as e:
            raise ModelImportError(f"{where}: {type(e).__name__}: {e}") from None
    out_node = next(n for n in ep.graph_module.graph.nodes if n.op == "output")
    flat = fx.node.map_aggregate(out_node.args[0], lambda x: x)
    flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
    outputs = []
    for spec, arg in zip(sig.output_specs, flat):
        if spec.kind.name != "USER_OUTPUT":
            continue
        value = imp.env[arg] if isinstance(arg, fx.Node) else arg
        imp.hint = spec.arg.name if hasattr(spec.arg, "name") else "output"
        try:
            outputs.append(imp.t(value))
        except _Unsupported as e:
            raise ModelImportError(f"{source}: output '{imp.hint}': {e}") from None
    from ir.passes.fold import remove_dead_nodes

    return remove_dead_nodes(imp.b.build(outputs))
