"""What a workload's math instructions say about its kernel's loops — no TVM needed.

The *main* stage (the anchor's largest reduction, as :func:`schedules.lowering.lower_group` names it), its spatial
and reduction extents, the producer stages before it (padding), the elementwise epilogue after it, the main stage's
tensor accesses as per-axis index coefficients (for footprints in :mod:`schedules.features`), and whether a
constant input can be re-laid out (packed) as :mod:`schedules.default` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from ir.instruction import idiv, imod
from ir.registry import get_op
from schedules.default import window_rows
from schedules.loops import VECTOR_LANES
from schedules.packed import block_axis
from schedules.rowwise import rowwise_kernel


@dataclass(frozen=True)
class Access:
    """A tensor read (or the write) of the main stage: per tensor dim, |d index / d axis| for every loop axis."""

    tensor: str
    dims: tuple[int, ...]
    coefs: tuple[tuple[float, ...], ...]   # [dim][axis]; axes = spatial then reduction
    itemsize: int = 4


@dataclass(frozen=True)
class KernelShape:
    kind: str                       # "reduction" or "injective"
    main: str                       # block name of the main stage ("n0_conv"); the output block if injective
    spatial: tuple[int, ...]
    reduce: tuple[int, ...]
    reuse_axes: tuple[int, ...]
    producers: tuple[str, ...]      # non-reduction blocks before main (padding)
    epilogue: tuple[str, ...]       # blocks after main when all are elementwise (fusable into the tile)
    blocks: tuple[str, ...]         # every block, in order
    accesses: tuple[Access, ...]    # reads of the main stage, then its write
    flops: int
    packed: tuple[int, int, int] | None = None   # (spatial axis, param, dim): a constant that can be re-laid out
    prefer_packed: bool = False                  # what schedules.default.choose_strategy picks
    block_axis: int | None = None                # another axis only the packed constant reads (default.block_axis)
    lanes_ready: bool = False                    # the innermost axis is a blocked layout's lane axis (plain_last)
    rowwise: bool = False                        # per-row stages over the last axis (default.rowwise_kernel)
    window: int = 0                              # rows of a small window's tile (default.window_rows), 0: none


def _coef(expr: sympy.Expr, axis: sympy.Symbol) -> float:
    expr = expr.replace(idiv, lambda a, b: a / b).replace(imod, lambda a, b: a)
    d = sympy.diff(expr, axis)
    return abs(float(d)) if d.is_number else 1.0


@lru_cache(maxsize=1024)
def kernel_shape(workload) -> KernelShape:
    """What the search needs to know about a workload's loops, read from its instructions."""
    from schedules.lowering import _scalars_as_vectors, plain_last, reuse_axes, unit_stride_last

    graph = workload.graph
    nodes = graph.node_map
    blocks, reductions, extents = [], set(), []
    shapes: dict[str, tuple[int, ...]] = {n: tuple(nodes[n].shape) or (1,) for n in graph.inputs}
    anchor_instr = None
    for k, node in enumerate(workload.group.nodes):
        in_types = tuple(nodes[i].type for i in node.inputs)
        instr = _scalars_as_vectors(get_op(node.op).instruction(node.attr_dict, in_types, node.type))
        if k == 0:
            anchor_instr = instr
            for name, t in zip(instr.inputs, in_types):
                shapes[name] = tuple(t.shape) or (1,)
        for st in instr.stages:
            blocks.append(f"n{k}_{st.name}")
            extents.append((tuple(st.shape), tuple(st.reduce_shape) if st.reduce else ()))
            if k == 0:
                shapes[st.name] = st.shape
            if st.reduce:
                reductions.add(blocks[-1])
    main_stage = anchor_instr.main
    itemsize = nodes[workload.group.output].type.nbytes // max(1, nodes[workload.group.output].type.size)
    if main_stage.reduce:
        main = f"n0_{main_stage.name}"
        idx = blocks.index(main)
        after = blocks[idx + 1:]
        epilogue = tuple(after) if after and not reductions.intersection(after) else ()
        producers = tuple(b for b in blocks[:idx] if b not in reductions)
        axes_ = tuple(main_stage.axes) + tuple(main_stage.reduce_axes)
        accesses = [Access(str(acc.base), shapes.get(str(acc.base), (1,) * len(acc.indices)),
                           tuple(tuple(_coef(i, a) for a in axes_) for i in acc.indices), itemsize)
                    for acc in main_stage.accesses()]
        accesses.append(Access(main, main_stage.shape,
                               tuple(tuple(1.0 if a == ax else 0.0 for a in axes_) for ax in main_stage.axes),
                               itemsize))
        packed, prefer, options = _packing(workload, anchor_instr, main_stage)
        lanes_ready = plain_last(main_stage) and unit_stride_last(main_stage)
        window = 0 if prefer or lanes_ready else \
            window_rows(main_stage.shape, main_stage.reduce_shape, unit_stride_last(main_stage))
        return KernelShape("reduction", main, main_stage.shape, main_stage.reduce_shape,
                           reuse_axes(main_stage), producers, epilogue, tuple(blocks), tuple(accesses),
                           workload.flops, packed, prefer, block_axis(options, packed), lanes_ready,
                           rowwise_kernel(extents), window)
    out_shape = tuple(nodes[workload.group.output].shape) or (1,)
    return KernelShape("injective", blocks[-1], out_shape, (), (), (), (), tuple(blocks), (), workload.flops)


def _packing(workload, instr, stage) -> tuple[tuple[int, int, int] | None, bool, tuple]:
    """The packed-layout option as :mod:`schedules.default` sees it: (axis, param, dim), whether it is chosen, and
    every packable (axis, param, dim)."""
    from schedules.lowering import packable_axes, unit_stride_last

    anchor = workload.group.nodes[0]
    consts = set(workload.constant_inputs())
    params = {name: workload.group.inputs.index(src) for name, src in zip(instr.inputs, anchor.inputs)
              if workload.group.inputs.index(src) in consts}
    options = packable_axes(stage, params)
    if not options:
        return None, False, ()
    from schedules import default
    from schedules.packed import pick_packed

    choice = pick_packed(options, stage.shape, unit_stride_last(stage))
    if choice is None:  # no axis fills whole vectors: offered to the search, not chosen by default
        return max(options, key=lambda o: stage.shape[o[0]]), False, options
    contiguous = unit_stride_last(stage) and stage.shape[-1] % VECTOR_LANES == 0
    ready = choice[0] == len(stage.shape) - 1 and contiguous  # blocked weights: packed whatever PREFER_SPATIAL says
    return choice, ready or not (contiguous and default.PREFER_SPATIAL), options
