"""The math half of the IR: every operator is a *mathematical instruction*.

An instruction is a short sequence of stages. Each stage defines one tensor in index notation::

    Y[n, k, h, w] = Σ_{c, r, s}  Xp[n, c, h + r, w + s] · W[k, c, r, s]

with output index variables (``axes``, one per output dimension, with extents ``shape``), an optional reduction
(``reduce`` ∈ {sum, max, min} over ``reduce_axes`` with extents ``reduce_shape``) and a ``body``: a sympy expression
over tensor accesses ``IndexedBase(name)[idx...]`` (use :func:`read`: rank-0 tensors are read as ``X[0]``). Accessed names are the instruction's inputs or earlier stages.
The last stage is the operator's output. Index arithmetic uses ``+ - *`` and :class:`idiv` / :class:`imod`
(floor division / modulo by a constant); data arithmetic uses ``+ - * /``, ``Pow``, ``exp``, ``log``, ``sqrt``,
``tanh``, ``erf``, ``Abs``, ``Max``, ``Min`` and ``Piecewise`` (for padding and concatenation).

Shapes, FLOPs, bytes and the TVM lowering are all derived from this one form (:mod:`ir.analysis`,
:mod:`schedules.lowering`): adding an operator means writing its instruction, not its cost formula or kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import sympy

REDUCERS = ("sum", "max", "min")


class idiv(sympy.Function):
    """Floor division of an index expression by a positive integer constant."""

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.Integer(int(a) // int(b))
        if b == 1:
            return a


class imod(sympy.Function):
    """Floor modulo of an index expression by a positive integer constant."""

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.Integer(int(a) % int(b))
        if b == 1:
            return sympy.Integer(0)


def axes(prefix: str, n: int) -> tuple[sympy.Symbol, ...]:
    """``n`` integer index variables named prefix0, prefix1, …"""
    return tuple(sympy.Symbol(f"{prefix}{i}", integer=True) for i in range(n))


def index_vars(names: str) -> tuple[sympy.Symbol, ...]:
    """Integer index variables from a space separated list: ``index_vars("n k h w")``."""
    return tuple(sympy.Symbol(s, integer=True) for s in names.split())


def tensor(name: str) -> sympy.IndexedBase:
    return sympy.IndexedBase(name)


def read(name: str, index: Sequence) -> sympy.Indexed:
    """``name[index]``; a rank-0 tensor is read as ``name[0]`` (sympy needs an index; buffers hold one element)."""
    index = tuple(index)
    return sympy.IndexedBase(name)[index if index else (sympy.Integer(0),)]


@dataclass(frozen=True)
class Stage:
    name: str
    axes: tuple[sympy.Symbol, ...]
    shape: tuple[int, ...]
    body: sympy.Expr
    reduce: str | None = None
    reduce_axes: tuple[sympy.Symbol, ...] = ()
    reduce_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "reduce_axes", tuple(self.reduce_axes))
        object.__setattr__(self, "reduce_shape", tuple(int(s) for s in self.reduce_shape))
        object.__setattr__(self, "body", sympy.sympify(self.body))
        if len(self.axes) != len(self.shape):
            raise ValueError(f"stage {self.name}: {len(self.axes)} axes but shape {self.shape}")
        if len(self.reduce_axes) != len(self.reduce_shape):
            raise ValueError(f"stage {self.name}: reduce axes and extents differ in length")
        if self.reduce is not None and self.reduce not in REDUCERS:
            raise ValueError(f"stage {self.name}: unknown reducer {self.reduce!r}")
        if self.reduce_axes and self.reduce is None:
            raise ValueError(f"stage {self.name}: reduce axes given without a reducer")

    @property
    def points(self) -> int:
        p = 1
        for s in self.shape:
            p *= s
        return p

    @property
    def reduce_points(self) -> int:
        p = 1
        for s in self.reduce_shape:
            p *= s
        return p

    def accesses(self) -> list[sympy.Indexed]:
        return sorted(self.body.atoms(sympy.Indexed), key=str)

    def __str__(self) -> str:
        lhs = f"{self.name}[{', '.join(map(str, self.axes))}]" if self.axes else self.name
        body = sympy.sstr(self.body)
        if self.reduce:
            dom = ", ".join(f"{a}<{e}" for a, e in zip(self.reduce_axes, self.reduce_shape))
            sym = {"sum": "Σ", "max": "max", "min": "min"}[self.reduce]
            body = f"{sym}_{{{dom}}} {body}"
        dims = ", ".join(f"{a}<{e}" for a, e in zip(self.axes, self.shape))
        return f"{lhs} = {body}" + (f"   for {dims}" if dims else "")


@dataclass(frozen=True)
class Instruction:
    """An operator's math: named inputs, then stages; the last stage is the output."""

    inputs: tuple[str, ...]
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ValueError("an instruction needs at least one stage")

    @property
    def output(self) -> Stage:
        return self.stages[-1]

    @property
    def main(self) -> Stage:
        """The stage that carries the work: the largest reduction, else the output stage."""
        reducing = [s for s in self.stages if s.reduce]
        if not reducing:
            return self.output
        return max(reducing, key=lambda s: s.points * s.reduce_points)

    def check(self) -> None:
        """Every accessed tensor is an input or an earlier stage, with the right number of indices."""
        known: dict[str, int | None] = {name: None for name in self.inputs}
        for st in self.stages:
            free_ok = set(st.axes) | set(st.reduce_axes)
            for acc in st.accesses():
                base = str(acc.base)
                if base not in known:
                    raise ValueError(f"stage {st.name} reads {base}, which is neither an input nor an earlier stage")
                rank = known[base]
                if rank is not None and max(rank, 1) != len(acc.indices):
                    raise ValueError(f"stage {st.name} indexes {base} with {len(acc.indices)} indices, rank {rank}")
            used = set()
            for atom in st.body.atoms(sympy.Symbol):
                used.add(atom)
            used -= {acc.base.label for acc in st.accesses()}
            extra = used - free_ok
            if extra:
                raise ValueError(f"stage {st.name} uses unbound index variables {sorted(map(str, extra))}")
            known[st.name] = len(st.axes)

    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.stages)


def rename_inputs(instr: Instruction, names: Sequence[str]) -> Instruction:
    """The same instruction with its inputs called ``names`` (for printing against graph node names)."""
    mapping = {sympy.IndexedBase(a): sympy.IndexedBase(b) for a, b in zip(instr.inputs, names)}
    stages = tuple(Stage(s.name, s.axes, s.shape, s.body.xreplace(mapping), s.reduce, s.reduce_axes, s.reduce_shape)
                   for s in instr.stages)
    return Instruction(tuple(names), stages)


def elementwise(name: str, shape: Iterable[int], fn) -> Stage:
    """A stage ``name[i...] = fn(i)`` over a fresh set of index variables."""
    shape = tuple(shape)
    idx = axes("i", len(shape))
    return Stage(name, idx, shape, fn(idx))


def broadcast_index(in_shape: Sequence[int], out_axes: Sequence[sympy.Symbol]) -> tuple:
    """Numpy broadcasting: the index into an input of ``in_shape`` for output index ``out_axes``."""
    offset = len(out_axes) - len(in_shape)
    return tuple(sympy.Integer(0) if d == 1 else out_axes[offset + k] for k, d in enumerate(in_shape))
