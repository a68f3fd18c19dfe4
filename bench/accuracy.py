"""Trained accuracy of sampled architectures vs training-free proxies and an accuracy predictor.

    python bench/accuracy.py [--space hyt] [--archs 30] [--epochs 2] [--seeds 2]
                             [--datasets digits,fashion-mnist] [--workers 2] [--json OUT.json]

For each data set (digits always; fashion-mnist when Debian's dataset-fashion-mnist is installed — a subset of
it, see --fashion-train): sample ``--archs`` distinct architectures from the space, score each with every proxy
(naswot on a fixed training minibatch, synflow, params, flops), train each with the same fixed budget once per
seed (accuracy = the mean over seeds; the seed-vs-seed τ is printed as the noise ceiling), and report the spread
of test accuracy, each proxy's Kendall τ against it, and the τ of the accuracy predictors under 5-fold
cross-validation on the architecture encodings. Three hand-designed graphs (a plain CNN, a
depthwise-separable CNN and an MLP) are trained with the same budget as reference points; they are in the
table but not in the τ. Training uses one thread per worker (the notes on shared machines: more threads per
process slow everyone down).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np

from common import write_json


# ---- hand-designed reference graphs (built with the spaces' initialisation) ----------------------------------
def reference_graphs(input_shape, num_classes: int, seed: int = 0) -> dict:
    from nacos.spaces.base import LayerBuilder

    def cnn():
        lb = LayerBuilder("ref_cnn", input_shape, seed)
        x = lb.conv(lb.x, 16, 3, act="relu", name="c1")
        x = lb.b.op("maxpool", x, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
        x = lb.conv(x, 32, 3, act="relu", name="c2")
        x = lb.b.op("maxpool", x, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
        return lb.build(lb.dense(lb.b.op("flatten", x, axis=1), num_classes, name="fc"))

    def dwsep():
        lb = LayerBuilder("ref_dwsep", input_shape, seed)
        x = lb.conv(lb.x, 16, 3, act="relu", name="stem")
        for i, (c, s) in enumerate([(32, 2), (64, 2), (64, 1)]):
            x = lb.conv(x, lb.shape(x)[1], 3, s, groups=lb.shape(x)[1], act="relu", name=f"b{i}.dw")
            x = lb.conv(x, c, 1, act="relu", name=f"b{i}.pw")
        return lb.build(lb.classifier(x, num_classes))

    def mlp():
        lb = LayerBuilder("ref_mlp", input_shape, seed)
        x = lb.dense(lb.b.op("flatten", lb.x, axis=1), 128, act="relu", gain=2 ** 0.5, name="fc1")
        return lb.build(lb.dense(x, num_classes, name="fc2"))

    return {"ref:cnn": cnn(), "ref:dwsep-cnn": dwsep(), "ref:mlp": mlp()}


# ---- one architecture (runs in a worker) ------------------------------------------------------------------------
def evaluate_one(job: dict) -> dict:
    """Proxies on the seed-0 graph; then one training per seed (the seed sets the initial weights and the data
    order), accuracy = mean over seeds: a single short run is too noisy to rank architectures by."""
    import torch

    from ir.analysis import graph_cost
    from nacos import data, proxies, spaces
    from nacos.train import TrainConfig, train

    torch.set_num_threads(1)
    ds = data.load(job["dataset"], **job["data_kw"])
    if job.get("ref") is not None:  # built here: graphs hold read-only mappings, which do not pickle
        build, enc = lambda s: reference_graphs(ds.input_shape, ds.num_classes, s)[job["ref"]], None
    else:
        space = spaces.create(job["space"])
        arch = space.make(dict(job["arch"]))
        build, enc = lambda s: space.to_graph(arch, ds.input_shape, ds.num_classes, seed=s), space.encode(arch)
    seeds = [job["seed"] + k for k in range(job["seeds"])]
    graph = build(seeds[0])
    cost = graph_cost(graph)
    row = {"name": job["name"], "arch": job.get("arch"), "encoding": None if enc is None else enc.tolist(),
           "n_params": cost.params, "mflops": cost.flops / 1e6, "proxies": {}, "proxy_s": {}}
    batch = ds.train.x[np.random.default_rng(seeds[0]).choice(len(ds.train), job["proxy_batch"], replace=False)]
    for kind in job["proxies"]:
        t0 = time.perf_counter()
        row["proxies"][kind] = proxies.create(kind).score(graph, batch, seed=seeds[0])
        row["proxy_s"][kind] = time.perf_counter() - t0
    runs = [train(build(s), ds, TrainConfig(epochs=job["epochs"], seed=s, patience=None, progress=False,
                                            threads=1)) for s in seeds]
    row.update(test_accuracy=float(np.mean([r.test_accuracy for r in runs])),
               val_accuracy=float(np.mean([r.val_accuracy for r in runs])),
               test_by_seed=[r.test_accuracy for r in runs], train_s=sum(r.seconds for r in runs),
               steps=runs[0].steps, final_loss=float(np.mean([r.losses[-1] for r in runs])))
    return row


def run_dataset(name: str, data_kw: dict, args) -> dict:
    from nacos import data, proxies, spaces
    from nacos.predictor import cross_validate
    from nacos.proxies import rank_quality

    ds = data.load(name, **data_kw)
    print(f"\n== {ds}; {args.archs} {args.space} archs, {args.epochs} epoch(s) x {args.seeds} seed(s) each")
    space = spaces.create(args.space)
    rng = np.random.default_rng(args.seed)
    archs, seen = [], set()
    while len(archs) < args.archs:
        a = space.sample(rng)
        if a.archid not in seen:
            seen.add(a.archid)
            archs.append(a)
    common_job = dict(dataset=name, data_kw=data_kw, seed=args.seed, seeds=args.seeds, epochs=args.epochs,
                      space=args.space, proxy_batch=args.proxy_batch, proxies=proxies.available())
    jobs = [dict(common_job, name=a.archid, arch=a.values) for a in archs]
    jobs += [dict(common_job, name=k, ref=k) for k in reference_graphs(ds.input_shape, ds.num_classes, args.seed)]
    start = time.perf_counter()
    rows = _run_jobs(jobs, args.workers, args.progress)
    wall = time.perf_counter() - start
    sampled = [r for r in rows if r["encoding"] is not None]
    acc = [r["test_accuracy"] for r in sampled]
    taus = {k: rank_quality([r["proxies"][k] for r in sampled], acc).as_dict() for k in proxies.available()}
    enc = [r["encoding"] for r in sampled]
    proxy_feats = [r["encoding"] + [r["proxies"][k] for k in sorted(r["proxies"])] for r in sampled]
    cv = {kind: cross_validate(kind, enc, acc, folds=5, seed=args.seed).quality.as_dict()
          for kind in ("xgb", "ridge")}
    cv["xgb+proxies"] = cross_validate("xgb", proxy_feats, acc, folds=5, seed=args.seed).quality.as_dict()
    # how reproducible the target itself is: τ between two seeds' test accuracies (the ceiling for any ranker)
    noise = (rank_quality([r["test_by_seed"][0] for r in sampled], [r["test_by_seed"][1] for r in sampled])
             .as_dict() if args.seeds >= 2 else None)
    spread = {"min": min(acc), "median": statistics.median(acc), "max": max(acc), "std": float(np.std(acc))}
    _print(ds, rows, spread, taus, cv, noise, wall)
    return {"dataset": str(ds), "data_kw": data_kw, "rows": rows, "spread": spread, "proxy_tau": taus,
            "predictor_cv_tau": cv, "seed_vs_seed_tau": noise, "wall_s": wall}


def _run_jobs(jobs: list[dict], workers: int, show: bool) -> list[dict]:
    from rich.progress import Progress

    rows: list[dict] = []
    with Progress(transient=True, disable=not show) as bar:
        task = bar.add_task("train architectures", total=len(jobs))
        if workers <= 1:
            for job in jobs:
                rows.append(evaluate_one(job))
                bar.advance(task)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for row in pool.map(evaluate_one, jobs):
                    rows.append(row)
                    bar.advance(task)
    return rows


def _print(ds, rows, spread, taus, cv, noise, wall) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"{ds.name}: test accuracy and proxies", show_lines=False)
    for col in ("arch", "params", "MFLOPs", "naswot", "synflow", "val", "test", "train s"):
        t.add_column(col, justify="left" if col == "arch" else "right")
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        px = r["proxies"]
        t.add_row(r["name"], f"{r['n_params']:,}", f"{r['mflops']:.2f}", f"{px['naswot']:.1f}", f"{px['synflow']:.2f}",
                  f"{r['val_accuracy']:.3f}", f"{r['test_accuracy']:.3f}", f"{r['train_s']:.1f}")
    con.print(t)
    con.print(f"test accuracy of {len([r for r in rows if r['encoding']])} sampled archs: min {spread['min']:.3f}  "
              f"median {spread['median']:.3f}  max {spread['max']:.3f}  std {spread['std']:.3f}")
    for k, q in taus.items():
        con.print(f"  Kendall τ  proxy {k:<14} {q['tau']:+.3f}  (p={q['p_value']})")
    for k, q in cv.items():
        con.print(f"  Kendall τ  predictor {k:<10} {q['tau']:+.3f}  (5-fold CV, p={q['p_value']})")
    if noise:
        con.print(f"  Kendall τ  seed 0 vs seed 1   {noise['tau']:+.3f}  (two trainings of each arch: noise)")
    con.print(f"  wall time {wall:.0f} s")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="hyt")
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=2, help="trainings per arch (seed, seed+1, ...); accuracy = mean")
    p.add_argument("--proxy-batch", type=int, default=64)
    p.add_argument("--datasets", default="digits,fashion-mnist")
    p.add_argument("--fashion-train", type=int, default=6000, help="stratified training subset of Fashion-MNIST")
    p.add_argument("--fashion-test", type=int, default=2000)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel training processes (one thread each)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json")
    args = p.parse_args(argv)

    from nacos import data

    out = {"args": vars(args), "cores": os.cpu_count(), "datasets": {}}
    for name in args.datasets.split(","):
        if name == "fashion-mnist":
            if not data.fashion_mnist_installed():
                print(f"\n== fashion-mnist: skipped, not installed in {data.FASHION_DIR} "
                      f"(apt-get install dataset-fashion-mnist)")
                out["datasets"][name] = {"skipped": "not installed"}
                continue
            kw = {"train_size": args.fashion_train, "test_size": args.fashion_test, "val_size": 2000}
        else:
            kw = {}
        out["datasets"][name] = run_dataset(name, kw, args)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
