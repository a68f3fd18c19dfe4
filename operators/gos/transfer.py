"""Weight transfer: the new weights of a rewritten op, as the best approximation of the old ones.

Each function takes the original weight in conv layout W[K, C, *kernel] (a dense W[K, C] has no kernel axes) and
returns the factors the rewrite's new ops use. Where the rewrite can represent W exactly (full rank, or a kernel
that truly has the structure) the product of the factors *is* W, so the rewritten graph computes the same
function; otherwise it is the best approximation in the Frobenius norm that the structure allows (truncated SVD:
Eckart–Young) or a good one (Tucker-2 by a few HOOI sweeps), so that fine-tuning starts close to the original.
Computed in float64, returned in float32.

The decompositions run with one BLAS thread: the matrices are small, and on a shared 2-core machine OpenBLAS'
thread pool made a 64×576 SVD take 1.7 s instead of 9 ms (threads spinning for cores that are busy).
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import numpy as np


_CONTROLLER: list = []   # one threadpoolctl controller: scanning the loaded libraries costs ~3 ms a call


def _blas_limit():
    try:
        from threadpoolctl import ThreadpoolController  # ships with scikit-learn, a nacos dependency
    except ImportError:  # pragma: no cover
        return nullcontext()
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _one_blas_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_limit():
            return fn(*args, **kwargs)
    return wrapper


@_one_blas_thread
def truncated_svd(m: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(A [rows, rank], B [rank, cols]) with A·B the best rank-``rank`` approximation of ``m``.

    The singular values are split evenly (√S to each side) so both factors have the same scale, which keeps
    the two new layers equally easy to fine-tune. Ranks beyond min(rows, cols) get zero columns/rows."""
    u, s, vt = np.linalg.svd(np.asarray(m, np.float64), full_matrices=False)
    r = min(rank, len(s))
    root = np.sqrt(s[:r])
    a = np.zeros((m.shape[0], rank))
    b = np.zeros((rank, m.shape[1]))
    a[:, :r] = u[:, :r] * root
    b[:r] = root[:, None] * vt[:r]
    return a, b


def _f32(*arrays):
    return tuple(np.ascontiguousarray(a, np.float32) for a in arrays)


