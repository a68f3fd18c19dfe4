"""Latency models for GOS: what a graph's kernels cost on the target, kernel by kernel.

A model is one method, ``kernels(graph) -> [KernelTime]`` (``latency(graph)`` is their sum); ``create(kind)``
builds one by name, so the API takes an instance or a string:

* ``measured`` — each kernel (an op plus its fused epilogues, exactly as ``nacos.compile`` partitions the graph)
  is built alone with the schedule the compiler would use — the best tuned schedule from a tuning database
  when ``db`` has one, else the default — and timed with TVM's time evaluator. Results are cached by workload
  key (op, attrs, shapes, target), so a kernel shared by many candidates is measured once; a kernel the
  database already measured is not re-measured (``source = "tuned-db"``).
* ``roofline`` — a prediction without the target: max(FLOPs / peak, bytes / bandwidth) + a launch overhead per
  kernel. Fast; used by tests and as a fallback where nothing can be measured.

A whole-model, side-by-side measurement (what reports quote) is :func:`operators.gos.report.measure_side_by_side`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ir.graph import CONSTANT, Graph


@dataclass(frozen=True)
class KernelTime:
    name: str
    nodes: tuple[str, ...]
    ops: tuple[str, ...]
    workload: str
    flops: int
    bytes: int
    seconds: float
    source: str          # measured | tuned-db | roofline

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0


class LatencyModel:
    kind = "base"

    def kernels(self, graph: Graph) -> list[KernelTime]:
        raise NotImplementedError

    def latency(self, graph: Graph) -> float:
        return float(sum(k.seconds for k in self.kernels(graph)))


_KINDS: dict[str, Callable[..., LatencyModel]] = {}


def register(kind: str):
    def deco(cls):
        cls.kind = kind
        _KINDS[kind] = cls
        return cls
    return deco


def create(kind: "str | LatencyModel" = "measured", **kwargs: Any) -> LatencyModel:
    if isinstance(kind, LatencyModel):
        return kind
    if kind not in _KINDS:
        raise ValueError(f"unknown latency model {kind!r}; choose from {', '.join(sorted(_KINDS))}")
    return _KINDS[kind](**kwargs)


def _group_cost(graph: Graph, group) -> tuple[int, int]:
    """(FLOPs of every node of the kernel, bytes: the anchor's inputs read once + the kernel's output written)."""
    from operators.gos.graphedit import node_cost   # memoized: candidates re-cost the same nodes many times

    costs = [node_cost(graph, n) for n in group.nodes]
    out = graph.node(group.output)
    return sum(c.flops for c in costs), costs[0].bytes_read + out.type.nbytes


OP_LAYOUT = "nchw"  # latencies per operator of the graph as written (see _workloads)


def _workloads(graph: Graph, target: Any):
    """The kernels of ``graph`` itself (NCHW): their nodes are the ones GOS rewrites, which the blocked layout's
    renamed twins are not."""
    from schedules.workload import workloads_from_graph

    return workloads_from_graph(graph, target, layout=OP_LAYOUT)


@register("roofline")
class Roofline(LatencyModel):
    """max(FLOPs / ``peak_gflops``, bytes / ``bandwidth_gbs``) + ``overhead_s`` per kernel."""

    def __init__(self, peak_gflops: float = 40.0, bandwidth_gbs: float = 10.0, overhead_s: float = 2e-6,
                 target: Any = None) -> None:
        self.peak, self.bandwidth, self.overhead = peak_gflops * 1e9, bandwidth_gbs * 1e9, overhead_s

    def kernels(self, graph: Graph) -> list[KernelTime]:
        from schedules.fusion import kernel_groups

        out = []
        for k, group in enumerate(kernel_groups(graph)):
            flops, nbytes = _group_cost(graph, group)
            secs = max(flops / self.peak, nbytes / self.bandwidth) + self.overhead
            out.append(KernelTime(f"k{k:03d}_{group.name}", tuple(n.name for n in group.nodes),
                                  tuple(n.op for n in group.nodes), "", flops, nbytes, secs, "roofline"))
        return out


@register("measured")
class Measured(LatencyModel):
    """Per-kernel TVM timing with the compiler's schedule (tuned from ``db`` where it has one); cached."""

    def __init__(self, target: Any = None, db: Any = None, number: int = 10, repeat: int = 5) -> None:
        self.target, self.number, self.repeat = target, number, repeat
        if isinstance(db, str):
            from schedules.database import Database

            db = Database(db, readonly=True)
        self.db = db
        self.cache: dict[str, tuple[float, str]] = {}
        self._checked_db = False

    def kernels(self, graph: Graph) -> list[KernelTime]:
        provider = self.db.schedules(graph, self.target, layout=OP_LAYOUT) if self.db is not None else None
        out = []
        workloads = _workloads(graph, self.target)
        if self.db is not None and not self._checked_db and workloads:  # once: kernels() runs per candidate
            self._checked_db = True
            if not any(self.db.best(wl) for _, wl in workloads):
                warnings.warn(f"the tuning database {self.db.path} holds none of {graph.name}'s kernels in the "
                              f"{OP_LAYOUT} layout GOS times; tune it with `nacos tune MODEL --layout {OP_LAYOUT}` "
                              "(default schedules are timed meanwhile)", stacklevel=2)
        for k, (group, wl) in enumerate(workloads):
            if wl.key not in self.cache:
                best = self.db.best(wl) if self.db is not None else None
                self.cache[wl.key] = (best[1], "tuned-db") if best else \
                    (self._time(graph, group, provider), "measured")
            secs, source = self.cache[wl.key]
            flops, nbytes = _group_cost(graph, group)
            out.append(KernelTime(f"k{k:03d}_{group.name}", tuple(n.name for n in group.nodes),
                                  tuple(n.op for n in group.nodes), wl.key, flops, nbytes, secs, source))
        return out

    def _time(self, graph: Graph, group, schedules) -> float:
        """One kernel built alone and timed on random inputs (constants take their values), as nacos.profile."""
        from nacos.compiler import schedule_group
        from schedules.packed import pack_constant, packed_inputs
        from schedules.tvm_env import make_target, tvm

        tgt, dev = make_target(self.target), tvm.cpu()
        mod, _ = schedule_group(graph, group, schedules)
        with tgt:
            lib = tvm.compile(mod, tgt)
        packed = {p: (axis, lanes) for p, axis, lanes in packed_inputs(mod["main"])}
        rng = np.random.default_rng(0)
        nodes = graph.node_map
        args = []
        for p, name in enumerate(group.inputs):
            node = nodes[name]
            value = graph.params[name] if node.op == CONSTANT else rng.standard_normal(node.shape).astype(node.dtype)
            value = pack_constant(value, *packed[p]) if p in packed else \
                np.ascontiguousarray(value).reshape(node.shape or (1,))
            args.append(tvm.runtime.tensor(value, dev))
        out = nodes[group.output]
        args.append(tvm.runtime.tensor(np.zeros(out.shape or (1,), out.dtype), dev))
        timer = lib.mod.time_evaluator("main", dev, number=self.number, repeat=self.repeat)
        return float(np.median(timer(*args).results))
