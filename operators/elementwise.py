"""Elementwise operators: unary activations and broadcasting binary arithmetic.

Each unary op is one line in ``UNARY``: its scalar math (a sympy function of x and the attrs), its torch
reference and its ONNX spelling. Everything else is shared.
"""

from __future__ import annotations

import math

import sympy

from ir.graph import TensorType
from ir.instruction import Instruction, Stage, axes, broadcast_index, read
from ir.registry import OpDef, register_op
from operators.common import broadcast_shapes, floating_only, same_dtype


INTEGER_UNARY = frozenset({"relu", "clip", "neg", "identity"})  # the rest are float math (exp, erf, x/6, …)


def _unary_infer_of(name):
    def infer(attrs, in_types):
        if name not in INTEGER_UNARY:
            floating_only(name, in_types[0].dtype)  # int64 hardsigmoid computed 0 everywhere
        return in_types[0]
    return infer


def _f(attrs, key, default):
    return sympy.Float(float(attrs.get(key, default)))


def _clip(x, a):
    lo, hi = a.get("min"), a.get("max")
    y = x if lo is None else sympy.Max(x, sympy.Float(lo))
    return y if hi is None else sympy.Min(y, sympy.Float(hi))


def _clip_torch(a, x):
    lo, hi = a.get("min"), a.get("max")
    if lo is None and hi is None:
        return x.clone()
    if not x.is_floating_point():  # integer bounds, truncated as the compiled code casts them (a float bound
        lo, hi = (None if v is None else int(v) for v in (lo, hi))  # would promote the result to float)
    return x.clamp(lo, hi)


def _hardsigmoid(x, a):
    return sympy.Max(sympy.Min(_f(a, "alpha", 1 / 6) * x + _f(a, "beta", 0.5), 1), 0)


# name: (math(x, attrs), torch(attrs, x), onnx(attrs, ins, out, ctx) -> nodes, doc)
UNARY = {
    "relu": (lambda x, a: sympy.Max(x, 0),
             lambda a, x: x.relu(), "Relu", "max(x, 0)"),
    "clip": (_clip, _clip_torch, "Clip", "min(max(x, min), max); relu6 is clip(0, 6)"),
    "sigmoid": (lambda x, a: 1 / (1 + sympy.exp(-x)),
                lambda a, x: x.sigmoid(), "Sigmoid", "1 / (1 + exp(-x))"),
    "tanh": (lambda x, a: sympy.tanh(x), lambda a, x: x.tanh(), "Tanh", "tanh(x)"),
    "gelu": (lambda x, a: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
             lambda a, x: __import__("torch").nn.functional.gelu(x), None, "x · (1 + erf(x/√2)) / 2"),
    "gelu_tanh": (lambda x, a: x * (1 + sympy.tanh(sympy.Float(math.sqrt(2 / math.pi)) * (x + sympy.Float(0.044715) * x ** 3))) / 2,
                  lambda a, x: __import__("torch").nn.functional.gelu(x, approximate="tanh"), None,
                  "x · (1 + tanh(√(2/π)(x + 0.044715x³))) / 2"),
    "hardsigmoid": (_hardsigmoid,
                    lambda a, x: (x * float(a.get("alpha", 1 / 6)) + float(a.get("beta", 0.5))).clamp(0, 1),
                    "HardSigmoid", "max(0, min(1, αx + β))"),
    "hardswish": (lambda x, a: x * sympy.Max(sympy.Min(x + 3, 6), 0) / 6,
                  lambda a, x: __import__("torch").nn.functional.hardswish(x), "HardSwish", "x · relu6(x + 3) / 6"),
    "silu": (lambda x, a: x / (1 + sympy.exp(-x)),
             lambda a, x: __import__("torch").nn.functional.silu(x), None, "x · sigmoid(x)"),
    "leaky_relu": (lambda x, a: sympy.Max(x, 0) + _f(a, "alpha", 0.01) * sympy.Min(x, 0),
                   lambda a, x: __import__("torch").nn.functional.leaky_relu(x, float(a.get("alpha", 0.01))),
                   "LeakyRelu", "max(x, 0) + α·min(x, 0)"),
    "neg": (lambda x, a: -x, lambda a, x: -x, "Neg", "-x"),
    "exp": (lambda x, a: sympy.exp(x), lambda a, x: x.exp(), "Exp", "exp(x)"),
    "sqrt": (lambda x, a: sympy.sqrt(x), lambda a, x: x.sqrt(), "Sqrt", "√x"),
    "erf": (lambda x, a: sympy.erf(x), lambda a, x: x.erf(), "Erf", "erf(x)"),
    "identity": (lambda x, a: x, lambda a, x: x.clone(), "Identity", "x"),
}


def _unary_onnx_attrs(name, attrs):
    if name == "leaky_relu":
        return {"alpha": float(attrs.get("alpha", 0.01))}
    if name == "hardsigmoid":
        return {"alpha": float(attrs.get("alpha", 1 / 6)), "beta": float(attrs.get("beta", 0.5))}
    return {}


def _onnx_silu(x, out, ctx):
    from onnx import helper

    s = ctx.fresh("sig")
    return [helper.make_node("Sigmoid", [x], [s]), helper.make_node("Mul", [x, s], [out])]


