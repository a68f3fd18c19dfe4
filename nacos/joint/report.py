"""What ``nacos optimize`` leaves behind, written from its result payload (the dict saved as ``pareto.json``).

    OUT/pareto.json        the payload itself: config, stats, the front, every measured candidate, the baseline
    OUT/pareto.png         accuracy vs measured latency: all measured candidates, the front, the two-stage front
    OUT/report.md          what was run, the front, the member to use, the baseline comparison, the budget verdict
    OUT/members/<id>/      each front member's ``Compiled.export`` artifact (written by the optimizer, linked here)

Every latency shown is a measured one; the predicted latency sits next to it only so the reader can judge how far
the search's latency model can be trusted. Accuracy is the test accuracy; the front was chosen on validation.

Two measured latencies per front member: the final one (``latency_final_ms``: the median of the interleaved rounds
in which the front members and their default-schedule builds were timed together at the end of the run; the
default latency and the speedup come from the same rounds, so speedup = default / final), shown as "latency", and
the search's single timing (``latency_ms``, with which the search chose the front), shown as "search latency".
Tables, the best member and the baseline comparison use the final latency (the search's where a member has none);
the plot shows the search's timings, the only ones every measured candidate has.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from nacos.joint.result import best_within, final_latency

# The optimizer's ``memory_max_mb`` budget is in binary megabytes (nacos.joint.evaluate); the report must agree.
MB = 2**20
JOINT_COLOR, BASELINE_COLOR, MEASURED_COLOR = "#d62728", "#1f77b4", "#b0b0b0"  # nacos red as in bench_report
# Config keys in the order a reader wants them; any other key follows, sorted.
CONFIG_ORDER = ("space", "dataset", "target", "fidelity", "budget_minutes", "latency_max_ms", "memory_max_mb",
                "population", "seed")


# ---- formatting ----------------------------------------------------------------------------------------------
def fmt_ms(ms: float | None) -> str:
    """Milliseconds to 3 significant digits without exponents (tables mix 0.0412 and 1234 ms)."""
    if ms is None:
        return "—"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms <= 0:
        return "0"
    return f"{ms:.{2 - math.floor(math.log10(ms))}f}"  # keeps trailing zeros, unlike :.3g (0.500, not 0.5)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.1f} s"


def _value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, (dict, list, tuple)):
        return f"`{json.dumps(v, default=str)}`"
    return f"`{v}`" if isinstance(v, str) else str(v)


# ---- selection ---------------------------------------------------------------------------------------------
def by_latency(members: Iterable[dict]) -> list[dict]:
    return sorted(members, key=lambda m: (final_latency(m), -m["accuracy"]))


def best_member(payload: dict) -> dict | None:
    """The most accurate front member that meets the latency and memory budgets (ties: the faster one)."""
    c = payload["config"]
    return best_within(payload["pareto"], c.get("latency_max_ms"), c.get("memory_max_mb"))


def dominated(front: list[dict], other: list[dict]) -> int:
    """How many of ``other`` are dominated by some member of ``front`` (no slower, no less accurate, one strictly)."""
    def beats(a: dict, b: dict) -> bool:
        la, lb = final_latency(a), final_latency(b)
        return la <= lb and a["accuracy"] >= b["accuracy"] and (la < lb or a["accuracy"] > b["accuracy"])

    return sum(any(beats(a, b) for a in front) for b in other)


# ---- plot --------------------------------------------------------------------------------------------------
def _title(payload: dict) -> str:
    c = payload["config"]
    return f"nacos optimize ({payload['method']}): {c['space']} on {c['dataset']}, target {c['target']}"


def plot_pareto(payload: dict, path: str | Path) -> Path:
    """Accuracy vs measured latency: measured candidates as light points, the front as a step line (the
    accuracy reachable at each latency), the two-stage baseline in another colour, the latency budget dashed."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 5.5), dpi=120)
    lats: list[float] = []

    def draw(run: dict, color: str, label: str, light: str) -> None:
        # a failed measurement has no latency or accuracy to draw
        ok = [m for m in run.get("measured", []) if m.get("latency_ms") is not None and m.get("accuracy") is not None]
        pts = [m for m in ok if not m.get("front")]
        if pts:
            ax.scatter([m["latency_ms"] for m in pts], [m["accuracy"] * 100 for m in pts], s=14, color=light,
                       alpha=0.6, label=f"{label}: measured ({len(run['measured'])})", zorder=1)
        front = sorted(run.get("pareto", []), key=lambda m: (m["latency_ms"], -m["accuracy"]))
        if front:
            x, y = [m["latency_ms"] for m in front], [m["accuracy"] * 100 for m in front]
            # the front is non-dominated in (validation error, latency, memory), so test accuracy need not rise
            # with latency along it: the line is the best test accuracy reachable within each latency (running
            # maximum, "post" steps), the markers are the members themselves
            ax.step(x, np.maximum.accumulate(y), where="post", color=color, lw=1.6, zorder=2)
            ax.scatter(x, y, color=color, s=28, label=f"{label}: front ({len(front)})", zorder=3)
            if len(front) <= 12:  # beyond that the ids only hide the points
                for m in front:
                    ax.annotate(m["id"], (m["latency_ms"], m["accuracy"] * 100), xytext=(4, -10),
                                textcoords="offset points", fontsize=7, color=color)
        lats.extend(m["latency_ms"] for m in [*ok, *front])

    if payload.get("baseline"):
        draw(payload["baseline"], BASELINE_COLOR, "two-stage", "#aec7e8")
    draw(payload, JOINT_COLOR, payload["method"], MEASURED_COLOR)
    budget = payload["config"].get("latency_max_ms")
    if budget is not None:
        ax.axvline(budget, color="black", ls="--", lw=1, label=f"latency budget {fmt_ms(budget)} ms")
        lats.append(budget)
    positive = [v for v in lats if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_xscale("log")
    ax.margins(x=0.08)  # room for the id labels right of the slowest point
    if not lats:
        ax.text(0.5, 0.5, "no candidate was measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency measured during the search (ms" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(_title(payload), fontsize=10)
    ax.grid(alpha=0.3, which="major")
    if ax.get_legend_handles_labels()[0]:
        # beside the axes: inside, it covered the dominated points, which lie below and right of the front
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- markdown ----------------------------------------------------------------------------------------------
FRONT_TABLE_NOTE = (
    "*latency* and *default schedules*: medians of the same interleaved rounds at the end of the run, in which "
    "every front member and the same trained network compiled with default schedules were timed together; "
    "*tuned speedup* = default / latency. *search latency*: the one timing taken when the search measured the "
    "member (the front was chosen with it; *predicted* is the search's estimate of it); single timings on a busy "
    "machine can be far off. — : not timed at the end of the run")


def _front_table(members: list[dict]) -> list[str]:
    lines = ["| id | test acc | val acc | latency (ms) | default schedules (ms) | tuned speedup | "
             "search latency (ms) | predicted (ms) | params | memory (MB) | FLOPs | tuned kernels | artifact |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in by_latency(members):
        final, default = m.get("latency_final_ms"), m.get("latency_default_ms")
        # the default and the speedup are shown only with the latency of the same rounds (a default timed at
        # another time, e.g. by the baseline's stage 1, is no fair comparison): speedup = default / latency
        paired = final is not None and final > 0 and default is not None
        speedup = f"{default / final:.2f}×" if paired else "—"
        artifact = f"[{m['artifact']}]({m['artifact']})" if m.get("artifact") else "—"
        lines.append(f"| {m['id']} | {_pct(m['accuracy'])} | {_pct(m.get('val_accuracy'))} | "
                     f"{fmt_ms(final)} | {fmt_ms(default if paired else None)} | {speedup} | "
                     f"{fmt_ms(m['latency_ms'])} | {fmt_ms(m.get('latency_predicted_ms'))} | "
                     f"{_si(m['params'])} | {m['memory_bytes'] / MB:.2f} | {_si(m['flops'])} | "
                     f"{m['tuned_kernels']}/{m['kernels']} | {artifact} |")
    return lines + ["", FRONT_TABLE_NOTE + "."]


def _latency_text(m: dict) -> str:
    """A member's latency as the prose of the report gives it: the final one, or the search's, said so."""
    if m.get("latency_final_ms") is not None:
        return f"{fmt_ms(m['latency_final_ms'])} ms"
    return f"{fmt_ms(m['latency_ms'])} ms (search timing)"


def _short(m: dict | None) -> str:
    return "—" if m is None else f"{m['id']} {_pct(m['accuracy'])} @ {_latency_text(m)}"


def _baseline_section(payload: dict) -> list[str]:
    base = payload["baseline"]
    ours, theirs = by_latency(payload["pareto"]), by_latency(base.get("pareto", []))
    label = payload["method"]
    lines = ["## Against the two-stage baseline", "",
             "The baseline searches architectures first and tunes the schedules of the chosen ones afterwards; "
             "both fronts' latencies are measured on the same target (the final side-by-side timing of each member, "
             "the search's timing where there is none).", ""]
    hv, base_hv = payload["stats"].get("hypervolume"), base.get("stats", {}).get("hypervolume")
    if hv is not None or base_hv is not None:
        fmt = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
        lines.append(f"- Hypervolume: {label} {fmt(hv)}, two-stage {fmt(base_hv)} (higher is better).")
    lines += [f"- {dominated(ours, theirs)} of the two-stage front's {len(theirs)} members are dominated by the "
              f"{label} front; {dominated(theirs, ours)} of the {label} front's {len(ours)} by the two-stage front.",
              f"- Best under the budget: {label} {_short(best_member(payload))}; two-stage "
              f"{_short(best_member({**base, 'config': payload['config']}))}.", "",
              f"| {label} | test acc | latency (ms) | two-stage | test acc | latency (ms) |",
              "|---|---|---|---|---|---|"]
    for i in range(max(len(ours), len(theirs))):
        cells = []
        for front in (ours, theirs):
            m = front[i] if i < len(front) else None
            cells += ["", "", ""] if m is None else [m["id"], _pct(m["accuracy"]), fmt_ms(final_latency(m))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(payload: dict) -> str:
    """report.md as a string, from the pareto.json payload."""
    c, s = payload["config"], payload["stats"]
    how = ("architecture and per-kernel schedules searched together, each candidate judged by the latency of its "
           "tuned code" if payload["method"] == "joint" else
           "architectures searched first, schedules tuned for the chosen ones afterwards")
    lines = [f"# {_title(payload)}", "", f"Method `{payload['method']}`: {how}. Fidelity `{c.get('fidelity')}`; "
             f"every latency below is measured on `{c['target']}`.", "", "## Run", "", "| setting | value |",
             "|---|---|"]
    keys = [k for k in CONFIG_ORDER if k in c] + sorted(k for k in c if k not in CONFIG_ORDER)
    lines += [f"| {k} | {_value(c[k])} |" for k in keys]
    lines += ["", f"{s.get('evaluations', 0)} candidates evaluated over {s.get('generations', 0)} generations in "
              f"{_duration(s.get('seconds', 0.0))}; {s.get('measured', 0)} whole models and "
              f"{s.get('kernel_measurements', 0)} kernel schedules measured.", ""]
    lm = s.get("latency_model")
    if lm:
        tau, mape = lm.get("kendall_tau"), lm.get("mape")
        lines += [f"Latency model (predicted vs measured whole-model latency, {lm.get('n', 0)} measured candidates): "
                  f"Kendall τ {'—' if tau is None else f'{tau:.3f}'}, "
                  f"MAPE {'—' if mape is None else f'{mape * 100:.1f}%'}.", ""]

    front = payload["pareto"]
    lines += [f"## Pareto front ({len(front)} members)", "", "![Pareto front](pareto.png)", ""]
    lines += (_front_table(front) if front else ["The front is empty: no candidate was measured."]) + [""]

    best = best_member(payload)
    budgeted = c.get("latency_max_ms") is not None or c.get("memory_max_mb") is not None
    limits = " and ".join(x for x in (
        c.get("latency_max_ms") is not None and f"latency ≤ {fmt_ms(c['latency_max_ms'])} ms",
        c.get("memory_max_mb") is not None and f"memory ≤ {c['memory_max_mb']:g} MB") if x)
    lines += ["## Best member" + (" under the budget" if budgeted else ""), ""]
    if best is None:
        lines += [f"No front member meets {limits}." if front else "No member to recommend.", ""]
    else:
        why = f"the most accurate member with {limits}" if budgeted else "the most accurate member (no budget set)"
        lines += [f"**{best['id']}**, {why}: test accuracy {_pct(best['accuracy'])}, "
                  f"latency {_latency_text(best)}, {best['memory_bytes'] / MB:.2f} MB, "
                  f"{best['tuned_kernels']}/{best['kernels']} kernels tuned.", ""]
        if best.get("schedules"):
            lines += ["<details><summary>its schedules</summary>", "", "| kernel | workload | point |",
                      "|---|---|---|"]
            lines += [f"| {x['kernel']} | `{x['workload']}` | `{x['point']}` |" for x in best["schedules"]]
            lines += ["", "</details>", ""]

    bv = payload.get("budget_violations")
    if bv:
        lines += ["## Budget not met", "", bv["message"], ""]
        if bv.get("closest"):
            lines += ["Closest candidates:", ""] + _front_table(bv["closest"]) + [""]

    if payload.get("baseline"):
        lines += _baseline_section(payload)

    # with no member in budget, show the most accurate one: the snippet is about loading, not about choosing
    use = best or (max(front, key=lambda m: m["accuracy"]) if front else None)
    if use is not None and use.get("artifact"):
        lines += ["## How to use", "", "Paths are relative to this folder; an artifact needs only tvm and numpy.", "",
                  "```python", "import nacos", "", f"model = nacos.Compiled.load(\"{use['artifact']}\")",
                  "outputs = model(x)  # x: a numpy array shaped like the model's input; returns a list of arrays",
                  "```", ""]
        if use.get("onnx"):
            lines += [f"The trained network is also at [{use['onnx']}]({use['onnx']}) (ONNX).", ""]
    return "\n".join(lines)


def write_report(payload: dict, path: str | Path) -> Path:
    """Write report.md (see :func:`render_markdown`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(payload), encoding="utf-8")
    return path


def _jsonable(x: Any) -> Any:
    # numpy scalars and arrays keep their numbers (str would turn them into strings); anything else is named
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def write_outputs(payload: dict, out_dir: str | Path) -> list[Path]:
    """pareto.json, pareto.png and report.md in ``out_dir`` (created if needed); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from nacos.jsonsafe import dumps

    (out / "pareto.json").write_text(dumps(payload, default=_jsonable, indent=1), encoding="utf-8")
    return [out / "pareto.json", plot_pareto(payload, out / "pareto.png"), write_report(payload, out / "report.md")]
