"""Per-kernel profile of a model on the target: which fused groups dominate its latency, and how efficiently.

Each group (an op plus its fused epilogues) is built alone with the schedule the compiler would use and timed
with TVM's time_evaluator on random inputs (constants take their real values). The shares tell where tuning or
an operator rewrite pays off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ir.analysis import node_cost
from ir.graph import CONSTANT, Graph
from nacos.compiler import schedule_group
from schedules.packed import pack_constant, packed_inputs
from schedules.fusion import kernel_graph, kernel_groups
from schedules.tvm_env import make_target, tvm


@dataclass(frozen=True)
class KernelProfile:
    name: str
    ops: tuple[str, ...]
    nodes: tuple[str, ...]
    output_shape: tuple[int, ...]
    flops: int
    bytes: int
    seconds: float
    share: float
    tuned: bool

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["gflops"] = round(self.gflops, 3)
        return d


def profile(graph: Graph, target=None, schedules=None, number: int = 10, repeat: int = 5,
            layout: str | None = None) -> list[KernelProfile]:
    """Kernels of ``graph`` (after the compiler's layout selection) sorted by measured latency, largest first
    (median of ``repeat`` timings)."""
    graph = kernel_graph(graph, layout)
    tgt = make_target(target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    nodes = graph.node_map
    rows = []
    for k, group in enumerate(kernel_groups(graph)):
        mod, tuned = schedule_group(graph, group, schedules)
        with tgt:
            lib = tvm.compile(mod, tgt)
        packed = {p: (axis, lanes) for p, axis, lanes in packed_inputs(mod["main"])}
        args = []
        for p, name in enumerate(group.inputs):
            node = nodes[name]
            value = graph.params[name] if node.op == CONSTANT else \
                rng.standard_normal(node.shape).astype(node.dtype)
            if p in packed:
                args.append(tvm.runtime.tensor(pack_constant(value, *packed[p]), dev))
                continue
            args.append(tvm.runtime.tensor(np.ascontiguousarray(value).reshape(node.shape or (1,)), dev))
        out = nodes[group.output]
        args.append(tvm.runtime.tensor(np.zeros(out.shape or (1,), out.dtype), dev))
        timer = lib.mod.time_evaluator("main", dev, number=number, repeat=repeat)
        seconds = float(np.median(timer(*args).results))
        costs = [node_cost(graph, n) for n in group.nodes]
        rows.append((f"k{k:03d}_{group.name}", tuple(n.op for n in group.nodes), tuple(n.name for n in group.nodes),
                     out.shape, sum(c.flops for c in costs),
                     sum(c.bytes_read for c in costs[:1]) + out.type.nbytes, seconds, tuned))
    total = sum(r[6] for r in rows) or 1.0
    result = [KernelProfile(*r[:7], share=r[6] / total, tuned=r[7]) for r in rows]
    return sorted(result, key=lambda p: -p.seconds)


@dataclass(frozen=True)
class InSitu:
    """Where a whole-model call's time goes (medians over rounds, seconds): ``whole`` (plain calls, no
    instrumentation), ``kernels`` (summed time inside the model's kernels while the model runs, each kernel's own
    median in ``per_kernel``), ``builtins`` (the VM's own calls: allocations, views, shape checks) and
    ``instrumented`` (the whole call with the timing hooks, which cost a few µs per call)."""

    whole: float
    instrumented: float
    kernels: float
    builtins: float
    per_kernel: dict[str, float]

    @property
    def outside_kernels(self) -> float:
        """Share of a plain call spent outside the kernels (VM dispatch, builtins, thread hand-offs). Against the
        plain call, not the instrumented one: the hooks' own cost (a few µs per call, 5 ms on MobileViT-XXS's
        ~600 calls here) would count as outside."""
        return max(0.0, 1.0 - self.kernels / self.whole) if self.whole > 0 else 0.0

    def as_dict(self) -> dict:
        return {"whole_ms": self.whole * 1e3, "instrumented_ms": self.instrumented * 1e3,
                "kernels_ms": self.kernels * 1e3, "builtins_ms": self.builtins * 1e3,
                "outside_kernels_share": self.outside_kernels,
                "per_kernel_ms": {k: v * 1e3 for k, v in self.per_kernel.items()}}


def in_situ(compiled, *arrays: np.ndarray, rounds: int = 9) -> InSitu:
    """Time every kernel of ``compiled`` inside real whole-model calls (the Relax VM's instrument hook), beside
    plain calls in interleaved rounds. :func:`profile` times kernels alone, warm and on random data; the two
    together say whether a model loses time inside its kernels (cold caches, weights streamed from memory) or
    between them."""
    import time
    from collections import defaultdict

    vm = tvm.relax.VirtualMachine(compiled._module, tvm.cpu())  # its own VM: the hook stays off compiled's
    args = compiled._prepare(arrays)
    events: list[tuple[float, str, bool]] = []

    def hook(func, name, before, ret, *hook_args):  # noqa: ARG001 — the VM passes the call's arguments too
        events.append((time.perf_counter(), str(name), bool(before)))
        return 0  # 0: go on with the call as usual

    vm.set_instrument(hook)
    vm["main"](*args)  # warm-up
    whole, instrumented = [], []
    per_round: list[dict[str, float]] = []
    for r in range(max(1, rounds)):
        for instrument in ((False, True) if r % 2 == 0 else (True, False)):
            if instrument:
                events.clear()
                t0 = time.perf_counter()
                vm["main"](*args)
                instrumented.append(time.perf_counter() - t0)
                spent: dict[str, float] = defaultdict(float)
                start: dict[str, float] = {}
                for t, name, before in events:
                    if before:
                        start[name] = t
                    elif name in start:
                        spent[name] += t - start.pop(name)
                per_round.append(spent)
            else:
                t0 = time.perf_counter()
                compiled._vm["main"](*args)
                whole.append(time.perf_counter() - t0)
    names = sorted({n for spent in per_round for n in spent})
    median = {n: float(np.median([spent.get(n, 0.0) for spent in per_round])) for n in names}
    kernels = {n: s for n, s in median.items() if not n.startswith("vm.builtin.")}
    return InSitu(float(np.median(whole)), float(np.median(instrumented)), sum(kernels.values()),
                  sum(s for n, s in median.items() if n.startswith("vm.builtin.")), kernels)
