"""One generic lowering: math instruction (sympy) → TVM tensor expression → PrimFunc.

No op is special-cased here. Each stage of an instruction becomes one ``te.compute``; a sympy body becomes a TIR
expression by :func:`to_tir`. A *group* of graph nodes (an anchor and the elementwise epilogues that follow it)
becomes one PrimFunc, the epilogues reading the anchor's output tensor directly, so they fuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sympy

from ir.graph import CONSTANT, Graph, Node
from ir.instruction import Instruction, idiv, imod
from ir.registry import get_op
from schedules.default import MainHint
from schedules.fastmath import fast_erf, fast_exp, fast_one_plus_exp, fast_tanh
from schedules.tvm_env import tvm

te = tvm.te
tirx = tvm.tirx


class LoweringError(ValueError):
    """An instruction that uses math the TIR translation does not know."""


# exp/tanh/erf: vectorizable polynomials for float32 (libm per lane otherwise, see schedules.fastmath)
_UNARY_FUNCS = {
    sympy.exp: fast_exp,
    sympy.log: lambda x: te.log(x),
    sympy.tanh: fast_tanh,
    sympy.erf: fast_erf,
    sympy.Abs: lambda x: te.abs(x),
}


def _is_index(expr: sympy.Expr) -> bool:
    return not expr.atoms(sympy.Indexed)


class _Translator:
    """sympy → TIR for one stage: ``env`` maps index Symbols to TIR vars and tensor names to te.Tensors."""

    def __init__(self, env: dict, dtype: str) -> None:
        self.env = env
        self.dtype = dtype

    def index(self, e: sympy.Expr):
        """An integer index expression (or a condition over them)."""
        if isinstance(e, sympy.Symbol):
            try:
                return self.env[e]
            except KeyError:
                raise LoweringError(f"unbound index variable {e}") from None
        if e.is_Integer:
            return tirx.const(int(e), "int32")
        if isinstance(e, sympy.Add):
            out = self.index(e.args[0])
            for a in e.args[1:]:
                out = out + self.index(a)
            return out
        if isinstance(e, sympy.Mul):
            out = self.index(e.args[0])
            for a in e.args[1:]:
                out = out * self.index(a)
            return out
        if isinstance(e, idiv):
            return te.floordiv(self.index(e.args[0]), self.index(e.args[1]))
        if isinstance(e, imod):
            return te.floormod(self.index(e.args[0]), self.index(e.args[1]))
        if isinstance(e, sympy.Max):
            return self._fold(tirx.max, [self.index(a) for a in e.args])
        if isinstance(e, sympy.Min):
            return self._fold(tirx.min, [self.index(a) for a in e.args])
        if isinstance(e, sympy.And):
            return self._fold(tirx.all, [self.index(a) for a in e.args])
        if isinstance(e, sympy.Or):
            return self._fold(tirx.any, [self.index(a) for a in e.args])
        if e is sympy.true:
            return tirx.const(True, "bool")
        rel = {sympy.StrictLessThan: lambda a, b: a < b, sympy.LessThan: lambda a, b: a <= b,
               sympy.StrictGreaterThan: lambda a, b: a > b, sympy.GreaterThan: lambda a, b: a >= b,
               sympy.Equality: lambda a, b: a == b, sympy.Unequality: lambda a, b: a != b}
        for cls, fn in rel.items():
            if isinstance(e, cls):
                return fn(self.index(e.lhs), self.index(e.rhs))
        raise LoweringError(f"cannot lower index expression {e} ({type(e).__name__})")

    @staticmethod
    def _fold(fn, items):
        out = items[0]
        for x in items[1:]:
            out = fn(out, x)
        return out

    def const(self, value) -> "tirx.PrimExpr":
        return tirx.const(float(value), self.dtype)

    def denominator(self, e: sympy.Expr):
        """A divisor: ``1 + exp(u)`` (sigmoid, SiLU) through :func:`fast_one_plus_exp`, which only a quotient may
        use: it is +∞ from u = 88 on, where 1 + e^u is still finite (a quotient changes by less than 4e-39 of its
        numerator; a log of it would not be finite). Anything else as :meth:`data`."""
        if isinstance(e, sympy.Add) and len(e.args) == 2 and sympy.S.One in e.args:
            (other,) = [a for a in e.args if a != sympy.S.One]
            if isinstance(other, sympy.exp):
                return fast_one_plus_exp(self.data(other.args[0]))
        return self.data(e)

    def data(self, e: sympy.Expr):
        """A tensor-valued expression in ``self.dtype``."""
        if isinstance(e, sympy.Indexed):
            t = self.env[str(e.base)]
            return t[tuple(self.index(i) for i in e.indices)] if e.indices else t[()]
        if e.is_Number:
            if e in (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
                raise LoweringError(f"non-finite constant {e} in a body")
            return self.const(e)
        if e.is_number:  # constant expressions such as sqrt(2) or pi
            return self.const(float(e))
        if _is_index(e) and not isinstance(e, (sympy.Piecewise,)):
            return tirx.Cast(self.dtype, self.index(e))
        if isinstance(e, sympy.Add):
            return self._fold(lambda a, b: a + b, [self.data(a) for a in e.args])
        if isinstance(e, sympy.Mul):
            num, den = [], []
            for a in e.args:
                if isinstance(a, sympy.Pow) and a.exp.is_Number and a.exp < 0:
                    den.append(a.base if a.exp == -1 else sympy.Pow(a.base, -a.exp))
                elif a.is_Rational and not a.is_Integer and a.p == 1:
                    den.append(sympy.Integer(a.q))
                else:
                    num.append(a)
            out = self._fold(lambda a, b: a * b, [self.data(a) for a in num]) if num else self.const(1)
            for d in den:
                out = out / self.denominator(d)
            return out
        if isinstance(e, sympy.Pow):
            base, exp = e.args
            if exp == -1:
                return self.const(1) / self.denominator(base)
            if exp.is_Integer and 2 <= int(exp) <= 4:
                b = self.data(base)
                return self._fold(lambda x, y: x * y, [b] * int(exp))
            if exp == sympy.Rational(1, 2):
                return te.sqrt(self.data(base))
            if exp == sympy.Rational(-1, 2):
                return te.rsqrt(self.data(base))
            return te.power(self.data(base), self.data(exp))
        if isinstance(e, sympy.Max):
            return self._fold(tirx.max, [self.data(a) for a in e.args])
        if isinstance(e, sympy.Min):
            return self._fold(tirx.min, [self.data(a) for a in e.args])
        if isinstance(e, sympy.Piecewise):
            out = None
            for value, cond in reversed(e.args):
                v = self.data(sympy.sympify(value))
                out = v if cond is sympy.true or out is None else tirx.if_then_else(self.index(cond), v, out)
            return out
        for fn, make in _UNARY_FUNCS.items():
            if isinstance(e, fn):
                return make(self.data(e.args[0]))
        raise LoweringError(f"cannot lower expression {e} ({type(e).__name__})")


_REDUCERS = {"sum": lambda: te.sum, "max": lambda: te.max, "min": lambda: te.min}


def _stage_compute(stage, env: dict, dtype: str):
    def fcompute(*idx):
        local = dict(env)
        local.update(zip(stage.axes, idx))
        if not stage.reduce:
            return _Translator(local, dtype).data(stage.body)
        raxes = [te.reduce_axis((0, ext), name=str(a)) for a, ext in zip(stage.reduce_axes, stage.reduce_shape)]
        local.update(zip(stage.reduce_axes, raxes))
        return _REDUCERS[stage.reduce]()(_Translator(local, dtype).data(stage.body), axis=raxes)
    return fcompute


def lower_instruction(instr: Instruction, inputs: Sequence["te.Tensor"], dtype: str, prefix: str = "") -> list:
    """The te.Tensors of every stage of ``instr``, reading ``inputs``; the last is the output."""
    env: dict = {name: t for name, t in zip(instr.inputs, inputs)}
    tensors = []
    for stage in instr.stages:
        fcompute = _stage_compute(stage, env, dtype)
        t = te.compute(stage.shape, fcompute, name=f"{prefix}{stage.name}")
        env[stage.name] = t
        tensors.append(t)
    return tensors


@dataclass(frozen=True)
class Group:
    """Nodes lowered into one kernel: ``nodes[0]`` is the anchor, the rest are elementwise epilogues — or, in a
    chain (:func:`schedules.fusion.is_chain`), a second anchor that reads the first's output, and its epilogues."""

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]      # graph tensors the kernel reads, in argument order
    output: str                  # the graph tensor the kernel writes

    @property
    def name(self) -> str:
        return "_".join([self.nodes[0].op] + [n.op for n in self.nodes[1:]])


