"""Weight transfer: where a rewrite can represent the weights exactly (a separable kernel, SVD at full rank, a
block-diagonal conv) the rewritten graph reproduces the original outputs to 1e-4 — through the torch exporter
and through nacos.compile; elsewhere the transfer is the best approximation (Eckart–Young) and improves with rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import operators.gos as gos
from ir.exporters import to_torch
from ir.graph import GraphBuilder
from operators.gos import transfer
from operators.gos.examples import attention

TOL = dict(rtol=1e-4, atol=1e-4)


def conv_graph(w, hw=9, stride=1, bias=None):
    k, c, kh, kw = w.shape
    b = GraphBuilder("exact")
    x = b.input("x", (1, c, hw, hw))
    ins = [x, b.constant(w.astype(np.float32), "w")]
    if bias is not None:
        ins.append(b.constant(bias.astype(np.float32), "b"))
    y = b.op("conv", *ins, strides=(stride, stride), pads=(kh // 2, kw // 2, kh // 2, kw // 2), dilations=(1, 1),
             groups=1, name="conv")
    return b.build([y])


def outputs(graph, x):
    with torch.no_grad():
        return to_torch(graph)(torch.from_numpy(x)).numpy()


def check_exact(graph, node, rewrite, seed=0):
    x = np.random.default_rng(seed).standard_normal(graph.input_types()[0].shape).astype(np.float32)
    new = gos.apply(graph, {node: rewrite})
    np.testing.assert_allclose(outputs(new, x), outputs(graph, x), **TOL)
    return new


rng = np.random.default_rng(0)


def test_rank1_kernel_is_spatially_separable_exactly():
    u, v = rng.standard_normal(3), rng.standard_normal(3)
    g = conv_graph(np.outer(u, v)[None, None], bias=np.array([0.3]))
    new = check_exact(g, "conv", "spatial:1")
    assert [n.attr("pads") for n in new.compute_nodes] == [(1, 0, 1, 0), (0, 1, 0, 1)]


def test_jaderberg_structured_kernels_are_exact_at_their_width():
    """W[k, c, r0, r1] = Σ_{j<3} H[k, j, r1] · V[j, c, r0]: separable through 3 channels."""
    vert, horiz = rng.standard_normal((3, 8, 3)), rng.standard_normal((12, 3, 3))
    w = np.einsum("kjs,jcr->kcrs", horiz, vert)
    check_exact(conv_graph(w, stride=2, bias=rng.standard_normal(12)), "conv", "spatial:3")


@pytest.mark.parametrize("rewrite", ["spatial:full", "lowrank:full", "dwsep:full", "bottleneck:full"])
def test_full_rank_factorizations_reproduce_any_weights(rewrite):
    w = rng.standard_normal((8, 8, 3, 3))
    check_exact(conv_graph(w, bias=rng.standard_normal(8)), "conv", rewrite)


def test_svd_at_full_rank_for_dense_and_1x1():
    g = attention(tokens=8, dim=16)
    check_exact(g, "q", "lowrank:full")
    check_exact(conv_graph(rng.standard_normal((10, 7, 1, 1)), bias=rng.standard_normal(10)), "conv",
                "lowrank:full")


def test_low_rank_weights_are_exact_at_their_rank():
    w = (rng.standard_normal((12, 3)) @ rng.standard_normal((3, 8 * 9))).reshape(12, 8, 3, 3)
    check_exact(conv_graph(w), "conv", "lowrank:3")


def test_depthwise_structure_is_exact_with_multiplier_one():
    """W[k, c] = P[k, c] · D[c]: every filter of channel c is a multiple of one kernel."""
    w = rng.standard_normal((12, 8))[:, :, None, None] * rng.standard_normal((8, 3, 3))[None]
    check_exact(conv_graph(w, bias=rng.standard_normal(12)), "conv", "dwsep:1")


def test_group_restricted_copy_is_exact_for_block_diagonal_weights():
    k, c, g = 8, 8, 4
    w = rng.standard_normal((k, c, 3, 3))
    for f in range(k):   # filter f sees only the input channels of group f mod g
        keep = np.zeros(c, bool)
        keep[(f % g) * (c // g):(f % g + 1) * (c // g)] = True
        w[f, ~keep] = 0
    check_exact(conv_graph(w, bias=rng.standard_normal(k)), "conv", f"group:{g}")


def test_exact_rewrite_through_nacos_compile():
    import nacos

    u, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    w = np.einsum("kr,ks->krs", u, v)[:, None].repeat(2, axis=1)   # [4, 2, 3, 3], rank-1 kernels
    g = conv_graph(w, hw=8, bias=rng.standard_normal(4))
    new = gos.apply(g, {"conv": "spatial:full"})
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    (ref,) = nacos.compile(g)(x)
    (out,) = nacos.compile(new)(x)
    np.testing.assert_allclose(out, ref, **TOL)


def test_truncated_svd_is_the_eckart_young_optimum():
    m = rng.standard_normal((20, 30))
    s = np.linalg.svd(m, compute_uv=False)
    for r in (1, 5, 19):
        a, b = transfer.truncated_svd(m, r)
        assert np.isclose(np.linalg.norm(m - a @ b), np.sqrt((s[r:] ** 2).sum()))


def test_inexact_transfer_starts_close_and_improves_with_rank():
    w = rng.standard_normal((16, 16, 3, 3))
    g = conv_graph(w)
    x = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    ref = outputs(g, x)
    err = lambda rw: np.linalg.norm(outputs(gos.apply(g, {"conv": rw}), x) - ref) / np.linalg.norm(ref)  # noqa
    assert err("lowrank:4") > err("lowrank:8") > err("lowrank:12") > err("lowrank:full") - 1e-6
    assert err("bottleneck:8") < 1.0 and err("spatial:16") < err("spatial:8")
    # the group-restricted copy keeps exactly the in-group weights
    wg, _ = transfer.grouped(w, None, 4)
    for f in range(16):
        p, grp = transfer.shuffle_position(f, 16, 4), f % 4
        np.testing.assert_array_equal(wg[p], w[f, grp * 4:(grp + 1) * 4].astype(np.float32))
