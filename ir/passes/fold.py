"""Graph simplification passes: constant folding, dead-node removal, batch-norm and bias folding.

All passes are pure functions ``Graph -> Graph``: they never mutate their input, keep node names of surviving
nodes (so graph outputs and consumers stay valid) and return a graph that passes :func:`ir.verify.verify`.
"""

from __future__ import annotations

import numpy as np

from ir.graph import CONSTANT, INPUT, Graph, Node, TensorType


def _fresh_namer(graph: Graph):
    used = {n.name for n in graph.nodes}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name
    return fresh


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop every node that no graph output depends on (graph inputs always stay, as the signature)."""
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node.name in live:
            live.update(node.inputs)
    nodes = [n for n in graph.nodes if n.name in live or n.op == INPUT]
    if len(nodes) == len(graph.nodes):
        return graph
    return graph.with_nodes(nodes)


def fold_constants(graph: Graph) -> Graph:
    """Replace every compute node whose inputs are all constants by a constant holding its value.

    The value is computed with the op's PyTorch reference (``OpDef.torch``), the same semantics the torch
    exporter runs. The folded node keeps its name and type; inputs left unused are dropped by
    :func:`remove_dead_nodes`.
    """
    import torch

    from ir.registry import get_op

    params = dict(graph.params)
    const = {n.name for n in graph.nodes if n.op == CONSTANT}
    nodes, changed = [], False
    for node in graph.nodes:
        if node.op in (INPUT, CONSTANT) or not node.inputs or not all(i in const for i in node.inputs):
            nodes.append(node)
            continue
        args = [torch.from_numpy(np.array(params[i])) for i in node.inputs]
        with torch.no_grad():
            value = get_op(node.op).torch(node.attr_dict, *args)
        value = np.asarray(value.detach().cpu().numpy(), dtype=node.type.dtype).reshape(node.type.shape)
        params[node.name] = value
        const.add(node.name)
        nodes.append(Node(node.name, CONSTANT, (), node.type))
        changed = True
    return graph.with_nodes(nodes, params) if changed else graph


def _splice(graph: Graph, replace: dict[str, list[Node]], drop: set[str], params: dict) -> Graph:
    """``graph`` with each node named in ``replace`` swapped for its nodes, those in ``drop`` removed, and
    ``params`` as its constants; the graph itself when nothing changes."""
    if not replace:
        return graph
    nodes = []
    for n in graph.nodes:
        if n.name not in drop:
            nodes.extend(replace.get(n.name, [n]))
    return remove_dead_nodes(graph.with_nodes(nodes, params))


def _bn_scale_shift(params, bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel affine map y = x·s + t that an inference batch norm computes."""
    gamma, beta, mean, var = (params[i].astype(np.float64) for i in bn.inputs[1:5])
    s = gamma / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
    return s, beta - mean * s


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold ``batchnorm(conv(x, W, b))`` (or ``dense`` with a 2-D output) into one conv/dense with rescaled
    constant weights and bias.

    Folds only when the batch norm's statistics and affine parameters and the producer's weights (and bias, if
    any) are constants and the batch norm is the producer's only consumer (and the producer is not a graph
    output); other batch norms stay. The new conv takes the batch norm's name, so its consumers are unchanged.
    """
    params = dict(graph.params)
    by_name = graph.node_map
    users = graph.consumers()
    const = {n.name for n in graph.nodes if n.op == CONSTANT}
    fresh = _fresh_namer(graph)
    replace: dict[str, list[Node]] = {}   # bn name -> nodes that take its place
    drop: set[str] = set()                # producers folded away
    for bn in graph.nodes:
        if bn.op != "batchnorm" or not all(i in const for i in bn.inputs[1:5]):
            continue
        prod = by_name[bn.inputs[0]]
        if prod.op not in ("conv", "dense") or prod.name in graph.outputs or len(users[prod.name]) != 1:
            continue
        if not all(i in const for i in prod.inputs[1:]):
            continue
        if prod.op == "dense" and len(prod.type.shape) != 2:
            continue  # batchnorm normalizes axis 1, which is the dense feature axis only for 2-D outputs
        w = params[prod.inputs[1]]
        k = w.shape[0]
        if bn.type.shape[1] != k or prod.type.dtype != bn.type.dtype:
            continue
        s, t = _bn_scale_shift(params, bn)
        b = params[prod.inputs[2]].astype(np.float64) if len(prod.inputs) == 3 else np.zeros(k)
        dtype = w.dtype
        new_w = (w.astype(np.float64) * s.reshape((k,) + (1,) * (w.ndim - 1))).astype(dtype)
        new_b = (b * s + t).astype(dtype)
        w_name, b_name = fresh(f"{bn.name}_weight"), fresh(f"{bn.name}_bias")
        params[w_name], params[b_name] = new_w, new_b
        replace[bn.name] = [Node(w_name, CONSTANT, (), TensorType(new_w.shape, new_w.dtype.name)),
                            Node(b_name, CONSTANT, (), TensorType(new_b.shape, new_b.dtype.name)),
                            Node(bn.name, prod.op, (prod.inputs[0], w_name, b_name), bn.type, prod.attrs)]
        drop.add(prod.name)
    return _splice(graph, replace, drop, params)


def _channel_vector(c: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """``c`` as one value per channel of ``axis`` when adding it to a tensor of ``out_shape`` is exactly that
    (it varies along ``axis`` alone and does not grow the output); else None."""
    rank = len(out_shape)
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != axis % rank) or shape[axis % rank] not in (1, out_shape[axis]):
        return None
    return np.broadcast_to(c.reshape(-1), (out_shape[axis],))


def fold_bias(graph: Graph) -> Graph:
    """Fold ``add(conv(x, W[, b]), c)`` and ``add(dense(x, W[, b]), c)`` into the producer's bias when ``c`` is a
    constant with one value per output channel (axis 1 of a conv, the last axis of a dense).

    Exporters write a layer's bias so (PyTorch's rank-3 ``Linear`` as MatMul + Add): left apart it is a separate
    kernel and not counted as a parameter. Same conditions as :func:`fold_batchnorm`: constant weights, the add the
    producer's only consumer, the producer not a graph output; the folded layer takes the add's name.
    """
    params = dict(graph.params)
    by_name = graph.node_map
    users = graph.consumers()
    const = {n.name for n in graph.nodes if n.op == CONSTANT}
    fresh = _fresh_namer(graph)
    replace: dict[str, list[Node]] = {}
    drop: set[str] = set()
    for add in graph.nodes:
        if add.op != "add" or len(add.inputs) != 2:
            continue
        for i in (0, 1):
            prod, other = by_name[add.inputs[i]], add.inputs[1 - i]
            if (other not in const or prod.op not in ("conv", "dense") or prod.name in graph.outputs
                    or len(users[prod.name]) != 1 or prod.name in drop or add.type != prod.type
                    or not all(j in const for j in prod.inputs[1:])):
                continue
            axis = 1 if prod.op == "conv" else -1
            vec = _channel_vector(params[other], prod.type.shape, axis)
            if vec is None:
                continue
            k = prod.type.shape[axis]
            old = params[prod.inputs[2]] if len(prod.inputs) == 3 else np.zeros(k, prod.type.dtype)
            bias = (old.astype(np.float64) + vec.astype(np.float64)).astype(prod.type.dtype)
            b_name = fresh(f"{add.name}_bias")
            params[b_name] = bias
            replace[add.name] = [Node(b_name, CONSTANT, (), TensorType(bias.shape, bias.dtype.name)),
                                 Node(add.name, prod.op, (prod.inputs[0], prod.inputs[1], b_name), add.type,
                                      prod.attrs)]
            drop.add(prod.name)
            break
    return _splice(graph, replace, drop, params)


def simplify(graph: Graph, max_rounds: int = 20) -> Graph:
    """Run constant folding, batch-norm and bias folding, and dead-node removal until nothing changes."""
    for _ in range(max_rounds):
        new = remove_dead_nodes(fold_bias(fold_batchnorm(fold_constants(graph))))
        if new.nodes == graph.nodes and set(new.params) == set(graph.params):
            return new
        graph = new
    return graph
