"""nacos vs onnxruntime and PyTorch eager on the bench models (ResNet-18, MobileNetV2, MobileViT-XXS), batch 1,
with a per-kernel profile of nacos that shows what limits it.

    python bench/models_vs_runtimes.py --json OUT.json [--small] [--trials N] [--db PATH] [--models a,b] [--nchw-too]
        [--apart-too] [--isolated]

For each model (bench/models.py: seeded random weights, 224×224 or 32×32 with ``--small``) the three runtimes
are built from the same ONNX export (PyTorch runs the module itself), checked against onnxruntime (max abs error
per runtime), and timed side by side in interleaved rounds in this one process (:func:`nacos.benchmark.run_bench`,
TVM Relax left out). nacos uses default schedules, or with ``--trials N`` first tunes up to N measurements per
model into ``--db`` (a temporary database without it). Then :func:`nacos.profile.profile` times every nacos
kernel alone: the top kernels by share of the summed kernel time with their GFLOP/s, and the shares by op kind;
:func:`nacos.profile.in_situ` times the same kernels inside whole-model calls, which splits the gap between the
whole model and the kernels' sum into time lost inside the kernels (caches) and time between them (the VM).
Reported: ratios nacos/onnxruntime and nacos/PyTorch (below 1: nacos is faster), never bare times.
"""

from __future__ import annotations

import argparse
import sys
import time

import common  # noqa: F401  (puts the repo root on sys.path)
from common import write_json
from models import BENCH_MODELS, bench_model, input_size


def op_kind(graph, kernel) -> str:
    """A kernel's leading op, with depthwise and pointwise convolutions told apart (they bound differently)."""
    node = graph.node_map[kernel.nodes[0]]
    if node.op == "dwconv2d_nchwc":
        anchors = [n for n in kernel.nodes[1:] if graph.node_map[n].op == "conv2d_nchwc"]
        return "depthwise → 1×1 chain" if anchors else "conv depthwise"  # schedules.fusion.CHAINS
    if node.op not in ("conv", "conv2d_nchwc"):
        return node.op
    attrs = dict(node.attrs)
    w = graph.node_map[node.inputs[1]].shape
    if node.op == "conv" and attrs.get("groups", 1) > 1 and attrs.get("groups") == node.shape[1]:
        return "conv depthwise"
    return "conv 1×1" if tuple(w[2:4]) == (1, 1) else f"conv {w[2]}×{w[3]}"


def profile_model(onnx_bytes: bytes, db: str | None, top: int) -> dict:
    import numpy as np
    import onnx

    import nacos
    from nacos.profile import in_situ, profile

    from schedules.fusion import kernel_graph

    # the graph the kernels are cut from (blocked layout: renamed nodes), built once; layout="nchw" below then
    # means "take it as it is" (layout selection already ran)
    graph = kernel_graph(nacos.load(onnx.load_from_string(onnx_bytes)))
    schedules = None
    if db:
        from schedules.database import Database

        schedules = Database(db).schedules(graph, layout="nchw")
    kernels = profile(graph, schedules=schedules, layout="nchw")
    # the same kernels inside whole-model calls: is the time lost in them (caches) or between them (the VM)?
    compiled = nacos.compile(graph, schedules=schedules, layout="nchw")
    rng = np.random.default_rng(0)
    situ = in_situ(compiled, *[rng.standard_normal(s.shape).astype(s.dtype) for s in compiled.inputs])
    total = sum(k.seconds for k in kernels)
    by_op: dict[str, dict] = {}
    for k in kernels:
        row = by_op.setdefault(op_kind(graph, k), {"kernels": 0, "seconds": 0.0, "flops": 0})
        row["kernels"] += 1
        row["seconds"] += k.seconds
        row["flops"] += k.flops
    by_op = {op: {"kernels": r["kernels"], "share": r["seconds"] / total,
                  "gflops": r["flops"] / r["seconds"] / 1e9 if r["seconds"] else 0.0}
             for op, r in sorted(by_op.items(), key=lambda kv: -kv[1]["seconds"])}
    alone = {k.name: k.seconds for k in kernels}
    return {"kernels": len(kernels), "sum_kernels_ms": total * 1e3, "by_op": by_op,
            "top": [dict(k.as_dict(), kind=op_kind(graph, k), in_situ_ms=situ.per_kernel.get(k.name, 0.0) * 1e3)
                    for k in kernels[:top]],
            "in_situ": dict(situ.as_dict(), kernels_over_alone=situ.kernels / total if total else None,
                            matched=sum(n in alone for n in situ.per_kernel))}


