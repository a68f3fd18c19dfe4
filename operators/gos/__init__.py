"""Grassroots Operator Search (GOS): find the costliest operators on the target and replace their math.

Module map::

    graphedit.py   LinearView (conv/dense/matmul as one reduction), Emitter, splice: the editing machinery
    transfer.py    weight transfer: truncated SVD, per-channel SVD, Tucker-2, group-restricted copy
    primitives.py  the three primitive instruction transformations: reduction splitting, axis factoring,
                   rank reduction (each emits new nodes with transferred weights)
    attention.py   softmax attention → linear attention (φ = elu+1 or relu, from existing ops)
    rewrites.py    the (pattern, rewrite) rule table, rewrite names ("bottleneck:0.5>dwsep"), apply
    space.py       candidate generation: single rules and compositions that cut FLOPs (and, given a latency
                   model, time on the target)
    calibrate.py   per-channel output calibration after an inexact transfer (fitted on real inputs)
    latency.py     latency models (measured per kernel, tuned from a database, roofline) with create(kind)
    analyze.py     operator complexity analysis: ops ranked by share of latency, FLOPs, bytes, GFLOP/s
    search.py      NSGA-II (pymoo, ask/tell) over one rewrite choice per op; accuracy after distillation
    report.py      pareto.json, report.md (original vs replacement instructions), artifacts, side-by-side timing
    examples.py    small IR models (VGG-style, ResNet-style, tiny CNN, attention) for tests, bench and docs

The small API used by joint search (``nacos optimize``)::

    operators.gos.candidates(graph) -> [(node_name, [rewrite names])]
    operators.gos.apply(graph, {node_name: rewrite}) -> Graph        # "keep" leaves a node as it is

Heavy dependencies (tvm, torch, pymoo) are imported inside the functions that need them.
"""

from operators.gos.graphedit import RewriteError
from operators.gos.rewrites import KEEP, RULES, apply, apply_rewrite, parse
from operators.gos.space import Candidate, candidates, node_candidates


def analyze(graph, **kwargs):
    """Operators ranked by their share of latency; see :func:`operators.gos.analysis.analyze`."""
    from operators.gos.analysis import analyze as _analyze

    return _analyze(graph, **kwargs)


__all__ = ["KEEP", "RULES", "Candidate", "RewriteError", "analyze", "apply", "apply_rewrite", "candidates",
           "node_candidates", "parse"]
