"""Output calibration after an inexact weight transfer: per-channel scale and shift, fitted on real inputs.

A truncated factorization keeps the dominant directions of W but loses energy, and when several ops are replaced
the losses compound: six aggressive rewrites of a trained VGG gave chance accuracy before any fine-tuning (each
layer's output shrank, so the logits went flat) and 80 fine-tuning steps could not recover it. So after the
transfer, each replaced op — in graph order, reading the inputs that the already-calibrated rewritten graph
produces, so errors do not pile up — gets, per output channel k, the least-squares fit

    y_orig[k] ≈ a_k · y_new[k] + b_k        over a calibration batch (all examples and positions)

folded into the last linear node of its replacement (its weight rows scaled by a_k, its bias a_k·B + b_k), the
"bias correction" of post-training quantization (Nagel et al. 2019), applied to factorizations. Exact rewrites
fit a = 1, b = 0 and are left as they are (to float precision).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.graph import CONSTANT, Graph, Node, TensorType


def _final_linear(graph: Graph, anchor: str) -> tuple[str, np.ndarray | None]:
    """(node that carries the replacement's last weights, channel → that node's row; None = identity)."""
    node = graph.node(anchor)
    if node.op in ("conv", "dense"):   # (a matmul takes no bias: left uncalibrated)
        return anchor, None
    grouped = f"{anchor}.grouped"   # reduction splitting: the grouped conv, then the channel shuffle
    if node.op == "reshape" and grouped in graph.node_map:
        from operators.gos.transfer import shuffle_position

        k = node.shape[1]
        groups = graph.node(grouped).attr("groups")
        return grouped, np.array([shuffle_position(c, k, groups) for c in range(k)])
    return "", None


def _outputs(graph: Graph, names: Sequence[str], x: np.ndarray) -> list[np.ndarray]:
    """The values of ``names`` for every example of ``x`` (the graph is built for one example)."""
    import torch

    from ir.exporters import to_torch

    module = to_torch(graph.with_nodes(graph.nodes, outputs=tuple(names)))
    fn = torch.func.vmap(lambda xi: module(xi.unsqueeze(0)))
    with torch.no_grad():
        out = fn(torch.from_numpy(np.array(x, np.float32)))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy()[:, 0] for o in out]


def _fit(y_new: np.ndarray, y_orig: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel least squares y_orig ≈ a·y_new + b over examples × positions. The arrays are [examples, ...]
    with the graph's batch dim of 1 dropped, so the node's channel axis ``axis`` lands at the same index."""
    k = y_new.shape[axis]
    yn = np.moveaxis(y_new, axis, 0).reshape(k, -1).astype(np.float64)
    yo = np.moveaxis(y_orig, axis, 0).reshape(k, -1).astype(np.float64)
    mn, mo = yn.mean(1), yo.mean(1)
    var = ((yn - mn[:, None]) ** 2).mean(1)
    cov = ((yn - mn[:, None]) * (yo - mo[:, None])).mean(1)
    a = np.where(var > 1e-12, cov / np.maximum(var, 1e-12), 1.0)
    a = np.clip(a, 0.0, 10.0)   # a sign flip or a huge gain means the fit is noise: keep it bounded
    return a, mo - a * mn


def calibrate(original: Graph, rewritten: Graph, anchors: Sequence[str], x: np.ndarray) -> Graph:
    """``rewritten`` with each replaced op's output rescaled per channel to match ``original`` on inputs ``x``
    (examples without the batch dim; the graphs take one example, as ``nacos.train`` builds them — other graphs
    are returned uncalibrated)."""
    if rewritten.input_types()[0].shape[:1] != (1,) or len(rewritten.inputs) != 1:
        return rewritten
    order = {n.name: k for k, n in enumerate(rewritten.nodes)}
    params = dict(rewritten.params)
    graph = rewritten
    for anchor in sorted(anchors, key=lambda a: order[a]):
        target, rows = _final_linear(graph, anchor)
        if not target:
            continue
        node = graph.node(target)
        (y_new,) = _outputs(graph, [anchor], x)
        (y_orig,) = _outputs(original, [anchor], x)
        axis = 1 if node.op == "conv" else len(node.shape) - 1
        a, b = _fit(y_new, y_orig, axis)
        if rows is not None:   # channel k of the anchor is row rows[k] of the grouped conv
            a_r, b_r = np.empty_like(a), np.empty_like(b)
            a_r[rows], b_r[rows] = a, b
            a, b = a_r, b_r
        w_name = node.inputs[1]
        w = params[w_name].astype(np.float64)
        params[w_name] = (w * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        if len(node.inputs) == 3:
            params[node.inputs[2]] = (params[node.inputs[2]] * a + b).astype(np.float32)
            graph = graph.with_nodes(graph.nodes, params)
        else:   # no bias to carry the shift: give the node one
            graph = _add_bias(graph, node, b.astype(np.float32), params)
    return graph


def _add_bias(graph: Graph, node: Node, bias: np.ndarray, params: dict) -> Graph:
    name = f"{node.name}.calib_b"
    params[name] = bias
    nodes = []
    for n in graph.nodes:
        if n.name == node.name:
            nodes += [Node(name, CONSTANT, (), TensorType(bias.shape, "float32")), n.with_(inputs=n.inputs + (name,))]
        else:
            nodes.append(n)
    return graph.with_nodes(nodes, params)
