"""Joint co-search vs the two-stage baseline (NAS on default schedules, then tuning) at equal wall-clock budget.

For each data set and seed, ``nacos.optimize(..., baseline=True)`` runs the joint search and then the two-stage
baseline with the same budget, each in its own database. Afterwards every front member of both methods is timed
again **side by side** (artifacts loaded and timed interleaved, ``--rounds`` rounds), so the two fronts' latencies
come from the same minutes of this noisy machine. Reported per seed and in the mean:

* hypervolume of each final front in (test error, latency ms) — pymoo's HV, one reference point per data set
  (error 1.0, latency 1.1 × the slowest front member of any method and seed);
* the best test accuracy reachable under two latency budgets (the 25th and 50th percentiles of all front
  latencies of the data set).

    python bench/joint_vs_sequential.py --json out.json [--datasets digits,fashion-mnist] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def side_by_side(out: Path, payload: dict, rounds: int) -> dict[str, dict[str, float]]:
    """{method: {member id: median seconds}} for every front member with an artifact, timed interleaved."""
    import nacos
    from nacos import data
    from nacos.joint.front import time_model

    ds = data.load(payload["config"]["dataset"])
    x = np.ascontiguousarray(ds.test.x[:1], dtype=np.float32)
    models = {}
    for method, members in (("joint", payload["pareto"]), ("two-stage", (payload.get("baseline") or {}).get("pareto", []))):
        for m in members:
            if m.get("artifact"):
                models[(method, m["id"])] = nacos.Compiled.load(out / m["artifact"])
    times: dict = {k: [] for k in models}
    for _ in range(rounds):
        for k, model in models.items():
            times[k].append(time_model(model, x, repeat=3))
    result: dict[str, dict[str, float]] = {"joint": {}, "two-stage": {}}
    for (method, mid), ts in times.items():
        result[method][mid] = float(np.median(ts))
    return result


def front_points(members: list[dict], sbs: dict[str, float]) -> np.ndarray:
    return np.array([[1.0 - m["accuracy"], sbs.get(m["id"], m["latency_ms"] / 1e3) * 1e3] for m in members], float).reshape(-1, 2)


def best_under(points: np.ndarray, budget_ms: float) -> float | None:
    ok = points[points[:, 1] <= budget_ms]
    return float(1.0 - ok[:, 0].min()) if len(ok) else None


def main() -> int:
    from nacos import data

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None, help="comma list (default digits, plus fashion-mnist if installed)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--space", default="hyt")
    ap.add_argument("--budget-minutes", type=float, default=3.0, help="per method (default 3)")
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--fidelity", default="predictor")
    ap.add_argument("--rounds", type=int, default=5, help="side-by-side timing rounds (default 5)")
    ap.add_argument("--out", default="bench-out/joint_vs_sequential")
    ap.add_argument("--json", metavar="OUT.json")
    args = ap.parse_args()

    import nacos
    from pymoo.indicators.hv import HV

    datasets = args.datasets.split(",") if args.datasets else \
        ["digits"] + (["fashion-mnist"] if data.fashion_mnist_installed() else [])
    seeds = [int(s) for s in args.seeds.split(",")]
    report: dict = {"config": vars(args), "datasets": {}}
    t_start = time.time()
    for ds_name in datasets:
        runs = []
        for seed in seeds:
            out = Path(args.out) / ds_name / f"seed{seed}"
            print(f"[{time.time() - t_start:6.0f} s] {ds_name} seed {seed}: joint, then two-stage, "
                  f"{args.budget_minutes} min each", flush=True)
            result = nacos.optimize(args.space, ds_name, out=out, force=True, seed=seed, baseline=True,
                                    budget_minutes=args.budget_minutes, population=args.population,
                                    fidelity=args.fidelity)
            payload = result.payload
            sbs = side_by_side(out, payload, args.rounds)
            runs.append({"seed": seed, "out": str(out),
                         "joint": front_points(payload["pareto"], sbs["joint"]),
                         "two-stage": front_points(payload["baseline"]["pareto"], sbs["two-stage"]),
                         "stats": {"joint": payload["stats"], "two-stage": payload["baseline"]["stats"]}})
        all_pts = np.concatenate([r[m] for r in runs for m in ("joint", "two-stage") if len(r[m])])
        ref = np.array([1.0, 1.1 * all_pts[:, 1].max()])
        budgets = [float(np.percentile(all_pts[:, 1], q)) for q in (25, 50)]
        hv = HV(ref_point=ref)
        rows = []
        for r in runs:
            row = {"seed": r["seed"], "out": r["out"]}
            for m in ("joint", "two-stage"):
                pts = r[m]
                row[m] = {"hypervolume": float(hv(pts)) if len(pts) else 0.0, "front": pts.round(5).tolist(),
                          **{f"best_accuracy_under_{b:.4g}ms": best_under(pts, b) for b in budgets},
                          "evaluations": r["stats"][m]["evaluations"], "measured": r["stats"][m]["measured"],
                          "kernel_measurements": r["stats"][m]["kernel_measurements"],
                          "latency_model": r["stats"][m].get("latency_model")}
            jv, bv = row["joint"]["hypervolume"], row["two-stage"]["hypervolume"]
            row["hv_ratio"] = jv / bv if bv > 0 else None
            rows.append(row)
            print(f"  seed {r['seed']}: HV joint {jv:.4f}  two-stage {bv:.4f}  ratio "
                  f"{row['hv_ratio'] if row['hv_ratio'] is None else round(row['hv_ratio'], 3)}", flush=True)
        ratios = [r["hv_ratio"] for r in rows if r["hv_ratio"] is not None]
        summary = {"reference_point": ref.tolist(), "latency_budgets_ms": budgets,
                   "hv_joint_mean": float(np.mean([r["joint"]["hypervolume"] for r in rows])),
                   "hv_two_stage_mean": float(np.mean([r["two-stage"]["hypervolume"] for r in rows])),
                   "hv_ratio_per_seed": ratios,
                   "hv_ratio_of_means": None}
        if summary["hv_two_stage_mean"] > 0:
            summary["hv_ratio_of_means"] = summary["hv_joint_mean"] / summary["hv_two_stage_mean"]
        for b in budgets:
            for m in ("joint", "two-stage"):
                vals = [r[m][f"best_accuracy_under_{b:.4g}ms"] for r in rows]
                summary[f"{m}_best_accuracy_under_{b:.4g}ms"] = vals
        report["datasets"][ds_name] = {"summary": summary, "seeds": rows}
        print(f"{ds_name}: mean HV joint {summary['hv_joint_mean']:.4f} vs two-stage "
              f"{summary['hv_two_stage_mean']:.4f} (ratio of means {summary['hv_ratio_of_means']}); "
              f"per seed {[round(x, 3) for x in ratios]}; target ≥ 1.2", flush=True)
        for b in budgets:
            print(f"  best accuracy under {b:.3g} ms: joint {summary[f'joint_best_accuracy_under_{b:.4g}ms']} "
                  f"two-stage {summary[f'two-stage_best_accuracy_under_{b:.4g}ms']}", flush=True)
    report["seconds"] = time.time() - t_start
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
