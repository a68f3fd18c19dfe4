"""nacos.compile with default schedules vs onnxruntime and PyTorch eager, per model, measured side by side.

    python bench/compile_default.py [--models small_cnn,resnet18,...] [--size 224] [--json out.json]

Each model is built in torch with random weights (nacos.zoo), exported to ONNX, loaded by nacos from that ONNX
file, compiled with default schedules (no tuning), and checked against onnxruntime before timing. All runtimes
use the same thread count (TVM_NUM_THREADS, default: the cores available). Reports median latency per runtime
and the ratios nacos/onnxruntime and nacos/torch (below 1.0 means nacos is faster).
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np

from common import interleaved, machine, ort_session, torch_to_onnx_bytes, write_json

MODELS = {
    # name: (factory kwargs, input shape)
    "small_cnn": ({}, (1, 3, 32, 32)),
    "tiny_attention": ({}, (1, 16, 32)),
    "resnet18": ({}, (1, 3, 224, 224)),
    "mobilenet_v2": ({}, (1, 3, 224, 224)),
    "squeezenet1_1": ({}, (1, 3, 224, 224)),
}


def bench_model(name: str, shape: tuple, rounds: int, threads: int) -> dict:
    import onnx
    import torch

    import nacos
    from nacos import zoo

    torch.manual_seed(0)
    module = getattr(zoo, name)(**MODELS[name][0])
    if hasattr(zoo, "randomize_batchnorm_"):
        zoo.randomize_batchnorm_(module)
    module.eval()
    x = torch.randn(*shape)
    data = torch_to_onnx_bytes(module, (x,))
    t0 = time.perf_counter()
    graph = nacos.load(onnx.load_from_string(data))
    compiled = nacos.compile(graph)
    compile_s = time.perf_counter() - t0
    sess = ort_session(data, threads)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    ref = sess.run(None, feed)[0]
    got = compiled(x.numpy())[0]
    err = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref))) or 1.0
    xn = x.numpy()

    def torch_eager():
        with torch.no_grad():
            module(x)

    times = interleaved({"nacos": lambda: compiled(xn), "onnxruntime": lambda: sess.run(None, feed),
                         "torch": torch_eager}, rounds=rounds, number=3 if shape[-1] >= 224 else 10)
    med = {k: v["median_s"] for k, v in times.items()}
    return {
        "model": name, "input": list(shape), "nodes": len(graph.compute_nodes), "kernels": len(compiled.kernels),
        "compile_s": round(compile_s, 2), "max_abs_err_vs_ort": err, "rel_err_vs_ort": err / scale,
        "median_ms": {k: round(v * 1e3, 4) for k, v in med.items()},
        "ratio_nacos_over_onnxruntime": round(med["nacos"] / med["onnxruntime"], 3),
        "ratio_nacos_over_torch": round(med["nacos"] / med["torch"], 3),
        "timing": times,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma separated: " + ", ".join(MODELS))
    p.add_argument("--size", type=int, default=None, help="override the image size of the CNNs (e.g. 64)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args()

    import torch

    from schedules.tvm_env import num_threads

    threads = num_threads()
    torch.set_num_threads(threads)
    results = []
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        shape = MODELS[name][1]
        if args.size and len(shape) == 4:
            shape = shape[:2] + (args.size, args.size)
        r = bench_model(name, shape, args.rounds, threads)
        results.append(r)
        print(f"{name:15s} {str(tuple(shape)):18s} nacos/ort {r['ratio_nacos_over_onnxruntime']:6.2f}  "
              f"nacos/torch {r['ratio_nacos_over_torch']:6.2f}   (medians ms: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["median_ms"].items())
              + f"; max |err| vs ort {r['max_abs_err_vs_ort']:.1e})", flush=True)
    write_json(args.json, {"bench": "compile_default", "threads": threads, "machine": machine(),
                           "results": results})


if __name__ == "__main__":
    main()
