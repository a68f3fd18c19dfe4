"""The GOS rewrite table: ``(pattern, rewrite)`` rules over the IR, rewrite names, and composition.

A rewrite is named ``rule[:arg]`` and composes with ``>``: ``bottleneck:0.5>dwsep`` applies ``bottleneck:0.5``
to the node, then ``dwsep`` to the costliest node it produced that ``dwsep``'s pattern accepts (the 3×3 core).
Composition is how new candidates arise beyond the fixed menu: every rule is one of the three primitive
transformations of :mod:`operators.gos.primitives` (or the attention rewrite), so a chain of rules is a chain of
primitives. Arguments: ``group:G`` (groups), ``dwsep:M`` (depth multiplier), and for the rank rules (``spatial``,
``lowrank``, ``bottleneck``) the width of the intermediate: a float is a fraction of the channels (``0.25``), an
int an absolute width (``spatial:1``), ``full`` the width at which the factorization is exact for any weights
(the outputs are reproduced; useful as a check and as a starting point, rarely cheaper).

Applying a rule is a pure ``Graph → Graph`` step (:func:`apply_rewrite`): the rewritten node keeps its name and
type, new weights are the best approximation of the old ones (:mod:`operators.gos.transfer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ir.graph import CONSTANT, INPUT, Graph, Node
from operators.gos import primitives as prim
from operators.gos.attention import FEATURE_MAPS, linear_attention, match_attention
from operators.gos.graphedit import Emitter, Replacement, RewriteError, linear_view, node_cost, splice

KEEP = "keep"


MIN_WIDTH = 4   # narrower intermediates lose too much to recover by fine-tuning and make poor vector tiles


def _width(arg: Any, full: int, fraction_of: int) -> int:
    """``full`` for "full"; an int is an absolute width; a float is a fraction of ``fraction_of``, rounded to a
    multiple of 4 and at least MIN_WIDTH. Never more than ``full``."""
    if arg == "full":
        return full
    if isinstance(arg, int):
        w = arg
    else:
        w = max(MIN_WIDTH, int(round(float(arg) * fraction_of / 4)) * 4)
    if w < 1:
        raise RewriteError(f"width {arg!r} must be at least 1")
    return min(w, full)


# ---- patterns: what a rule applies to (a match object, or None) -------------------------------------------
MIN_MIXED = 8   # channel-splitting rules need this many input channels: on a 1-channel stem, "depthwise +
                # pointwise" is a rank-1 conv and a bottleneck has nothing to reduce


def _conv(graph: Graph, node: Node, spatial: bool = False, nd2: bool = False, mixed: bool = False):
    v = linear_view(graph, node)
    if v is None or v.kind != "conv" or v.groups != 1:
        return None
    if (spatial and v.kernel_points == 1) or (nd2 and (len(v.kernel) != 2 or min(v.kernel) < 2)):
        return None
    if mixed and v.in_channels < MIN_MIXED:
        return None
    return v


def _linear(graph: Graph, node: Node):
    v = linear_view(graph, node)
    return v if v is not None and v.groups == 1 else None


# ---- rewrites: (graph, node, match, arg) -> Replacement ---------------------------------------------------
def _group(em, v, arg):
    return prim.split_reduction(em, v, int(arg))


def _dwsep(em, v, arg):
    full = min(v.out_channels, v.kernel_points)
    if arg == "full":
        return prim.factor_depthwise(em, v, full)
    try:
        multiplier = float(arg)
    except ValueError:
        multiplier = 0.0
    if multiplier < 1 or multiplier != int(multiplier):  # int("0.5") would be a 0-channel depthwise conv
        raise RewriteError(f"dwsep:{arg}: the channel multiplier must be a whole number ≥ 1 (or 'full')")
    return prim.factor_depthwise(em, v, int(multiplier))


def _spatial(em, v, arg):
    kh, kw = v.kernel
    full = min(v.in_channels * kh, v.out_channels * kw)
    return prim.factor_spatial(em, v, _width(arg, full, min(v.in_channels, v.out_channels)))


def _lowrank(em, v, arg):
    full = min(v.out_channels, v.in_channels * v.kernel_points)
    return prim.reduce_rank(em, v, _width(arg, full, full))


def _bottleneck(em, v, arg):
    c, k = v.in_channels, v.out_channels
    return prim.reduce_rank2(em, v, _width(arg, c, c), _width(arg, k, k))


def _linear_attn(em, m, arg):
    return linear_attention(em, m, str(arg))


@dataclass(frozen=True)
class Rule:
    """One row of the table: where it applies, what it does, its default arguments, when it is exact."""

    name: str
    pattern: Callable[[Graph, Node], Any]
    rewrite: Callable[[Emitter, Any, Any], Replacement]
    args: tuple                  # the arguments candidate generation tries
    primitive: str
    exact: str
    doc: str


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("group", lambda g, n: _conv(g, n, mixed=True), _group, (2, 4), "reduction splitting",
         "W block-diagonal in the groups", "grouped conv (reduction over channels split in G) + channel shuffle"),
    Rule("dwsep", lambda g, n: _conv(g, n, spatial=True, mixed=True), _dwsep, (1,), "axis factoring (r, then c)",
         "every W[:, c] of rank ≤ M; always at 'full'", "depthwise k×k (multiplier M) + pointwise 1×1"),
    Rule("spatial", lambda g, n: _conv(g, n, nd2=True), _spatial, (0.5, 0.25), "axis factoring (r0, then r1)",
         "W as (C·kh)×(K·kw) of rank ≤ width; always at 'full'", "k×1 conv into a width, then 1×k conv"),
    Rule("lowrank", _linear, _lowrank, (0.5, 0.25), "rank reduction (output side)",
         "W as K×(C·∏k) of rank ≤ r; always at 'full'", "the op into r channels, then 1×1 (dense/1×1 conv/k×k)"),
    Rule("bottleneck", lambda g, n: _conv(g, n, spatial=True, mixed=True), _bottleneck, (0.5, 0.25),
         "rank reduction (both sides)", "at 'full' (reduce = C, expand = K)", "1×1 reduce → k×k core → 1×1 expand"),
    Rule("linear_attn", match_attention, _linear_attn, FEATURE_MAPS, "re-association of attention",
         "never (softmax is not a kernel feature map)", "φ(Q)(φ(K)ᵀV) / φ(Q)Σφ(K)ᵀ, φ = elu+1 or relu"),
)}


# ---- names ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    rule: str
    arg: Any = None

    def __str__(self) -> str:
        return self.rule if self.arg is None else f"{self.rule}:{self.arg}"


def _parse_arg(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse(rewrite: str) -> tuple[Step, ...]:
    """``"bottleneck:0.5>dwsep"`` → (Step("bottleneck", 0.5), Step("dwsep", 1)); unknown rules raise."""
    steps = []
    for part in str(rewrite).split(">"):
        name, _, arg = part.strip().partition(":")
        if name not in RULES:
            raise RewriteError(f"unknown rewrite {name!r} in {rewrite!r}; rules: {', '.join(RULES)}")
        steps.append(Step(name, _parse_arg(arg) if arg else RULES[name].args[0]))
    return tuple(steps)


def name_of(steps: Sequence[Step]) -> str:
    return ">".join(str(s) for s in steps)


# ---- applying ------------------------------------------------------------------------------------------------
def apply_step(graph: Graph, node: str, step: Step) -> tuple[Graph, Replacement]:
    rule = RULES[step.rule]
    anchor = graph.node(node)
    match = rule.pattern(graph, anchor)
    if match is None:
        raise RewriteError(f"rewrite {step} does not apply to node {node!r} ({anchor.op})")
    rep = rule.rewrite(Emitter(graph, anchor), match, step.arg)
    return splice(graph, rep), rep


def _costliest(graph: Graph, names: Sequence[str], rule: Rule) -> str | None:
    nodes = graph.node_map
    fits = [n for n in names if n in nodes and rule.pattern(graph, nodes[n]) is not None]
    return max(fits, key=lambda n: node_cost(graph, nodes[n]).flops, default=None)


def apply_rewrite(graph: Graph, node: str, rewrite: str) -> Graph:
    """``graph`` with ``rewrite`` (a rule name, possibly composed with ``>``) applied at ``node``."""
    if rewrite in (None, KEEP):
        return graph
    target = node
    steps = parse(rewrite)
    for k, step in enumerate(steps):
        graph, rep = apply_step(graph, target, step)
        if k + 1 < len(steps):
            target = _costliest(graph, rep.produced, RULES[steps[k + 1].rule])
            if target is None:
                raise RewriteError(f"rewrite {rewrite!r}: nothing that {step} produced at {node!r} takes "
                                   f"{steps[k + 1]}")
    return graph


def apply(graph: Graph, choices: dict[str, str]) -> Graph:
    """Apply one rewrite per node (``{"conv3": "dwsep", "conv5": "keep"}``); the result passes ``ir.verify``."""
    from ir.verify import verify

    order = {n.name: k for k, n in enumerate(graph.nodes)}
    for node in sorted(choices, key=lambda n: order.get(n, -1)):
        if node not in order:
            raise RewriteError(f"graph {graph.name!r} has no node {node!r}")
        graph = apply_rewrite(graph, node, choices[node])
    return verify(graph)


def region(before: Graph, after: Graph, anchor: str) -> tuple[list[Node], list[Node]]:
    """(compute nodes the rewrite removed, compute nodes it added) — the anchor counts in both."""
    old, new = before.node_map, after.node_map
    leaf = (INPUT, CONSTANT)
    gone = [n for n in before.nodes if n.op not in leaf and (n.name not in new or n.name == anchor)]
    added = [n for n in after.nodes if n.op not in leaf and (n.name not in old or n.name == anchor)]
    return gone, added
