"""Costs derived from the mathematical instruction alone — no per-op formula anywhere.

Counting conventions (stated once, used for every op):

* a stage's body costs one FLOP per arithmetic node: each binary ``+``/``*`` (an n-ary Add or Mul costs n − 1),
  each division, power, transcendental function, ``Max``/``Min`` comparison (n − 1 each); a negation
  (multiplication by −1) is free; ``Piecewise`` selects and index arithmetic are free (data movement);
* a sum/max/min reduction adds one FLOP per reduced element (the combine), so a conv or matmul costs
  2 · MACs, the usual convention (torch.utils.flop_counter uses it too);
* MACs count the reduced points of ``sum`` stages whose body is a product;
* bytes are what an ideal kernel moves: every input read once, the output written once;
* params are the elements of the op's constant weight inputs (see ``OpDef.weight_inputs``);
* memory (:func:`peak_memory`) is weights plus the peak of live activations, with no aliasing or in-place reuse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import sympy

from ir.graph import CONSTANT, INPUT, Graph, Node
from ir.instruction import Instruction, Stage, idiv, imod

_FREE_FUNCS = (idiv, imod, sympy.floor, sympy.ceiling)


def _is_index_expr(expr: sympy.Expr) -> bool:
    """An expression over integer index variables only (no tensor reads): free at run time."""
    return not expr.atoms(sympy.Indexed)


def body_flops(expr: sympy.Expr) -> int:
    """FLOPs to evaluate ``expr`` once (see the module docstring for the convention)."""
    if expr.is_Atom or isinstance(expr, sympy.Indexed) or _is_index_expr(expr):
        return 0
    if isinstance(expr, sympy.Piecewise):
        # a select: evaluate the chosen value; conditions on indices are free
        return max(body_flops(e) for e, _ in expr.args)
    args = expr.args
    inner = sum(body_flops(a) for a in args)
    if isinstance(expr, sympy.Add):
        return inner + len(args) - 1
    if isinstance(expr, sympy.Mul):
        # x / y is Mul(x, Pow(y, -1)): count the division once, in the Pow below (unless y is an index
        # expression: then the Pow is free and the Mul counts the division)
        factors = [a for a in args if a != -1 and not (isinstance(a, sympy.Pow) and a.args[1] == -1
                                                       and not _is_index_expr(a))]
        # the index-only factors (numbers, 1/count of a padded pooling window, ...) are one value: sympy
        # splits 1/(a·b) into a**-1 · b**-1, which would count the one division twice
        index_only = sum(1 for a in factors if _is_index_expr(a))
        return inner + max(len(factors) - index_only + min(index_only, 1) - 1, 0)
    if isinstance(expr, sympy.Pow):
        base, exp = args
        if exp == -1:
            return body_flops(base) + 1
        if exp == 2:
            return body_flops(base) + 1
        return inner + 1
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return inner + len(args) - 1
    if isinstance(expr, _FREE_FUNCS):
        return inner
    # exp, log, sqrt, tanh, erf, Abs, sign, ...: one FLOP each
    return inner + 1


def _is_mac(stage: Stage) -> bool:
    return stage.reduce == "sum" and isinstance(stage.body, sympy.Mul) and \
        sum(1 for a in stage.body.args if a.atoms(sympy.Indexed)) >= 2


def stage_flops(stage: Stage) -> int:
    per_point = body_flops(stage.body)
    if stage.reduce:
        return stage.points * stage.reduce_points * (per_point + 1)
    return stage.points * per_point


@dataclass(frozen=True)
class Cost:
    flops: int
    macs: int
    params: int
    bytes_read: int
    bytes_written: int

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.macs + other.macs, self.params + other.params,
                    self.bytes_read + other.bytes_read, self.bytes_written + other.bytes_written)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["intensity"] = round(self.intensity, 4)
        return d


ZERO = Cost(0, 0, 0, 0, 0)


@lru_cache(maxsize=4096)
def instruction_cost(instr: Instruction, in_bytes: tuple[int, ...], out_bytes: int) -> tuple[int, int]:
    flops = sum(stage_flops(s) for s in instr.stages)
    macs = sum(s.points * s.reduce_points for s in instr.stages if _is_mac(s))
    return flops, macs


def node_cost(graph: Graph, node: Node) -> Cost:
    """The cost of one compute node of ``graph``."""
    from ir.registry import get_op

    if node.op in (INPUT, CONSTANT):
        return ZERO
    nodes = graph.node_map
    in_types = tuple(nodes[i].type for i in node.inputs)
    opdef = get_op(node.op)
    instr = opdef.instruction(node.attr_dict, in_types, node.type)
    flops, macs = instruction_cost(instr, tuple(t.nbytes for t in in_types), node.type.nbytes)
    params = sum(in_types[k].size for k in opdef.weight_inputs
                 if k < len(node.inputs) and nodes[node.inputs[k]].op == CONSTANT)
    return Cost(flops, macs, params, sum(t.nbytes for t in in_types), node.type.nbytes)


def graph_costs(graph: Graph) -> dict[str, Cost]:
    return {n.name: node_cost(graph, n) for n in graph.compute_nodes}


def graph_cost(graph: Graph) -> Cost:
    """Totals; a weight shared by several nodes counts once in params."""
    from ir.registry import get_op

    total = ZERO
    for c in graph_costs(graph).values():
        total = total + c
    nodes = graph.node_map
    weights = {n.inputs[k] for n in graph.compute_nodes for k in get_op(n.op).weight_inputs
               if k < len(n.inputs) and nodes[n.inputs[k]].op == CONSTANT}
    params = sum(nodes[w].type.size for w in weights)
    return Cost(total.flops, total.macs, params, total.bytes_read, total.bytes_written)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    peak_activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes


def peak_memory(graph: Graph) -> MemoryEstimate:
    """Bytes a run of ``graph`` needs when executed node by node in graph order: every constant, plus the peak of
    live activations. A value is live from when it is produced (graph inputs: from the start) until its last
    consumer has run (graph outputs: to the end); while a node computes, its inputs and its output are all live.

    An upper bound for a real executor: nothing is aliased (a reshape gets its own buffer) or computed in place,
    and fused kernels are not modelled (their intermediates would never be materialized).
    """
    nodes = graph.node_map
    weights = sum(n.type.nbytes for n in graph.nodes if n.op == CONSTANT)
    last_use: dict[str, int] = {}
    for step, n in enumerate(graph.nodes):
        for i in n.inputs:
            last_use[i] = step
    end = len(graph.nodes)
    for o in graph.outputs:
        last_use[o] = end
    live = {i: nodes[i].type.nbytes for i in graph.inputs}
    current = peak = sum(live.values())   # the caller hands over every input before the first node runs
    for name in [i for i in graph.inputs if i not in last_use]:
        current -= live.pop(name)
    for step, n in enumerate(graph.nodes):
        if n.op in (INPUT, CONSTANT):
            continue
        live[n.name] = n.type.nbytes
        current += n.type.nbytes
        peak = max(peak, current)
        # freed after the node, including its own output when nothing reads it
        for name in {*n.inputs, n.name}:
            if name in live and last_use.get(name, step) <= step:
                current -= live.pop(name)
    return MemoryEstimate(int(weights), int(peak))
