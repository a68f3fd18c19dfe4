"""Every op of the table against its PyTorch reference.

The instruction is evaluated by a tiny scalar interpreter (below): each stage is looped over every index point, its
sympy body compiled to a Python expression. Out-of-range reads raise, so an instruction that reads past a buffer
(a missing pad, a wrong ceil_mode extent) fails here even where numpy would silently wrap around.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy

from ir.graph import TensorType as T
from ir.instruction import Instruction, idiv, imod
from ir.registry import all_ops, get_op

RTOL, ATOL = 1e-4, 1e-5


# ---- the interpreter ---------------------------------------------------------------------------------
_FUNCS = {sympy.exp: "math.exp", sympy.log: "math.log", sympy.tanh: "math.tanh", sympy.erf: "math.erf",
          sympy.Abs: "abs", sympy.floor: "math.floor", sympy.ceiling: "math.ceil"}
_RELS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
         sympy.GreaterThan: ">=", sympy.Eq: "==", sympy.Ne: "!="}


def to_python(e) -> str:
    """Python source of a stage body; tensor reads become ``get(name, (i, ...))``."""
    if isinstance(e, sympy.Indexed):
        return f"get({str(e.base)!r}, ({''.join(to_python(i) + ', ' for i in e.indices)}))"
    if isinstance(e, sympy.Symbol):
        return e.name
    if e is sympy.true:
        return "True"
    if e is sympy.false:
        return "False"
    if isinstance(e, sympy.Integer):
        return str(int(e))
    if isinstance(e, sympy.Rational):
        return f"({e.p} / {e.q})"
    if isinstance(e, sympy.Float) or e.is_number and not e.free_symbols and not e.atoms(sympy.Indexed):
        return repr(float(e))
    if isinstance(e, sympy.Piecewise):  # ordered branches; only the chosen one is evaluated
        out = "None"
        for value, cond in reversed(e.args):
            out = f"({to_python(value)} if {to_python(cond)} else {out})"
        return out
    args = [to_python(a) for a in e.args]
    if isinstance(e, sympy.Add):
        return "(" + " + ".join(args) + ")"
    if isinstance(e, sympy.Mul):
        return "(" + " * ".join(args) + ")"
    if isinstance(e, sympy.Pow):
        return f"math.pow({args[0]}, {args[1]})"
    if isinstance(e, idiv):
        return f"({args[0]} // {args[1]})"
    if isinstance(e, imod):
        return f"({args[0]} % {args[1]})"
    if isinstance(e, sympy.Max):
        return f"max({', '.join(args)})"
    if isinstance(e, sympy.Min):
        return f"min({', '.join(args)})"
    if type(e) in _RELS:
        return f"({args[0]} {_RELS[type(e)]} {args[1]})"
    if isinstance(e, sympy.And):
        return "(" + " and ".join(args) + ")"
    if isinstance(e, sympy.Or):
        return "(" + " or ".join(args) + ")"
    if isinstance(e, sympy.Not):
        return f"(not {args[0]})"
    if e.func in _FUNCS:
        return f"{_FUNCS[e.func]}({args[0]})"
    raise NotImplementedError(f"interpreter: {type(e).__name__} in {e}")


def interpret(instr: Instruction, inputs: dict[str, np.ndarray]) -> np.ndarray:
    env = {k: np.asarray(v, np.float64) for k, v in inputs.items()}

    def get(name, idx):
        arr = env[name]
        if arr.ndim == 0:  # rank-0 tensors are read as name[0]
            assert idx == (0,), f"rank-0 {name} read at {idx}"
            return float(arr)
        assert len(idx) == arr.ndim, f"{name} has rank {arr.ndim}, read at {idx}"
        for i, n in zip(idx, arr.shape):
            assert isinstance(i, int) and 0 <= i < n, f"{name}{list(arr.shape)} read out of range at {idx}"
        return float(arr[idx])

    for st in instr.stages:
        names = [s.name for s in st.axes + st.reduce_axes]
        fn = eval(f"lambda {', '.join(names)}: {to_python(st.body)}", {"math": math, "get": get})
        out = np.empty(st.shape)
        reduce_points = list(itertools.product(*map(range, st.reduce_shape)))
        for p in itertools.product(*map(range, st.shape)):
            if st.reduce is None:
                out[p] = fn(*p)
                continue
            acc = {"sum": 0.0, "max": -math.inf, "min": math.inf}[st.reduce]
            combine = {"sum": lambda a, b: a + b, "max": max, "min": min}[st.reduce]
            for r in reduce_points:
                acc = combine(acc, fn(*p, *r))
            out[p] = acc
        env[st.name] = out
    return env[instr.output.name]


# ---- cases -------------------------------------------------------------------------------------------
def _pool(kernel, strides, pads, **kw):
    return dict(kernel=kernel, strides=strides, pads=pads, **kw)


EXTRA = [
    # a conv over NCHW image channels writing NCHW[4]c (the stem conv of ir.passes.select_layout), no bias
    ("conv2d_nchwc", {"strides": (2, 2), "pads": (1, 1, 1, 1)}, (T((1, 3, 9, 8)), T((2, 3, 3, 3, 1, 4)))),
    ("conv2d_nchwc", {"pads": (0, 1, 2, 0)}, (T((1, 3, 5, 6)), T((1, 3, 2, 2, 1, 4)), T((1, 4)))),
    ("maxpool2d_nchwc", _pool((2, 3), (1, 2), (0, 1, 1, 1), ceil_mode=1), (T((1, 1, 6, 7, 4)),)),
    ("matmul", {}, (T((4, 5)), T((5, 3)))),
    ("matmul", {}, (T((2, 3, 4)), T((4, 2)))),
    ("matmul", {}, (T((1, 3, 2)), T((2, 2, 4)))),
    ("batchnorm", {"epsilon": 1e-3}, (T((4, 3)),) + (T((3,)),) * 4),
    ("batchnorm", {}, (T((2, 3, 5)),) + (T((3,)),) * 4),
    ("layernorm", {"axis": 0}, (T((3, 4)),)),
    ("layernorm", {"axis": 1, "epsilon": 1e-3}, (T((2, 3, 4)), T((3, 4)))),
    ("layernorm", {"axis": 1}, (T((2, 3, 4)), T((1, 4)), T((4,)))),
    ("softmax", {"axis": 0}, (T((5,)),)),
    ("softmax", {"axis": 2}, (T((2, 3, 4)),)),
    ("maxpool", _pool((3,), (1,), (1, 1)), (T((2, 2, 6)),)),
    ("maxpool", _pool((2, 2), (2, 2), (0, 0, 0, 0), ceil_mode=1), (T((1, 2, 5, 5)),)),
    ("maxpool", _pool((3, 3), (2, 2), (1, 1, 1, 1), dilations=(2, 2)), (T((1, 1, 8, 8)),)),
    ("maxpool", _pool((3, 2), (2, 1), (0, 1, 1, 0), ceil_mode=1), (T((1, 2, 6, 5)),)),
    ("maxpool", _pool((2, 2, 2), (2, 2, 2), (0,) * 6), (T((1, 2, 4, 4, 4)),)),
    ("avgpool", _pool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=1), (T((1, 2, 7, 7)),)),
    ("avgpool", _pool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=0), (T((1, 2, 7, 7)),)),
    ("avgpool", _pool((3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=1, count_include_pad=1), (T((1, 2, 6, 6)),)),
    ("avgpool", _pool((2, 2), (2, 2), (0, 0, 0, 0), ceil_mode=1), (T((1, 1, 5, 5)),)),
    ("avgpool", _pool((3, 2), (2, 1), (0, 1, 2, 1), count_include_pad=0), (T((1, 2, 6, 5)),)),
    ("avgpool", _pool((3, 2), (2, 1), (0, 1, 2, 1), count_include_pad=1), (T((1, 2, 6, 5)),)),
    ("avgpool", _pool((3,), (2,), (1, 0), ceil_mode=1, count_include_pad=0), (T((1, 2, 8)),)),
    ("avgpool", _pool((2, 2, 2), (1, 1, 2), (1, 0, 0, 1, 0, 0)), (T((1, 1, 3, 3, 4)),)),
    ("global_avgpool", {}, (T((2, 3, 5)),)),
    ("reduce_sum", {"axes": (0, 1), "keepdims": 0}, (T((3, 4)),)),
    ("reduce_mean", {"keepdims": 0}, (T((3, 4)),)),
    ("reduce_mean", {"axes": (1,), "keepdims": 1}, (T((2, 3, 4)),)),
    ("reduce_max", {"axes": (0, 2), "keepdims": 1}, (T((2, 3, 4)),)),
    ("reduce_max", {}, (T((2, 3)),)),
    ("concat", {"axis": 0}, (T((1, 3)), T((2, 3)))),
    ("concat", {"axis": 2}, (T((2, 3, 1)),)),
    ("concat", {"axis": 1}, (T((2, 0)), T((2, 3)), T((2, 2)))),
    ("reshape", {"shape": (3, 8)}, (T((4, 6)),)),
    ("reshape", {"shape": (4, 3, 2)}, (T((2, 3, 4)),)),
    ("reshape", {"shape": (3, 4, 1)}, (T((2, 1, 6)),)),
    ("reshape", {"shape": ()}, (T((1, 1)),)),
    ("reshape", {"shape": (1, 1)}, (T(()),)),
    ("flatten", {"axis": 0}, (T((2, 3, 4)),)),
    ("flatten", {"axis": 3}, (T((2, 3, 4)),)),
    ("flatten", {}, (T((2, 3, 4)),)),
    ("transpose", {}, (T((2, 3, 4)),)),
    ("transpose", {"perm": (1, 0, 2)}, (T((2, 3, 4)),)),
    ("pad", {"pads": (1, 0, 0, 2)}, (T((3, 4)),)),
    ("pad", {"pads": (0, 0, 0, 0)}, (T((3, 4)),)),
    ("slice", {"starts": (2,), "ends": (1 << 31,)}, (T((5, 3)),)),
    ("slice", {"starts": (0, 1), "ends": (3, 3), "axes": (1, 0), "steps": (2, 1)}, (T((4, 4)),)),
]

# clip's example has neither bound (the unary ops share one example) and torch.clamp refuses that: give it bounds
EXAMPLE_ATTRS = {"clip": {"min": -0.5, "max": 0.5}}
CASES = [(name, EXAMPLE_ATTRS.get(name, ex[0]), ex[1]) for name, ex in ((n, op.example()) for n, op in
                                                                        all_ops().items())] + EXTRA
IDS = [f"{name}-{k}" for k, (name, _, _) in enumerate(CASES)]
POSITIVE = {"sqrt", "pow", "log"}  # ops whose inputs must be positive for a real result


def _inputs(name, in_types, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in in_types]
    if name in POSITIVE:
        xs = [x.abs() + 0.1 for x in xs]
    if name == "batchnorm":  # variance
        xs[4] = xs[4].abs() + 0.1
    return xs


def test_every_op_has_an_example_and_a_doc():
    for name, op in all_ops().items():
        assert op.example is not None and op.doc, name


def test_new_ops_are_registered():
    names = set(all_ops())
    assert {"matmul", "batchnorm", "layernorm", "softmax", "maxpool", "avgpool", "global_avgpool", "reduce_mean",
            "reduce_sum", "reduce_max", "concat", "reshape", "flatten", "transpose", "pad", "slice"} <= names
    for name in ("matmul", "softmax", "maxpool", "reshape", "concat"):
        assert not all_ops()[name].elementwise
    assert get_op("batchnorm").weight_inputs == (1, 2) and get_op("layernorm").weight_inputs == (1, 2)


@pytest.mark.parametrize("name,attrs,in_types", CASES, ids=IDS)
def test_instruction_matches_torch(name, attrs, in_types):
    op = get_op(name)
    out_type = op.infer(attrs, in_types)
    instr = op.instruction(attrs, in_types, out_type)
    instr.check()
    assert instr.output.shape == out_type.shape
    assert len(instr.inputs) == len(in_types)

    xs = _inputs(name, in_types)
    ref = op.torch(attrs, *xs).detach().numpy()
    assert tuple(ref.shape) == out_type.shape
    got = interpret(instr, {n: x.numpy() for n, x in zip(instr.inputs, xs)})
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


class _Ctx:
    """The ONNX export context of docs/ops-conventions.md, for one node."""

    def __init__(self, shapes, dtypes):
        self.shapes, self.dtypes, self.inits, self.count = shapes, dtypes, [], 0

    def shape(self, name):
        return self.shapes[name]

    def dtype(self, name):
        return self.dtypes[name]

    def fresh(self, hint):
        self.count += 1
        return f"{hint}__{self.count}"

    def initializer(self, value, hint, like=None):
        from onnx import numpy_helper

        arr = np.asarray(value)
        arr = arr.astype(self.dtypes[like] if like is not None else np.int64 if arr.dtype.kind in "iu" else np.float32)
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name


@pytest.mark.parametrize("name,attrs,in_types", CASES, ids=IDS)
def test_onnx_export_matches_torch(name, attrs, in_types):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    op = get_op(name)
    if op.onnx is None:
        pytest.skip(f"{name} has no ONNX export")
    if 0 in [d for t in in_types for d in t.shape]:
        pytest.skip("onnxruntime and empty inputs")
    out_type = op.infer(attrs, in_types)
    ins = [f"in{k}" for k in range(len(in_types))]
    ctx = _Ctx({n: t.shape for n, t in zip(ins, in_types)}, {n: t.dtype for n, t in zip(ins, in_types)})
    nodes = op.onnx(attrs, ins, "out", ctx)
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, t.shape)
                                            for n, t in zip(ins, in_types)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_type.shape)],
                              initializer=ctx.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    xs = [x.float() for x in _inputs(name, in_types)]
    (got,) = sess.run(None, {n: x.numpy() for n, x in zip(ins, xs)})
    ref = op.torch(attrs, *xs).detach().numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


BAD = [
    ("matmul", {}, (T((2, 3)), T((4, 5)))),
    ("matmul", {}, (T((3,)), T((3, 2)))),
    ("matmul", {}, (T((2, 2, 3)), T((3, 3, 4)))),
    ("batchnorm", {}, (T((2, 3, 4)), T((4,)), T((3,)), T((3,)), T((3,)))),
    ("batchnorm", {}, (T((3,)),) * 5),
    ("layernorm", {"axis": 1}, (T((2, 8)), T((7,)))),
    ("layernorm", {"axis": 3}, (T((2, 8)),)),
    ("softmax", {"axis": 2}, (T((2, 8)),)),
    ("maxpool", _pool((5, 5), (1, 1), (0, 0, 0, 0)), (T((1, 1, 4, 4)),)),
    ("maxpool", _pool((2,), (1,), (0, 0)), (T((1, 1, 4, 4)),)),
    ("maxpool", _pool((2, 2), (0, 1), (0, 0, 0, 0)), (T((1, 1, 4, 4)),)),
    ("maxpool", _pool((2,), (1,), (0, 0)), (T((4, 4)),)),
    ("avgpool", _pool((2, 2), (1, 1), (0, 0, 0, 0), dilations=(2, 2)), (T((1, 1, 4, 4)),)),
    ("avgpool", _pool((2, 2), (1, 1), (2, 0, 0, 0), count_include_pad=0), (T((1, 1, 4, 4)),)),
    ("global_avgpool", {}, (T((2, 3)),)),
    ("reduce_sum", {"axes": (3,)}, (T((2, 3)),)),
    ("reduce_mean", {"axes": (1,), "keepdims": 2}, (T((2, 3)),)),
    ("reduce_max", {"axes": (1, 1)}, (T((2, 3)),)),
    ("concat", {"axis": 1}, (T((2, 3)), T((3, 3)))),
    ("concat", {"axis": 0}, (T((2, 3)), T((2, 3, 1)))),
    ("reshape", {"shape": (5, 5)}, (T((4, 6)),)),
    ("reshape", {"shape": (-1, 6)}, (T((4, 6)),)),
    ("flatten", {"axis": 4}, (T((2, 3)),)),
    ("transpose", {"perm": (0, 0, 1)}, (T((2, 3, 4)),)),
    ("pad", {"pads": (1, 1)}, (T((2, 3)),)),
    ("pad", {"pads": (0, -1, 0, 0)}, (T((2, 3)),)),
    ("slice", {"starts": (3,), "ends": (3,)}, (T((4, 3)),)),
    ("slice", {"starts": (0,), "ends": (3,), "steps": (0,)}, (T((4, 3)),)),
    ("slice", {"starts": (0,), "ends": (3,), "axes": (2,)}, (T((4, 3)),)),
    ("add", {}, (T((2, 3)), T((4,)))),
]


@pytest.mark.parametrize("name,attrs,in_types", BAD, ids=[f"{b[0]}-{k}" for k, b in enumerate(BAD)])
def test_bad_inputs_raise_value_error_naming_the_op(name, attrs, in_types):
    with pytest.raises(ValueError, match=name):
        get_op(name).infer(attrs, in_types)


def test_instructions_read_naturally():
    """The printed forms that ``nacos ops`` shows: spot checks that they stay the textbook ones."""
    def text(name, attrs, in_types):
        op = get_op(name)
        return str(op.instruction(attrs, in_types, op.infer(attrs, in_types)))

    assert text("reshape", {"shape": (2, 3, 4)}, (T((2, 12)),)) == \
        "Y[i0, i1, i2] = X[i0, 4*i1 + i2]   for i0<2, i1<3, i2<4"
    assert text("transpose", {"perm": (1, 0)}, (T((2, 3)),)) == "Y[i0, i1] = X[i1, i0]   for i0<3, i1<2"
    assert "max_{k<5}" in text("softmax", {"axis": 1}, (T((2, 5)),))
    mm = text("matmul", {}, (T((2, 3, 4)), T((4, 5))))
    assert mm == "Y[b0, i, j] = Σ_{k<4} A[b0, i, k]*B[k, j]   for b0<2, i<3, j<5"
    # no padding, no overhang: average pool divides by the constant window size
    assert text("avgpool", _pool((2, 2), (2, 2), (0, 0, 0, 0)), (T((1, 1, 4, 4)),)).endswith(
        "Y[n, c, o0, o1] = S[n, c, o0, o1]/4   for n<1, c<1, o0<2, o1<2")


def test_flatten_with_a_negative_axis_follows_onnx():
    from ir.graph import GraphBuilder

    b = GraphBuilder("f")
    x = b.input("x", (2, 3, 4, 5))
    shapes = [b.type_of(b.op("flatten", x, axis=a)).shape for a in (-1, -4, 0, 4)]
    assert shapes == [(24, 5), (1, 120), (1, 120), (120, 1)]


def test_integer_division_is_refused_and_zero_d_array_attributes_are_scalars():
    import numpy as np

    from ir.graph import GraphBuilder

    b = GraphBuilder("d")
    x = b.input("x", (1, 4), "int64")
    with pytest.raises(ValueError, match="div: inputs of dtype int64 are not supported"):
        b.op("div", x, b.constant(np.full((1, 4), 2, np.int64), "two"))
    y = b.input("y", (1, 4))
    clipped = b.op("clip", y, min=np.array(0.0), max=np.array(6.0))  # a TypeError before
    assert b.build([clipped]).node(clipped).attr("min") == 0.0
