"""What a GOS run leaves behind: per-op effects, side-by-side timings, pareto.json, report.md and artifacts.

    OUT/pareto.json                  original + Pareto members: choices, accuracies, latency, speedup, FLOPs
    OUT/report.md                    per member, per replaced op: original and replacement instructions, effects
    OUT/members/<k>/compiled/        ``Compiled.export`` of the member (self-contained model.so + nacos.json)
    OUT/members/<k>/model.onnx       ``ir.exporters.to_onnx`` of the member (trained weights)

Latency ratios come from :func:`measure_side_by_side`: every model is compiled with the same schedules and timed
in interleaved rounds, and :func:`speedups` turns those rounds into speedups. The machine is shared: load only ever
slows a run down, and it can slow the larger models 3-4x for a stretch of rounds while a tiny member is not slowed
at all, so neither the ratio of medians nor the median of per-round ratios is safe (both land in the slow mode
when most rounds are slow). A speedup is the ratio of the fastest rounds, fastest(original) / fastest(member); the
per-round ratios original/member (both timed in the same round) are reported as its spread, and when some model's
slowest round is more than ``BUSY_SPREAD`` times its fastest the run carries a warning that the machine was busy.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ir.graph import Graph


def instruction_text(graph: Graph, node_name: str) -> str:
    """``%node = op(inputs) {attrs} -> type`` and its math instruction, inputs named after graph nodes."""
    from ir.instruction import rename_inputs
    from ir.registry import get_op

    nodes = graph.node_map
    node = nodes[node_name]
    in_types = tuple(nodes[i].type for i in node.inputs)
    instr = rename_inputs(get_op(node.op).instruction(node.attr_dict, in_types, node.type), node.inputs)
    attrs = ", ".join(f"{k}={v}" for k, v in node.attrs)
    head = f"%{node.name} = {node.op}({', '.join('%' + i for i in node.inputs)})" + (f" {{{attrs}}}" if attrs else "")
    return f"{head} -> {node.type}\n" + "\n".join("    " + line for line in str(instr).splitlines())


@dataclass(frozen=True)
class OpEffect:
    """One replaced op of a Pareto member, judged alone (only this op replaced, before any fine-tuning)."""

    node: str
    rewrite: str
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    latency_before: float          # the kernels that held the removed nodes
    latency_after: float           # the kernels that hold the new nodes
    transfer_accuracy: float       # val accuracy with only this op replaced: transferred (and calibrated), not tuned
    original: str                  # instruction_text of the removed nodes
    replacement: str               # instruction_text of the new nodes


def op_effect(graph: Graph, node: str, rewrite: str, latency_model: Any,
              accuracy: Callable[[Graph], float], transfer: Callable[[dict], Graph] | None = None) -> OpEffect:
    """The effect of replacing ``node`` alone; ``transfer(choices)`` builds the rewritten graph (default:
    :func:`operators.gos.apply`; the search passes its apply + calibration)."""
    from operators.gos.rewrites import apply, region
    from operators.gos.space import evaluate_rewrite

    after = (transfer or (lambda ch: apply(graph, ch)))({node: rewrite})
    cand = evaluate_rewrite(graph, node, rewrite)
    gone, added = region(graph, after, node)

    def kernel_time(g: Graph, names: set[str]) -> float:
        return sum(k.seconds for k in latency_model.kernels(g) if names & set(k.nodes))

    return OpEffect(node, rewrite, cand.flops_before, cand.flops_after, cand.params_before, cand.params_after,
                    kernel_time(graph, {n.name for n in gone}), kernel_time(after, {n.name for n in added}),
                    accuracy(after), "\n".join(instruction_text(graph, n.name) for n in gone),
                    "\n".join(instruction_text(after, n.name) for n in added))


def measure_side_by_side(graphs: Mapping[str, Graph], schedules_for: Callable[[Graph], Any] | None = None,
                         rounds: int = 15, number: int = 20, warmup: int = 3,
                         compiled: dict | None = None) -> dict[str, dict]:
    """Compile every graph (``schedules_for(graph)`` gives each its ``schedules=``: the same source for all) and
    time them in interleaved rounds with ``Compiled.benchmark`` (timed inside TVM).

    Returns name → {median_s, min_s, max_s, rounds, samples_s} (``samples_s``: one time per round, in round
    order, for :func:`speedups`); the order of the models alternates every round so none
    always goes first. ``compiled``, when given, receives name → the ``Compiled`` model (to export it)."""
    import numpy as np

    import nacos

    models = {}
    for name, g in graphs.items():
        model = nacos.compile(g, schedules=schedules_for(g) if schedules_for else None)
        inputs = [np.random.default_rng(0).standard_normal(t.shape).astype(t.dtype) for t in g.input_types()]
        model.benchmark(*inputs, number=warmup, repeat=1)
        models[name] = (model, inputs)
        if compiled is not None:
            compiled[name] = model
    samples: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            model, inputs = models[name]
            samples[name].append(model.benchmark(*inputs, number=number, repeat=1)[0])
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "rounds": len(v),
                "samples_s": list(v)} for k, v in samples.items()}


BUSY_SPREAD = 2.0   # a model's slowest round over its fastest: above this the machine was busy while timing


def _quartiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"min": xs[0], "q1": q[0], "median": q[1], "q3": q[2], "max": xs[-1]}


def speedups(timing: Mapping[str, Mapping], base: str = "original") -> dict:
    """Speedups over ``base`` from :func:`measure_side_by_side`'s rounds, robust to a busy machine.

    Each member's ``speedup`` is fastest(base) / fastest(member) (``measured_s``: the member's fastest round);
    ``speedup_rounds`` is {min, q1, median, q3, max} of the per-round ratios base/member, timed in the same
    round — their spread is how uncertain the speedup is. ``busy`` is set (with a one-line ``warning``) when some
    model's slowest round is more than ``BUSY_SPREAD`` × its fastest (``spread``, of model ``spread_model``)."""
    orig = timing[base]
    members = {}
    for name, t in timing.items():
        if name == base:
            continue
        ratios = [o / m for o, m in zip(orig["samples_s"], t["samples_s"])]
        members[name] = {"measured_s": t["min_s"], "median_s": t["median_s"], "speedup": orig["min_s"] / t["min_s"],
                         "speedup_rounds": _quartiles(ratios)}
    spread_model, spread = max(((k, t["max_s"] / t["min_s"]) for k, t in timing.items()), key=lambda kv: kv[1])
    busy = spread > BUSY_SPREAD
    warning = (f"the machine was busy while timing ({spread_model}'s slowest round took {spread:.1f}x its fastest); "
               "the speedups (fastest rounds) are uncertain, see the per-round range") if busy else None
    return {"original_s": orig["min_s"], "original_median_s": orig["median_s"], "members": members,
            "estimator": "fastest round", "spread": spread, "spread_model": spread_model, "busy": busy,
            "warning": warning}


