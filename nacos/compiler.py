"""Whole-model compile: graph → fused groups → scheduled PrimFuncs → one Relax module → :class:`Compiled`.

Each group is lowered generically from its math instructions (:mod:`schedules.lowering`), scheduled (a tuned
schedule from the caller when there is one, else :func:`schedules.default.default_schedule`), and called from a
Relax ``main`` with ``call_tir``. Weights are ``relax.const`` so the exported .so is self-contained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ir.graph import CONSTANT, Graph
from ir.verify import verify
from nacos.compiled import Compiled, KernelInfo
from schedules.default import default_schedule
from schedules.packed import pack_constant, packed_inputs
from schedules.fusion import is_view, kernel_graph, partition
from schedules.lowering import Group, lower_group
from schedules.tvm_env import make_target, tvm

# A schedule provider returns a scheduled IRModule for a group's PrimFunc, or None to use the default.
ScheduleProvider = Callable[[Group, "tvm.tirx.PrimFunc"], "tvm.IRModule | None"]

OPAQUE = 8  # Relax op_pattern kOpaque: keeps the default pipeline from fusing our PrimFuncs together


@dataclass
class CompileStats:
    groups: int = 0
    lower_s: float = 0.0
    schedule_s: float = 0.0
    build_s: float = 0.0
    tuned: int = 0
    kernels: list = field(default_factory=list)


def compile(graph: Graph, target=None, schedules: ScheduleProvider | Mapping | None = None,
            fuse: bool = True, layout: str | None = None, chains: bool | None = None) -> Compiled:
    """Compile ``graph`` for ``target`` (default: this CPU with its real mcpu) into a runnable :class:`Compiled`.

    ``schedules`` may be a callable ``(group, primfunc) -> IRModule | None`` (e.g. a tuning database's best
    schedules) or a mapping from group output name to a scheduled IRModule; groups it has nothing for get the
    default schedule. ``layout``: ``blocked`` (convolution chains in NCHW[b]c) or ``nchw``; default
    ``NACOS_LAYOUT`` or blocked (:func:`schedules.fusion.kernel_graph`). Inputs and outputs stay NCHW either way.
    ``chains``: a blocked depthwise conv and the 1×1 conv that alone reads it become one kernel (default
    ``NACOS_CHAINS`` or on; :data:`schedules.fusion.CHAINS`).
    """
    relax = tvm.relax
    verify(graph)
    model = graph
    graph = kernel_graph(graph, layout)
    tgt = make_target(target)
    stats = CompileStats()
    nodes = graph.node_map
    groups = partition(graph, fuse=fuse, chains=chains)
    stats.groups = len(groups)

    bb = relax.BlockBuilder()
    params = [relax.Var(_var_name(n), relax.TensorType(list(nodes[n].shape) or [1], nodes[n].dtype))
              for n in graph.inputs]
    values: dict[str, object] = dict(zip(graph.inputs, params))
    kernels: list[KernelInfo] = []
    with bb.function("main", params):
        with bb.dataflow():
            for group in groups:
                if is_view(graph, group):  # same bytes, new shape: Relax makes it a view, no kernel and no copy
                    out = nodes[group.output]
                    values[group.output] = bb.emit(relax.op.reshape(values[group.inputs[0]], list(out.shape) or [1]))
                    continue
                mod, tuned = schedule_group(graph, group, schedules, stats)
                stats.tuned += tuned
                name = f"k{len(kernels):03d}_{group.name}"[:60]  # numbered as kernel_groups / the profile
                prim = mod["main"].with_attr("global_symbol", name).with_attr("op_pattern", OPAQUE)
                gv = bb.add_func(prim, name)
                packed = {p: (axis, lanes) for p, axis, lanes in packed_inputs(prim)}
                args = []
                for p, i in enumerate(group.inputs):
                    if p in packed:  # this kernel reads the constant in a blocked layout: pack it once, here
                        args.append(relax.const(pack_constant(graph.params[i], *packed[p]), nodes[i].dtype))
                        continue
                    if i not in values:
                        node = nodes[i]
                        assert node.op == CONSTANT, f"{i} used before it is computed"
                        values[i] = relax.const(_as_buffer(graph.params[i]), node.dtype)
                    args.append(values[i])
                out = nodes[group.output]
                values[group.output] = bb.emit(relax.call_tir(
                    gv, args, relax.TensorType(list(out.shape) or [1], out.dtype)))
                kernels.append(KernelInfo(name, tuple(n.name for n in group.nodes), tuple(n.op for n in group.nodes),
                                          group.output))
            for o in graph.outputs:  # an output that is a constant (folded at import) is no kernel's
                if o not in values:
                    assert nodes[o].op == CONSTANT, f"output {o} is never computed"
                    values[o] = relax.const(_as_buffer(graph.params[o]), nodes[o].dtype)
            outs = [values[o] for o in graph.outputs]
            result = bb.emit_output(relax.Tuple(outs) if len(outs) > 1 else outs[0])
        bb.emit_func_output(result)
    mod = bb.get()
    t0 = time.perf_counter()
    with tgt:
        exe = tvm.compile(mod, tgt)
    stats.build_s = time.perf_counter() - t0
    stats.kernels = kernels
    return Compiled.from_executable(exe, model, str(tgt), kernels, stats=stats)


def schedule_group(graph: Graph, group: Group, schedules=None, stats: CompileStats | None = None):
    """(scheduled IRModule, whether it came from ``schedules``) for one group."""
    t0 = time.perf_counter()
    func, hint = lower_group(graph, group)
    t1 = time.perf_counter()
    mod = _provided(schedules, group, func)
    tuned = mod is not None
    if mod is None:
        mod = default_schedule(func, hint).mod
    if stats is not None:
        stats.lower_s += t1 - t0
        stats.schedule_s += time.perf_counter() - t1
    return mod, tuned


def _provided(schedules, group: Group, func):
    if schedules is None:
        return None
    if callable(schedules):
        return schedules(group, func)
    return schedules.get(group.output)


def _as_buffer(value):
    import numpy as np

    arr = np.ascontiguousarray(value)
    return arr.reshape(1) if arr.ndim == 0 else arr


def _var_name(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "v_" + out