def _onnx_gelu(x, out, ctx):
    from onnx import helper

    t, e, p, h = (ctx.fresh(k) for k in ("g_div", "g_erf", "g_plus", "g_half"))
    return [helper.make_node("Div", [x, ctx.initializer(math.sqrt(2.0), "sqrt2", like=x)], [t]),
            helper.make_node("Erf", [t], [e]),
            helper.make_node("Add", [e, ctx.initializer(1.0, "one", like=x)], [p]),
            helper.make_node("Mul", [x, ctx.initializer(0.5, "half", like=x)], [h]),
            helper.make_node("Mul", [h, p], [out])]


def _onnx_gelu_tanh(x, out, ctx):
    from onnx import helper

    c, x3, inner, scaled, th, p, h = (ctx.fresh(k) for k in ("c", "x3", "in", "sc", "th", "p", "h"))
    return [helper.make_node("Pow", [x, ctx.initializer(3.0, "three", like=x)], [x3]),
            helper.make_node("Mul", [x3, ctx.initializer(0.044715, "gelu_c", like=x)], [c]),
            helper.make_node("Add", [x, c], [inner]),
            helper.make_node("Mul", [inner, ctx.initializer(math.sqrt(2 / math.pi), "gelu_k", like=x)], [scaled]),
            helper.make_node("Tanh", [scaled], [th]),
            helper.make_node("Add", [th, ctx.initializer(1.0, "one", like=x)], [p]),
            helper.make_node("Mul", [x, ctx.initializer(0.5, "half", like=x)], [h]),
            helper.make_node("Mul", [h, p], [out])]


_ONNX_DECOMPOSED = {"silu": _onnx_silu, "gelu": _onnx_gelu, "gelu_tanh": _onnx_gelu_tanh}


def _make_unary(name, math_fn, torch_fn, onnx_op, doc):
    def instruction(attrs, in_types, out_type):
        i = axes("i", len(out_type.shape))
        return Instruction(("X",), (Stage("Y", i, out_type.shape, math_fn(read("X", i), attrs)),))

    def onnx_fn(attrs, ins, out, ctx):
        from onnx import helper

        if name == "clip":
            bounds = [ctx.initializer(attrs[k], f"clip_{k}", like=ins[0]) if attrs.get(k) is not None else ""
                      for k in ("min", "max")]  # "": an omitted optional input (no bound on that side)
            while bounds and bounds[-1] == "":
                bounds.pop()
            return [helper.make_node("Clip", [ins[0], *bounds], [out])]
        if onnx_op is None:  # no single op in opset 17: spelled through simpler ONNX ops
            return _ONNX_DECOMPOSED[name](ins[0], out, ctx)
        return [helper.make_node(onnx_op, list(ins), [out], **_unary_onnx_attrs(name, attrs))]

    register_op(OpDef(name, _unary_infer_of(name), instruction, torch_fn, onnx_fn, elementwise=True, doc=doc,
                      example=lambda: ({}, (TensorType((2, 3, 4)),))))


for _name, (_math, _torch, _onnx, _doc) in UNARY.items():
    _make_unary(_name, _math, _torch, _onnx, _doc)


# ---- binary, with numpy broadcasting -----------------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, lambda x, y: x + y, "Add", "A + B"),
    "sub": (lambda a, b: a - b, lambda x, y: x - y, "Sub", "A − B"),
    "mul": (lambda a, b: a * b, lambda x, y: x * y, "Mul", "A · B"),
    "div": (lambda a, b: a / b, lambda x, y: x / y, "Div", "A / B"),
    "max": (lambda a, b: sympy.Max(a, b), lambda x, y: __import__("torch").maximum(x, y), "Max", "max(A, B)"),
    "min": (lambda a, b: sympy.Min(a, b), lambda x, y: __import__("torch").minimum(x, y), "Min", "min(A, B)"),
    "pow": (lambda a, b: a ** b, lambda x, y: x ** y, "Pow", "A ^ B"),
}


def _binary_infer(name):
    def infer(attrs, in_types):
        dtype = same_dtype(in_types, name)
        if name == "div":
            floating_only(name, dtype)
        return TensorType(broadcast_shapes(in_types[0].shape, in_types[1].shape, name), dtype)
    return infer


def _make_binary(name, math_fn, torch_fn, onnx_op, doc):
    def instruction(attrs, in_types, out_type):
        i = axes("i", len(out_type.shape))
        a = read("A", broadcast_index(in_types[0].shape, i))
        b = read("B", broadcast_index(in_types[1].shape, i))
        return Instruction(("A", "B"), (Stage("Y", i, out_type.shape, math_fn(a, b)),))

    def onnx_fn(attrs, ins, out, ctx):
        from onnx import helper

        return [helper.make_node(onnx_op, list(ins), [out])]

    register_op(OpDef(name, _binary_infer(name), instruction, lambda attrs, x, y: torch_fn(x, y), onnx_fn,
                      elementwise=True, arity=(2, 2), doc=f"{doc}, with numpy broadcasting",
                      example=lambda: ({}, (TensorType((2, 3, 4)), TensorType((3, 1))))))


for _name, (_math, _torch, _onnx, _doc) in BINARY.items():
    _make_binary(_name, _math, _torch, _onnx, _doc)
