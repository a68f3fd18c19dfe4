"""Softmax attention → linear attention: the pattern, the graph it makes, its numerics against a torch
reference of φ(Q)(φ(K)ᵀV) / φ(Q)Σφ(K)ᵀ, and the FLOPs it saves when tokens outnumber the head width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import operators.gos as gos
from ir.analysis import graph_cost
from ir.exporters import to_torch
from ir.graph import GraphBuilder
from ir.verify import verify
from operators.gos.attention import match_attention
from operators.gos.examples import attention

N, D = 24, 4


def bare_attention(extra_use: bool = False, axis: int | None = 3):
    b = GraphBuilder("attn")
    q, kt, v = b.input("q", (1, 2, N, D)), b.input("kt", (1, 2, D, N)), b.input("v", (1, 2, N, D))
    scores = b.op("div", b.op("matmul", q, kt), b.constant(np.float32(2.0), "scale"))
    soft = b.op("softmax", scores, **({} if axis is None else {"axis": axis}))
    out = b.op("matmul", soft, v, name="attn")
    return b.build([out, soft] if extra_use else [out])


def reference(q, kt, v, phi):
    num = phi(q) @ (phi(kt) @ v)
    den = phi(q) @ phi(kt).sum(-1, keepdim=True)
    return num / (den + (1e-6 if phi is torch.relu else 0.0))


@pytest.mark.parametrize("fmap", ["elu", "relu"])
def test_linear_attention_matches_its_formula(fmap):
    g = bare_attention()
    new = verify(gos.apply(g, {"attn": f"linear_attn:{fmap}"}), check_instructions=True)
    assert new.node("attn").type == g.node("attn").type
    assert not {"softmax"} & {n.op for n in new.nodes}                 # the softmax chain is gone
    ops = {n.op for n in new.compute_nodes}
    assert "elu" not in ops and ops <= {"relu", "min", "exp", "add", "matmul", "reduce_sum", "div"}
    gen = torch.Generator().manual_seed(0)
    q, kt, v = (torch.randn(*s, generator=gen) for s in ((1, 2, N, D), (1, 2, D, N), (1, 2, N, D)))
    phi = (lambda x: torch.nn.functional.elu(x) + 1) if fmap == "elu" else torch.relu
    with torch.no_grad():
        out = to_torch(new)(q, kt, v)
    np.testing.assert_allclose(out.numpy(), reference(q, kt, v, phi).numpy(), rtol=1e-4, atol=1e-5)
    assert graph_cost(new).flops < graph_cost(g).flops


@pytest.mark.parametrize("axis", [-1, None])
def test_the_softmax_axis_may_be_negative_or_left_at_its_default(axis):
    g = bare_attention(axis=axis)
    assert match_attention(g, g.node("attn")) is not None  # only axis=3 matched before
    assert match_attention(bare_attention(axis=2), bare_attention(axis=2).node("attn")) is None


def test_pattern_needs_a_private_softmax_chain():
    assert match_attention(bare_attention(), bare_attention().node("attn")) is not None
    g = bare_attention(extra_use=True)
    assert match_attention(g, g.node("attn")) is None
    with pytest.raises(gos.RewriteError):
        gos.apply(g, {"attn": "linear_attn"})


def test_linear_attention_in_a_model_is_a_candidate():
    g = attention(tokens=64, dim=16, heads=2)
    found = dict(gos.candidates(g))
    assert {"linear_attn:elu", "linear_attn:relu"} <= set(found["attn"])
    new = verify(gos.apply(g, {"attn": "linear_attn:elu", "q": found["q"][0]}), check_instructions=True)
    assert new.output_types() == g.output_types()
