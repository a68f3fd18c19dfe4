"""The primitive instruction transformations of a linear reduction, and the new nodes each one emits.

Every conv / dense / matmul-with-weights computes (:class:`operators.gos.graphedit.LinearView`)

    Y[n, k, o] = Σ_{c<C, r<kernel} W[k, c, r] · X[n, c, o·s + r·d]

GOS rewrites that instruction with three primitives, each a re-association of the reduction that costs less:

* **reduction splitting** — restrict the reduction over c to the group of k: Σ_{c ∈ group(k)}
  (a grouped conv; a channel shuffle after it keeps channel order at the boundary);
* **axis factoring** — reduce over one set of axes first, then over the rest, through an intermediate tensor:
  over r0 then (j, r1) (k×1 then 1×k), or over r per channel c then over c (depthwise then pointwise);
* **rank reduction** — factor W through a narrow intermediate: Σ_j U[k, j] Σ_{c,r} V[j, c, r] X[...] (rank r on
  the output side), or on both sides, Σ_b E[k, b] Σ_{a,r} G[b, a, r] Σ_c R[a, c] X[...] (a bottleneck).

Each function returns a :class:`Replacement` whose new weights come from :mod:`operators.gos.transfer`.
The printed instructions of the new nodes are the instruction-level view of the same algebra.
"""

from __future__ import annotations

from operators.gos import transfer
from operators.gos.graphedit import Emitter, LinearView, Replacement, RewriteError


def _ones(nd: int) -> dict:
    return {"strides": (1,) * nd, "pads": (0,) * (2 * nd), "dilations": (1,) * nd, "groups": 1}


def _need(cond: bool, view: LinearView, why: str) -> None:
    if not cond:
        raise RewriteError(f"node {view.node.name!r} ({view.node.op}): {why}")


# ---- reduction splitting ---------------------------------------------------------------------------------
def split_reduction(em: Emitter, view: LinearView, groups: int) -> Replacement:
    """Grouped conv (the reduction over c split into ``groups``), then a channel shuffle
    (reshape [N, g, K/g, ...] → transpose → reshape) that returns every filter to its original channel."""
    k, c = view.out_channels, view.in_channels
    _need(view.kind == "conv" and view.groups == 1, view, "reduction splitting needs a conv with groups = 1")
    _need(groups >= 2 and k % groups == 0 and c % groups == 0, view, f"{groups} groups do not divide C={c}, K={k}")
    wg, bg = transfer.grouped(view.weight, view.bias, groups)
    y = em.linear(view, view.x, wg, bg, "grouped", groups=groups)
    shape = em.type_of(y).shape
    n, sp = shape[0], shape[2:]
    split = em.op("reshape", y, suffix="shuffle.split", shape=(n, groups, k // groups) + sp)
    perm = (0, 2, 1) + tuple(range(3, 3 + len(sp)))
    swapped = em.op("transpose", split, suffix="shuffle.swap", perm=perm)
    return em.output("reshape", swapped, shape=shape)


# ---- axis factoring ----------------------------------------------------------------------------------------
def factor_depthwise(em: Emitter, view: LinearView, multiplier: int = 1) -> Replacement:
    """Σ_{c,r} → Σ_c (Σ_r per channel): a depthwise conv (``multiplier`` filters per channel), then 1×1."""
    _need(view.kind == "conv" and view.groups == 1 and view.kernel_points > 1, view,
          "depthwise factoring needs a k×k conv (k > 1) with groups = 1")
    c = view.in_channels
    depth, point = transfer.depthwise_separable(view.weight, multiplier)
    h = em.linear(view, view.x, depth, None, "dw", groups=c)
    return em.linear(view, h, point, view.bias, "pw", final=True, **_ones(len(view.kernel)))


def factor_spatial(em: Emitter, view: LinearView, width: int) -> Replacement:
    """Σ_{c,r0,r1} → Σ_{j,r1} (Σ_{c,r0}): a kh×1 conv into ``width`` channels, then a 1×kw conv."""
    _need(view.kind == "conv" and view.groups == 1 and len(view.kernel) == 2 and min(view.kernel) > 1, view,
          "spatial factoring needs a 2-d k×k conv (k > 1) with groups = 1")
    vert, horiz = transfer.spatial_separable(view.weight, width)
    (s0, s1), (d0, d1) = view.strides, view.dilations
    b0, b1, e0, e1 = view.pads
    h = em.linear(view, view.x, vert, None, "vert", strides=(s0, 1), pads=(b0, 0, e0, 0), dilations=(d0, 1))
    return em.linear(view, h, horiz, view.bias, "horiz", final=True, strides=(1, s1), pads=(0, b1, 0, e1),
                     dilations=(1, d1))


# ---- rank reduction ----------------------------------------------------------------------------------------
def reduce_rank(em: Emitter, view: LinearView, rank: int) -> Replacement:
    """W = U·V through ``rank`` channels: the op itself into ``rank`` outputs, then a 1×1 op (a dense/matmul
    for dense/matmul) back to K."""
    _need(view.groups == 1, view, "rank reduction needs groups = 1")
    _need(1 <= rank, view, f"rank {rank} must be ≥ 1")
    v, u = transfer.low_rank(view.weight, rank)
    h = em.linear(view, view.x, v, None, "rank")
    extra = _ones(len(view.kernel)) if view.kind == "conv" else {}
    return em.linear(view, h, u, view.bias, "expand", final=True, **extra)


def reduce_rank2(em: Emitter, view: LinearView, reduce: int, expand: int) -> Replacement:
    """Rank reduction on both sides of a conv (a bottleneck): 1×1 reduce C→``reduce``, the k×k core
    ``reduce``→``expand``, 1×1 expand →K; weights by Tucker-2."""
    _need(view.kind == "conv" and view.groups == 1, view, "a bottleneck needs a conv with groups = 1")
    r, g, e = transfer.tucker2(view.weight, reduce, expand)
    ones = _ones(len(view.kernel))
    h = em.linear(view, view.x, r, None, "reduce", **ones)
    h = em.linear(view, h, g, None, "core")
    return em.linear(view, h, e, view.bias, "expand", final=True, **ones)
