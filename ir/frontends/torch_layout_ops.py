"""PyTorch converters for shapes and views: view/reshape, flatten/unflatten, permute/transpose, cat, slice/select,
split/chunk/unbind, unsqueeze/squeeze, expand.

They are registered in ``CONVERTERS`` in :mod:`ir.frontends.torch_ops` (the one table of aten converters).
"""

from __future__ import annotations

import math

import torch

from ir.frontends.torch_base import _axis, _reshape, _resolve_shape, _slice, aten, broadcast_to

def _view(imp, a, node):
    x = imp.t(a["self"])
    return _reshape(imp, x, _resolve_shape(imp.shape(x), a.get("size", a.get("shape"))))


def _flatten(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    if not shape:
        return _reshape(imp, x, (1,))
    s, e = _axis(a["start_dim"], len(shape)), _axis(a["end_dim"], len(shape))
    return _reshape(imp, x, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def _unflatten(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    d = _axis(int(a["dim"]), len(shape))
    sizes = _resolve_shape((shape[d],), a["sizes"])  # one size may be -1
    return _reshape(imp, x, shape[:d] + tuple(sizes) + shape[d + 1:])


def _permute(imp, a, node):
    x = imp.t(a["self"])
    rank = len(imp.shape(x))
    perm = tuple(_axis(int(d), rank) for d in a["dims"])
    return x if perm == tuple(range(rank)) else imp.op("transpose", x, perm=perm)


def _transpose(imp, a, node):
    x = imp.t(a["self"])
    rank = len(imp.shape(x))
    if node.target is aten.t.default:
        d0, d1 = (0, 1) if rank == 2 else (0, 0)
    else:
        d0, d1 = _axis(int(a["dim0"]), rank), _axis(int(a["dim1"]), rank)
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return x if d0 == d1 else imp.op("transpose", x, perm=tuple(perm))


def _cat(imp, a, node):
    tensors = [v for v in a["tensors"] if not (isinstance(v, torch.Tensor) and v.numel() == 0)]
    like = next((v for v in tensors if isinstance(v, str)), None)
    ins = [imp.t(v, like) for v in tensors]
    if len(ins) == 1:
        return ins[0]
    return imp.op("concat", *ins, axis=_axis(int(a["dim"]), len(imp.shape(ins[0]))))


def _slice_node(imp, a, node):
    return _slice(imp, imp.t(a["self"]), int(a["dim"]), a["start"], a["end"], int(a["step"]))


def _select(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a["dim"]), len(shape))
    i = int(a["index"])
    i = i + shape[dim] if i < 0 else i
    return _reshape(imp, _slice(imp, x, dim, i, i + 1), shape[:dim] + shape[dim + 1:])


def _split(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a.get("dim", 0)), len(shape))
    size = shape[dim]
    if node.target is aten.split_with_sizes.default:
        sizes = [int(s) for s in a["split_sizes"]]
    elif node.target is aten.chunk.default:
        part = -(-size // int(a["chunks"]))
        sizes = [min(part, size - k) for k in range(0, size, part)]
    else:
        part = int(a["split_size"])
        sizes = [min(part, size - k) for k in range(0, size, part)]
    outs, begin = [], 0
    for s in sizes:
        outs.append(_slice(imp, x, dim, begin, begin + s))
        begin += s
    return outs


def _unbind(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dim = _axis(int(a["dim"]), len(shape))
    rest = shape[:dim] + shape[dim + 1:]
    return [_reshape(imp, _slice(imp, x, dim, i, i + 1), rest) for i in range(shape[dim])]


def _unsqueeze(imp, a, node):
    x = imp.t(a["self"])
    shape = list(imp.shape(x))
    shape.insert(_axis(int(a["dim"]), len(shape) + 1), 1)
    return _reshape(imp, x, shape)


def _squeeze(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    dims = a.get("dim", a.get("dims"))
    dims = range(len(shape)) if dims is None else [dims] if isinstance(dims, int) else dims
    drop = {_axis(int(d), len(shape)) for d in dims} if shape else set()
    return _reshape(imp, x, [s for i, s in enumerate(shape) if not (i in drop and s == 1)])


def _expand(imp, a, node):
    x = imp.t(a["self"])
    shape = imp.shape(x)
    size = [int(s) for s in a["size"]]
    lead = len(size) - len(shape)
    out = tuple(shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return broadcast_to(imp, x, out)
