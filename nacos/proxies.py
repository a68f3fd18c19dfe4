"""Training-free accuracy proxies on IR graphs, and rank quality (Kendall τ) against trained accuracy.

``create(kind) -> Proxy``; ``proxy.score(graph, x)`` returns a float, higher meaning "predicted more accurate".

* ``naswot`` (Mellor et al., 2021): on a minibatch, each example's binary code is the sign pattern of the
  inputs of every rectifier-like activation (relu, relu6/clip, hardswish, gelu, silu, leaky_relu); the score is
  log|det K| with K = C·Cᵀ + (1 − C)·(1 − C)ᵀ, the count of agreeing units per pair of examples. Networks
  that give different examples different codes score higher.
* ``synflow`` (Tanaka et al., 2020): with every weight replaced by |θ|, float64, and an all-ones input,
  R = Σ output and the score is Σ |θ ⊙ ∂R/∂θ| (reported as log10 for readability). Data-free. As the paper
  treats batch norm as its affine part, layernorm counts as its affine part and relu6 as relu here.
* ``params`` / ``flops``: the cheapest baselines, from :func:`ir.analysis.graph_cost` (log10).

torch is imported inside the functions that need it, so ``import nacos.proxies`` stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ir.graph import Graph

RECTIFIERS = {"relu", "clip", "hardswish", "gelu", "gelu_tanh", "silu", "leaky_relu"}


@dataclass(frozen=True)
class RankQuality:
    """How well ``scores`` order ``truth``: Kendall τ (−1..1), its p-value, and the number of points."""

    tau: float
    p_value: float
    n: int

    def as_dict(self) -> dict:
        return {"tau": round(self.tau, 4), "p_value": float(f"{self.p_value:.3g}"), "n": self.n}


def rank_quality(scores: Sequence[float], truth: Sequence[float]) -> RankQuality:
    from scipy.stats import kendalltau

    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    ok = np.isfinite(s) & np.isfinite(t)
    if ok.sum() < 3 or np.ptp(s[ok]) == 0 or np.ptp(t[ok]) == 0:
        return RankQuality(0.0, 1.0, int(ok.sum()))
    res = kendalltau(s[ok], t[ok])
    return RankQuality(float(res.statistic), float(res.pvalue), int(ok.sum()))


# ---- proxies ---------------------------------------------------------------------------------------------------
def _interpreter(graph: Graph, module, overrides: dict | None = None):
    """``run(*inputs) -> env``: every node's value, computed with the ops' torch references and ``module``'s
    weights (``overrides`` maps op name → a replacement reference)."""
    from ir.registry import get_op

    consts = {c: getattr(module, a) for c, a in module.attr_names.items()}
    program = [(n.name, (overrides or {}).get(n.op, get_op(n.op).torch), n.attr_dict, n.inputs)
               for n in graph.compute_nodes]

    def run(*inputs):
        env = {**consts, **dict(zip(graph.inputs, inputs))}
        for name, fn, attrs, ins in program:
            env[name] = fn(attrs, *(env[i] for i in ins))
        return env

    return run


def naswot(graph: Graph, x: np.ndarray, seed: int = 0) -> float:
    """log|det K| of the binary activation-code kernel over the examples of ``x`` ([B, C, H, W])."""
    import torch

    from ir.exporters import to_torch
    from nacos.train import check_examples

    shape = tuple(graph.input_types()[0].shape)
    x = np.asarray(x, np.float32)
    if shape[0] == 1 and tuple(x.shape[1:]) == shape:  # examples given with their batch axis of 1
        x = x.reshape((len(x),) + shape[1:])
    check_examples(graph, x.shape[1:], "the examples", context="naswot: ")
    taps = [n.inputs[0] for n in graph.compute_nodes if n.op in RECTIFIERS]
    if not taps:
        return float("-inf")  # no rectifiers, so every example has the same (empty) code
    run = _interpreter(graph, to_torch(graph))
    batch = shape[0]

    def codes(xb):  # one row of activation codes per example of a batch of the graph's size
        env = run(xb)
        if batch > 1 and any(env[t].shape[0] != batch for t in taps):
            raise ValueError(f"naswot: graph {graph.name!r} folds its batch of {batch} into other axes, so its "
                             "activations cannot be told apart per example; build it with batch 1")
        return torch.cat([(env[t] > 0).reshape(batch, -1).to(torch.float64) for t in taps], dim=1)

    torch.manual_seed(seed)
    with torch.no_grad():
        xs = torch.tensor(x)
        if batch == 1:
            c = torch.func.vmap(lambda xi: codes(xi.unsqueeze(0))[0])(xs)
        else:  # a fixed-batch graph: whole batches, the last one zero-padded (its padding rows dropped)
            rows = []
            for i in range(0, len(xs), batch):
                xb = xs[i:i + batch]
                pad = xb.new_zeros((batch - len(xb),) + tuple(xb.shape[1:]))
                rows.append(codes(torch.cat([xb, pad]))[:len(xb)])
            c = torch.cat(rows)
        k = c @ c.T + (1 - c) @ (1 - c).T
        sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else float("-inf")


def _relu_clip(attrs, x):
    """relu6 → relu for synflow: with |θ| weights and all-ones input every unit is positive and grows, so an upper
    clip would saturate and zero the gradient of all but the last layers; synflow assumes rectifiers."""
    lo, hi = attrs.get("min"), attrs.get("max")
    return x.clamp(min=lo) if lo is not None else (x.clone() if hi is None else x.clamp(max=hi))


def _affine_layernorm(attrs, x, scale=None, bias=None):
    """layernorm → its affine part for synflow: on an all-ones input every normalized row is constant, so the
    real layernorm outputs zeros and cuts the flow through every pre-norm branch and the classifier."""
    y = x if scale is None else x * scale
    return y if bias is None else y + bias


def synflow(graph: Graph, x: np.ndarray | None = None, seed: int = 0) -> float:
    """log10 Σ |θ ⊙ ∂R/∂θ| with θ → |θ| in float64 and an all-ones input (``x`` is not used: data-free)."""
    import torch

    from ir.exporters import to_torch

    module = to_torch(graph).double()
    with torch.no_grad():
        for p in module.parameters():
            p.abs_()
    env = _interpreter(graph, module, {"clip": _relu_clip, "layernorm": _affine_layernorm})(
        *(torch.ones(t.shape, dtype=torch.float64) for t in graph.input_types()))
    total = sum(env[o].sum() for o in graph.outputs)
    params = list(module.parameters())
    grads = torch.autograd.grad(total, params, allow_unused=True)
    with torch.no_grad():
        score = sum(float((p * g).abs().sum()) for p, g in zip(params, grads) if g is not None)
    return math.log10(score) if score > 0 else float("-inf")


def params(graph: Graph, x: np.ndarray | None = None, seed: int = 0) -> float:
    from ir.analysis import graph_cost

    return math.log10(max(graph_cost(graph).params, 1))


def flops(graph: Graph, x: np.ndarray | None = None, seed: int = 0) -> float:
    from ir.analysis import graph_cost

    return math.log10(max(graph_cost(graph).flops, 1))


@dataclass(frozen=True)
class Proxy:
    """A named proxy: ``score(graph, x)``; ``needs_data`` says whether ``x`` (a minibatch) is read."""

    name: str
    fn: Callable[..., float]
    needs_data: bool
    doc: str = ""

    def score(self, graph: Graph, x: np.ndarray | None = None, seed: int = 0) -> float:
        if self.needs_data and x is None:
            raise ValueError(f"proxy {self.name!r} needs a minibatch x of shape [B, C, H, W]")
        return float(self.fn(graph, x, seed=seed))


_PROXIES = {
    "naswot": Proxy("naswot", naswot, True, "log-det of the binary ReLU-code kernel on a minibatch"),
    "synflow": Proxy("synflow", synflow, False, "log10 Σ|θ ⊙ ∂R/∂θ| on |θ| weights, all-ones input"),
    "params": Proxy("params", params, False, "log10 parameter count"),
    "flops": Proxy("flops", flops, False, "log10 FLOPs"),
}


def available() -> list[str]:
    return sorted(_PROXIES)


def create(kind: str | Proxy) -> Proxy:
    if isinstance(kind, Proxy):
        return kind
    try:
        return _PROXIES[kind]
    except KeyError:
        raise ValueError(f"unknown proxy {kind!r}; available: {', '.join(available())}") from None