@_one_blas_thread
def low_rank(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """W[K, C, *k] ≈ Σ_j U[k, j] · V[j, c, *k]  →  (V [rank, C, *k]: the k×k op into ``rank`` channels,
    U [K, rank, 1, ...]: the 1×1 op back to K). Exact when rank ≥ rank of W as a K × (C·∏k) matrix."""
    k = w.shape[0]
    u, v = truncated_svd(w.reshape(k, -1), rank)
    ones = (1,) * (w.ndim - 2)
    return _f32(v.reshape((rank,) + w.shape[1:]), u.reshape((k, rank) + ones))


@_one_blas_thread
def depthwise_separable(w: np.ndarray, multiplier: int) -> tuple[np.ndarray, np.ndarray]:
    """W[K, C, *k] ≈ Σ_j P[k, c·m + j] · D[c·m + j, *k] (m = ``multiplier``), one SVD per input channel c of
    W[:, c] as a K × ∏k matrix  →  (D [C·m, 1, *k] depthwise, P [K, C·m, 1, ...] pointwise).
    Exact when every W[:, c] has rank ≤ m (always when m ≥ min(K, ∏k))."""
    k, c = w.shape[:2]
    kernel = w.shape[2:]
    pts = int(np.prod(kernel))
    mats = np.moveaxis(w.reshape(k, c, pts), 1, 0).astype(np.float64)      # [C, K, ∏k]
    u, s, vt = np.linalg.svd(mats, full_matrices=False)                      # batched over c
    r = min(multiplier, s.shape[1])
    depth = np.zeros((c, multiplier, pts))
    point = np.zeros((k, c, multiplier))
    root = np.sqrt(s[:, :r])                                                  # [C, r]
    depth[:, :r] = root[:, :, None] * vt[:, :r]
    point[:, :, :r] = np.moveaxis(u[:, :, :r] * root[:, None, :], 1, 0)
    ones = (1,) * len(kernel)
    return _f32(depth.reshape((c * multiplier, 1) + kernel), point.reshape((k, c * multiplier) + ones))


@_one_blas_thread
def spatial_separable(w: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """W[K, C, kh, kw] ≈ Σ_j H[k, j, r1] · V[j, c, r0] (Jaderberg et al. 2014, scheme 2): the SVD of W as a
    (C·kh) × (K·kw) matrix  →  (V [width, C, kh, 1]: kh×1 conv into ``width`` channels, H [K, width, 1, kw]).
    Exact when that matrix has rank ≤ width (always at width = min(C·kh, K·kw))."""
    k, c, kh, kw = w.shape
    m = np.transpose(w, (1, 2, 0, 3)).reshape(c * kh, k * kw)
    a, b = truncated_svd(m, width)
    vert = np.transpose(a.reshape(c, kh, width), (2, 0, 1))[..., None]
    horiz = np.transpose(b.reshape(width, k, kw), (1, 0, 2))[:, :, None, :]
    return _f32(vert, horiz)


def _leading(m: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` leading left singular vectors of ``m`` (zero-padded beyond its rank)."""
    u = np.linalg.svd(m, full_matrices=False)[0][:, :r]
    return np.pad(u, ((0, 0), (0, r - u.shape[1])))


@_one_blas_thread
def tucker2(w: np.ndarray, reduce: int, expand: int, sweeps: int = 3) -> tuple[np.ndarray, ...]:
    """W[K, C, *k] ≈ Σ_{a, b} E[k, b] · G[b, a, *k] · R[a, c]: 1×1 reduce C→``reduce``, the core op
    ``reduce``→``expand``, 1×1 expand →K (a bottleneck). HOSVD start, then ``sweeps`` HOOI sweeps (each
    factor re-fit given the other).  →  (R [reduce, C, 1...], G [expand, reduce, *k], E [K, expand, 1...]).
    Exact when ``reduce`` and ``expand`` reach the ranks of W's channel unfoldings (e.g. C and K)."""
    k, c = w.shape[:2]
    w64 = np.asarray(w, np.float64)
    unfold_c = np.moveaxis(w64, 1, 0).reshape(c, -1)
    u_in = _leading(unfold_c, reduce)
    u_out = _leading(w64.reshape(k, -1), expand)
    for _ in range(sweeps):
        proj_in = np.einsum("kc...,ca->ka...", w64, u_in)                    # W ×_c U_inᵀ
        u_out = _leading(proj_in.reshape(k, -1), expand)
        proj_out = np.einsum("kc...,kb->bc...", w64, u_out)                  # W ×_k U_outᵀ
        u_in = _leading(np.moveaxis(proj_out, 1, 0).reshape(c, -1), reduce)
    core = np.einsum("kc...,ca,kb->ba...", w64, u_in, u_out, optimize=True)
    ones = (1,) * (w.ndim - 2)
    return _f32(u_in.T.reshape((reduce, c) + ones), core, u_out.reshape((k, expand) + ones))


def shuffle_position(k: int, out_channels: int, groups: int) -> int:
    """Where filter ``k`` sits before a channel shuffle so that the shuffle puts it back at ``k``.

    The shuffle (reshape [g, K/g] → transpose → reshape) sends pre-shuffle channel g'·(K/g) + a to a·g + g', so
    filter k goes to group k mod g, slot k // g."""
    return (k % groups) * (out_channels // groups) + k // groups


def grouped(w: np.ndarray, bias: np.ndarray | None, groups: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The group-restricted copy: filter k keeps only its weights on the input channels of its group (group
    k mod g, matching :func:`shuffle_position`), placed where the following channel shuffle returns it to k.
    → (Wg [K, C/g, *k], bias permuted the same way). Exact when W is block-diagonal in that grouping."""
    k, c = w.shape[:2]
    cg = c // groups
    wg = np.zeros((k, cg) + w.shape[2:], np.float32)
    bg = None if bias is None else np.zeros(k, np.float32)
    for f in range(k):
        g = f % groups
        p = shuffle_position(f, k, groups)
        wg[p] = w[f, g * cg:(g + 1) * cg]
        if bias is not None:
            bg[p] = bias[f]
    return wg, bg
