"""Rendering of a :func:`nacos.benchmark.run_bench` result: a rich table and a bar chart.

Both show medians and ratios to onnxruntime (the reference every runtime is checked and timed against); the
chart uses a log scale because TVM Relax untuned is typically 10–1000× slower than the rest.
"""

from __future__ import annotations

from pathlib import Path

ORT = "onnxruntime"
# fixed colours, so a runtime looks the same in every chart
COLORS = {"nacos": "#d62728", ORT: "#1f77b4", "pytorch": "#ff7f0e", "relax-untuned": "#7f7f7f",
          "relax-metaschedule": "#2ca02c", "nacos-untuned": "#f4a6a6", "nacos-nchw": "#9467bd",
          "nacos-apart": "#e377c2"}


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms >= 1000:
        return f"{ms / 1e3:.2f} s"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.1f} µs"


def _title(result: dict) -> str:
    shapes = ", ".join(f"{k}[{'×'.join(map(str, v))}]" for k, v in result["inputs"].items())
    return f"{result['model']} ({shapes}), {result['threads']} threads"


def table(result: dict):
    """A ``rich.table.Table``: runtime, median, min–max over rounds, ratio to onnxruntime, max |error| vs ORT."""
    from rich.table import Table

    t = Table(title=_title(result), caption="×ORT = median / onnxruntime's median (below 1: faster than ORT); "
                                            "all runtimes timed side by side in interleaved rounds")
    isolated = any("isolated_median_ms" in r for r in result["runtimes"].values())
    cols = ["runtime", "median", "min … max", "×ORT"] + (["isolated", "×ORT isolated"] if isolated else [])
    for col in cols + ["max|err| vs ORT"]:
        t.add_column(col, justify="left" if col == "runtime" else "right")
    rows = sorted(result["runtimes"].items(), key=lambda kv: kv[1].get("median_ms", float("inf")))
    for name, r in rows:
        err = f"{r['max_abs_err_vs_onnxruntime']:.1e}" + ("" if r["matches"] else " ✗")
        if "median_ms" not in r:
            t.add_row(_label(name, result), "not timed", *[""] * (len(cols) - 2), err)
            continue
        cells = [fmt_ms(r["median_ms"]), f"{fmt_ms(r['min_ms'])} … {fmt_ms(r['max_ms'])}",
                 _ratio(r["ratio_to_onnxruntime"])]
        if isolated:  # each runtime in a process of its own, the others stopped (nacos.bench_isolated)
            iso = r.get("isolated_ratio_to_onnxruntime")
            cells += [fmt_ms(r["isolated_median_ms"]) if "isolated_median_ms" in r else "—",
                      _ratio(iso) if iso is not None else "—"]
        t.add_row(_label(name, result), *cells, err)
    return t


def _ratio(ratio: float) -> str:
    style = "green" if ratio < 1 else "red" if ratio > 1.05 else ""
    return f"[{style}]{ratio:.2f}[/]" if style else f"{ratio:.2f}"


def _label(name: str, result: dict) -> str:
    if name == "nacos":
        info = result.get("nacos", {})
        tuned = info.get("tuned_kernels", 0)
        # kernels whose schedule came from the database (its best measured point, which may be the default one)
        return f"nacos ({tuned}/{info.get('kernels', '?')} from db)" if tuned else "nacos (default)"
    if name == "relax-metaschedule":
        return f"relax-ms ({result.get('metaschedule', {}).get('trials', '?')} trials)"
    return name


def print_result(result: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    console.print(table(result))
    for note in result.get("notes", []):
        console.print(f"note: {note}", highlight=False)


def plot(result: dict, path: str | Path) -> Path:
    """Horizontal bars of the median latency per runtime (log scale), each labelled with its ratio to ORT."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    rows = [(n, r) for n, r in result["runtimes"].items() if "median_ms" in r]
    rows.sort(key=lambda nr: -nr[1]["median_ms"])  # slowest at the bottom of the list → top of the chart
    names = [_label(n, result) for n, _ in rows]
    values = [r["median_ms"] for _, r in rows]
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.6 * len(rows)), dpi=120)
    bars = ax.barh(names, values, color=[COLORS.get(n, "#9467bd") for n, _ in rows])
    ax.set_xscale("log")
    ax.set_xlabel("median latency per call (ms, log scale)")
    load = result.get("machine", {}).get("load_avg_1min_at_start")
    ax.set_title(_title(result) + (f"\nmachine load at start {load:.1f} on {result['machine']['cores']} cores"
                                   if load is not None else ""), fontsize=10)
    right = max(values) * 15  # room for the labels on a log axis
    ax.set_xlim(min(values) / 3, right)
    for bar, (_, r) in zip(bars, rows):
        ax.text(bar.get_width() * 1.15, bar.get_y() + bar.get_height() / 2,
                f"{fmt_ms(r['median_ms'])}  ({r['ratio_to_onnxruntime']:.2f}× ORT)", va="center", fontsize=9)
    ax.grid(axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