def bench(name: str, small: bool, trials: int, db: str | None, rounds: int, top: int, threads: int | None,
          nchw_too: bool = False, isolated: bool = False, apart_too: bool = False) -> dict:
    from nacos.benchmark import run_bench

    size = input_size(small)
    _, _, data = bench_model(name, small)  # the same seeded model run_bench builds for NAME@SIZE
    t0 = time.perf_counter()
    r = run_bench(f"{name}@{size}", db=db, trials=trials, threads=threads, rounds=rounds, relax=False,
                  nchw_too=nchw_too, isolated=isolated, apart_too=apart_too)
    rt = r["runtimes"]
    med = {k: v.get("median_ms") for k, v in rt.items()}
    out = {
        "model": name, "input": [1, 3, size, size], "trials": trials, "db": r["nacos"].get("db"),
        "kernels": r["nacos"]["kernels"], "tuned_kernels": r["nacos"]["tuned_kernels"],
        "median_ms": med, "rounds": {k: v.get("rounds") for k, v in rt.items()},
        "ratio_nacos_over_onnxruntime": med["nacos"] / med["onnxruntime"],
        "ratio_nacos_over_pytorch": med["nacos"] / med["pytorch"],
        "ratio_blocked_over_nchw": med["nacos"] / med["nacos-nchw"] if med.get("nacos-nchw") else None,
        "ratio_chained_over_apart": med["nacos"] / med["nacos-apart"] if med.get("nacos-apart") else None,
        "ratio_tuned_over_untuned": med["nacos"] / med["nacos-untuned"] if med.get("nacos-untuned") else None,
        "max_abs_err_vs_onnxruntime": {k: v["max_abs_err_vs_onnxruntime"] for k, v in rt.items()},
        "matches": {k: v["matches"] for k, v in rt.items()},
        "threads": r["threads"], "notes": r["notes"], "machine": r["machine"],
    }
    if isolated:  # each runtime in a process of its own, the others stopped (nacos.bench_isolated)
        iso = {k: v.get("isolated_median_ms") for k, v in rt.items() if v.get("isolated_median_ms")}
        out["isolated_median_ms"] = iso
        if iso.get("nacos") and iso.get("onnxruntime"):
            out["isolated_ratio_nacos_over_onnxruntime"] = iso["nacos"] / iso["onnxruntime"]
        if iso.get("nacos") and iso.get("pytorch"):
            out["isolated_ratio_nacos_over_pytorch"] = iso["nacos"] / iso["pytorch"]
        if iso.get("nacos") and iso.get("nacos-apart"):
            out["isolated_ratio_chained_over_apart"] = iso["nacos"] / iso["nacos-apart"]
    out["profile"] = profile_model(data, out["db"], top)
    # the profile sums kernels timed alone; the gap to the whole-model median is call overhead and interference
    out["profile"]["whole_model_over_sum_of_kernels"] = med["nacos"] / out["profile"]["sum_kernels_ms"]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def print_results(results: list[dict], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    t = Table(title=f"nacos vs onnxruntime and PyTorch eager, batch 1, {results[0]['threads']} threads "
                    f"(ratios of medians; below 1: nacos faster)")
    for col in ("model", "input", "trials", "tuned", "nacos/ORT", "nacos/PyTorch", "max|err| nacos",
                "max|err| PyTorch"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        err = r["max_abs_err_vs_onnxruntime"]
        t.add_row(r["model"], "×".join(map(str, r["input"][2:])), str(r["trials"]),
                  f"{r['tuned_kernels']}/{r['kernels']}", f"{r['ratio_nacos_over_onnxruntime']:.2f}",
                  f"{r['ratio_nacos_over_pytorch']:.2f}", f"{err['nacos']:.1e}", f"{err['pytorch']:.1e}")
    console.print(t)
    for r in results:
        p = r["profile"]
        k = Table(title=f"{r['model']}: top {top} of {p['kernels']} nacos kernels (each timed alone; whole model = "
                        f"{p['whole_model_over_sum_of_kernels']:.2f}× their sum)")
        for col in ("kernel", "kind", "output", "share", "GFLOP/s", "in model / alone", "tuned"):
            k.add_column(col, justify="left" if col in ("kernel", "kind") else "right")  # share: of the kernels' sum
        for row in p["top"]:
            k.add_row(row["name"][:40], row["kind"], "×".join(map(str, row["output_shape"])),
                      f"{row['share']:.1%}", f"{row['gflops']:.1f}",
                      f"{row['in_situ_ms'] / (row['seconds'] * 1e3):.2f}" if row.get("in_situ_ms") else "",
                      "yes" if row["tuned"] else "")
        console.print(k)
        s = p.get("in_situ")
        if s:
            console.print(f"  inside whole-model calls (a quiet loop, no other runtime): the kernels took "
                          f"{s['kernels_over_alone']:.2f}× their time alone, and {s['outside_kernels_share']:.0%} of "
                          f"a call was outside them", highlight=False)
        console.print("  by op kind: " + ", ".join(f"{op} {v['share']:.0%} ({v['gflops']:.1f} GFLOP/s)"
                                                  for op, v in list(p["by_op"].items())[:6]), highlight=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="write results here")
    p.add_argument("--small", action="store_true", help="32×32 inputs instead of 224×224")
    p.add_argument("--trials", type=int, default=0, help="tune nacos up to N measurements per model first")
    p.add_argument("--db", default=None, help="tuning database to read (and to tune into with --trials)")
    p.add_argument("--models", default=",".join(BENCH_MODELS), help="comma separated: " + ", ".join(BENCH_MODELS))
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    p.add_argument("--top", type=int, default=8, help="kernels listed per model (default 8)")
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: usable cores)")
    p.add_argument("--nchw-too", action="store_true",
                   help="also time nacos without the blocked NCHW[b]c layout (tuned too with --trials)")
    p.add_argument("--apart-too", action="store_true",
                   help="also time nacos with each depthwise → 1×1 chain compiled as two kernels (NACOS_CHAINS=0)")
    p.add_argument("--isolated", action="store_true",
                   help="also time each runtime in a process of its own, the others stopped (no shared cores with "
                        "idle thread pools)")
    args = p.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in BENCH_MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {', '.join(BENCH_MODELS)}")
    if args.trials < 0:
        sys.exit("--trials cannot be negative")
    results = []
    for name in names:
        r = bench(name, args.small, args.trials, args.db, args.rounds, args.top, args.threads, args.nchw_too,
                  args.isolated, args.apart_too)
        results.append(r)
        layout = (f", blocked/NCHW layout {r['ratio_blocked_over_nchw']:.2f}"
                  if r["ratio_blocked_over_nchw"] is not None else "")
        tuned = (f", tuned/untuned nacos {r['ratio_tuned_over_untuned']:.2f}"
                 if r["ratio_tuned_over_untuned"] is not None else "")
        tuned += (f", chained/apart {r['ratio_chained_over_apart']:.2f}"
                  + (f" (isolated {r['isolated_ratio_chained_over_apart']:.2f})"
                     if "isolated_ratio_chained_over_apart" in r else "")
                  if r["ratio_chained_over_apart"] is not None else "")
        iso = (f"; isolated processes: nacos/ORT {r['isolated_ratio_nacos_over_onnxruntime']:.2f}"
               if "isolated_ratio_nacos_over_onnxruntime" in r else "")
        print(f"{name}: nacos/ORT {r['ratio_nacos_over_onnxruntime']:.2f}, nacos/PyTorch "
              f"{r['ratio_nacos_over_pytorch']:.2f}{layout}{tuned}{iso} ({r['seconds']} s)", flush=True)
    print_results(results, args.top)
    write_json(args.json, {"bench": "models_vs_runtimes", "small": args.small, "trials": args.trials,
                           "command": " ".join(["python"] + sys.argv), "results": results})


if __name__ == "__main__":
    main()