def write_artifacts(out: Path, key: str, graph: Graph, schedules_for: Callable[[Graph], Any] | None = None,
                    model: Any = None) -> dict:
    """compiled/ and model.onnx for one member (``model``: its ``Compiled``, else compiled here); returns their
    paths relative to ``out``."""
    import nacos
    from ir.exporters import to_onnx

    folder = out / "members" / key
    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = nacos.compile(graph, schedules=schedules_for(graph) if schedules_for else None)
    model.export(folder / "compiled")
    to_onnx(graph, folder / "model.onnx")
    return {"compiled": str((folder / "compiled").relative_to(out)), "onnx": str((folder / "model.onnx").relative_to(out))}


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _rounds(m: dict) -> str:
    r = m.get("speedup_rounds")
    return f"{r['min']:.2f}–{r['max']:.2f}× (IQR {r['q1']:.2f}–{r['q3']:.2f}×)" if r else "–"


def render_markdown(payload: dict, effects: Mapping[str, list[OpEffect]]) -> str:
    """report.md from the pareto.json payload and the per-op effects of each member."""
    orig = payload["original"]
    timing = payload["timing"]
    lines = [f"# GOS report: {payload['graph']}", "",
             f"Dataset `{payload['dataset']}`; latency model `{payload['latency_model']}`; "
             f"whole-model speedups measured side by side ({timing['rounds']} interleaved rounds, "
             f"{timing['schedules']} schedules): fastest round of the original over the member's fastest round, "
             "with the range of the per-round ratios. Original: test accuracy "
             f"{_pct(orig['test_accuracy'])}, val {_pct(orig['val_accuracy'])}, {orig['flops'] / 1e6:.2f} MFLOPs."]
    if timing.get("warning"):
        lines += ["", f"**Warning:** {timing['warning']}."]
    lines += ["", "## Pareto set", "",
              "| member | replaced ops | speedup | per-round speedups | test acc (Δ) | val acc | MFLOPs | params |",
              "|---|---|---|---|---|---|---|---|"]
    for m in payload["pareto"]:
        delta = (m["test_accuracy"] - orig["test_accuracy"]) * 100
        ops = ", ".join(f"`{n}`→`{r}`" for n, r in m["choices"].items())
        lines.append(f"| {m['id']} | {ops} | {m['speedup']:.2f}× | {_rounds(m)} | {_pct(m['test_accuracy'])} "
                     f"({delta:+.1f} pt) | {_pct(m['val_accuracy'])} | {m['flops'] / 1e6:.2f} | {m['params']} |")
    if payload.get("dropped"):
        lines += ["", "Pareto members are chosen by validation accuracy and search latency; after the final "
                      "fine-tune the set is filtered again on the same objectives:", ""]
        for d in payload["dropped"]:
            lines.append(f"* {dropped_text(d)}")
    for m in payload["pareto"]:
        lines += ["", f"## {m['id']}: {m['speedup']:.2f}× faster, test accuracy "
                      f"{(m['test_accuracy'] - orig['test_accuracy']) * 100:+.1f} pt", ""]
        for e in effects.get(m["key"], []):
            lines += [f"### `{e.node}` → `{e.rewrite}`", "",
                      f"FLOPs {e.flops_before / 1e6:.3f} M → {e.flops_after / 1e6:.3f} M "
                      f"({e.flops_before / max(e.flops_after, 1):.2f}× fewer); params {e.params_before} → "
                      f"{e.params_after}; kernel latency {e.latency_before * 1e6:.1f} µs → "
                      f"{e.latency_after * 1e6:.1f} µs; val accuracy with only this op replaced (weights transferred and "
                      f"calibrated, not fine-tuned): {_pct(e.transfer_accuracy)}.", "",
                      "Original instruction:", "", "```", e.original, "```", "",
                      "Replacement instructions:", "", "```", e.replacement, "```"]
    return "\n".join(lines) + "\n"


def dropped_text(d: dict) -> str:
    """One line for a member dropped from the Pareto set after the final fine-tune (``payload["dropped"]``)."""
    return (f"`{d['key']}` dropped: dominated by {d['dominated_by']} after the final fine-tune (val accuracy "
            f"{_pct(d['val_accuracy'])} vs {_pct(d['by_val_accuracy'])}, search latency "
            f"{d['latency_s'] * 1e6:.1f} vs {d['by_latency_s'] * 1e6:.1f} µs)")


def write_report(out: Path, payload: dict, effects: Mapping[str, list[OpEffect]]) -> None:
    payload = dict(payload)
    payload["effects"] = {k: [asdict(e) for e in v] for k, v in effects.items()}
    from nacos.jsonsafe import dumps

    (out / "pareto.json").write_text(dumps(payload, indent=2))  # a failed candidate's latency is inf: null
    (out / "report.md").write_text(render_markdown(payload, effects))