def lower_group(graph: Graph, group: Group):
    """(PrimFunc, MainHint | None) for one fused group. Scalars (rank 0) are carried as shape (1,) buffers."""
    nodes = graph.node_map
    placeholders = {}
    for name in group.inputs:
        t = nodes[name].type
        placeholders[name] = te.placeholder(t.shape if t.shape else (1,), dtype=t.dtype, name=_sanitize(name))
    produced: dict[str, "te.Tensor"] = {}
    hint = None
    for k, node in enumerate(group.nodes):
        ins = []
        for i in node.inputs:
            src = produced.get(i, placeholders.get(i))
            if src is None:
                raise LoweringError(f"group {group.name}: input {i} of {node.name} is not available")
            ins.append(src)
        opdef = get_op(node.op)
        in_types = tuple(nodes[i].type for i in node.inputs)
        instr = opdef.instruction(node.attr_dict, in_types, node.type)
        instr = _scalars_as_vectors(instr)
        tensors = lower_instruction(instr, ins, node.type.dtype, prefix=f"n{k}_")
        produced[node.name] = tensors[-1]
        if k == 0 and instr.main.reduce:
            const_params = {name: group.inputs.index(src) for name, src in zip(instr.inputs, node.inputs)
                            if nodes[src].op == CONSTANT}
            hint = MainHint(f"n0_{instr.main.name}", reuse_axes(instr.main), unit_stride_last(instr.main),
                            packable_axes(instr.main, const_params), plain_last(instr.main))
    out = produced[group.output]
    func = te.create_prim_func([placeholders[n] for n in group.inputs] + [out])
    return func, hint


