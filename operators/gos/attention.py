"""Softmax attention → linear attention (Katharopoulos et al. 2020), written with the existing ops.

Pattern, anchored at the output matmul (scale optional, either order of mul/div by a one-element constant)::

    O = matmul(softmax(matmul(Q, Kᵀ) · s, axis=-1), V)          Q [.., n, d], Kᵀ [.., d, m], V [.., m, dv]

Rewrite, with a positive feature map φ applied elementwise (so φ(Kᵀ) = φ(K)ᵀ and no transpose is needed)::

    O = φ(Q) · (φ(Kᵀ) · V)  /  φ(Q) · Σ_m φ(Kᵀ)                cost O(n·d·dv + m·d·dv) instead of O(n·m·(d + dv))

φ = elu + 1 = max(x, 0) + exp(min(x, 0)) (no elu op needed) or relu (then ε keeps the denominator positive).
The scale s is dropped: φ is not scale-equivariant the way softmax logits are, and fine-tuning absorbs it.
There are no weights to transfer; the rewrite is inexact and relies on fine-tuning with distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import CONSTANT, Graph, Node
from operators.common import normalize_axis
from operators.gos.graphedit import Emitter, Replacement

FEATURE_MAPS = ("elu", "relu")
EPS = 1e-6


@dataclass(frozen=True)
class AttentionMatch:
    q: str
    kt: str
    v: str
    removed: tuple[str, ...]   # the softmax chain the rewrite makes dead


def _private(graph: Graph, users, name: str) -> bool:
    """Read by exactly one node and not a graph output: the rewrite may drop it."""
    return len(users.get(name, [])) == 1 and name not in graph.outputs


def match_attention(graph: Graph, node: Node) -> AttentionMatch | None:
    """The softmax-attention sub-graph that ends at ``node``, or None."""
    if node.op != "matmul":
        return None
    nodes, users = graph.node_map, graph.consumers()
    soft = nodes[node.inputs[0]]
    if soft.op != "softmax":
        return None
    rank = len(soft.shape)  # the IR's default axis, -1, and any negative one count from the end
    if normalize_axis(soft.attr("axis", -1), rank, "softmax") != rank - 1 or not _private(graph, users, soft.name):
        return None
    scores = nodes[soft.inputs[0]]
    chain = [soft.name]
    if scores.op in ("mul", "div"):
        a, b = (nodes[i] for i in scores.inputs)
        scalar = lambda n: n.op == CONSTANT and n.type.size == 1  # noqa: E731
        inner = a if scalar(b) else (b if scores.op == "mul" and scalar(a) else None)
        if inner is None or not _private(graph, users, scores.name):
            return None
        chain.append(scores.name)
        scores = inner
    if scores.op != "matmul" or not _private(graph, users, scores.name):
        return None
    chain.append(scores.name)
    q, kt = (nodes[i] for i in scores.inputs)
    v = nodes[node.inputs[1]]
    if len(q.shape) < 2 or len(kt.shape) < 2 or len(v.shape) < 2 or v.shape[-2] != kt.shape[-1]:
        return None
    return AttentionMatch(q.name, kt.name, v.name, tuple(chain))


def feature_map(em: Emitter, x: str, kind: str, suffix: str) -> str:
    """φ(x) with existing ops: elu + 1 = relu(x) + exp(min(x, 0)); or relu(x)."""
    pos = em.op("relu", x, suffix=f"{suffix}.pos")
    if kind == "relu":
        return pos
    zero = em.const(np.float32(0.0), f"{suffix}.zero")
    neg = em.op("exp", em.op("min", x, zero, suffix=f"{suffix}.min"), suffix=f"{suffix}.exp")
    return em.op("add", pos, neg, suffix=f"{suffix}.phi")


def linear_attention(em: Emitter, match: AttentionMatch, kind: str = "elu") -> Replacement:
    if kind not in FEATURE_MAPS:
        raise ValueError(f"linear attention feature map {kind!r}: choose from {', '.join(FEATURE_MAPS)}")
    fq = feature_map(em, match.q, kind, "phi_q")
    fk = feature_map(em, match.kt, kind, "phi_k")
    kv = em.op("matmul", fk, match.v, suffix="kv")                       # [.., d, dv]
    num = em.op("matmul", fq, kv, suffix="num")                          # [.., n, dv]
    rank = len(em.type_of(fk).shape)
    ksum = em.op("reduce_sum", fk, suffix="ksum", axes=(rank - 1,), keepdims=1)   # [.., d, 1]
    den = em.op("matmul", fq, ksum, suffix="den")                        # [.., n, 1]
    if kind == "relu":
        den = em.op("add", den, em.const(np.float32(EPS), "eps"), suffix="den_eps")
    return em.output("div", num, den)