def reuse_axes(stage) -> tuple[int, ...]:
    """Spatial axes that at least one accessed tensor does not depend on (tiling them reuses its loads)."""
    out = []
    for a, axis in enumerate(stage.axes):
        if any(axis not in acc.free_symbols for acc in stage.accesses()):
            out.append(a)
    return tuple(out)


def unit_stride_last(stage) -> bool:
    """Every read that uses the innermost spatial axis uses it with coefficient 1, in its last dimension only."""
    if not stage.axes:
        return False
    last = stage.axes[-1]
    for acc in stage.accesses():
        for d, idx in enumerate(acc.indices):
            if last in idx.free_symbols and (d != len(acc.indices) - 1 or sympy.diff(idx, last) != 1):
                return False
    return True


def plain_last(stage) -> bool:
    """Every read that uses the innermost spatial axis indexes its last dimension with exactly that axis (a lane
    axis of a blocked layout: vector loads with no index arithmetic)."""
    if not stage.axes:
        return False
    last = stage.axes[-1]
    uses = [acc for acc in stage.accesses() if any(last in idx.free_symbols for idx in acc.indices)]
    return bool(uses) and all(acc.indices[-1] == last and
                              all(last not in idx.free_symbols for idx in acc.indices[:-1]) for acc in uses)


def packable_axes(stage, const_params: dict[str, int]) -> tuple[tuple[int, int, int], ...]:
    """(spatial axis, param index, dimension): axes that index one constant input as a plain variable and no other
    input, so the constant can be re-laid out at compile time with that axis innermost (vector loads)."""
    out = []
    for a, axis in enumerate(stage.axes):
        uses = [(str(acc.base), d) for acc in stage.accesses() for d, idx in enumerate(acc.indices)
                if axis in idx.free_symbols]
        if len(uses) != 1 or uses[0][0] not in const_params:
            continue
        name, d = uses[0]
        acc = next(acc for acc in stage.accesses() if str(acc.base) == name)
        if acc.indices[d] == axis:
            out.append((a, const_params[name], d))
    return tuple(out)


def _scalars_as_vectors(instr: Instruction) -> Instruction:
    """Rank-0 stages are stored as 1-element buffers (reads are already ``X[0]``, see ir.instruction.read)."""
    from ir.instruction import Stage

    z = sympy.Symbol("z0", integer=True)
    return Instruction(instr.inputs, tuple(
        Stage(st.name, (z,), (1,), st.body, st.reduce, st.reduce_axes, st.reduce_shape) if not st.shape else st
        for st in instr.stages))


def _sanitize(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "t_" + out


def is_constant(graph: Graph, name: str) -> bool:
    return graph.node(name).op == CONSTANT
