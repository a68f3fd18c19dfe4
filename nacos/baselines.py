"""TVM's own compilers as baselines for nacos: Relax untuned, and Relax tuned with MetaSchedule.

    run = relax_untuned(onnx_bytes, {"input": (1, 3, 32, 32)})            # -> RelaxRunner
    outs = run(x)                                                           # list of numpy arrays
    run = relax_metaschedule(onnx_bytes, shapes, None, trials=64, work_dir="ms/")
    run.tuning_seconds, run.info["tasks"]
    mod, seconds = metaschedule_tune_primfunc(primfunc, None, trials=32, work_dir="ms_k/")   # one kernel

Both model baselines import the ONNX model with TVM's own importer (``tvm.relax.frontend.onnx``), so they share
nothing with nacos' frontends, passes or schedules. Untuned is TVM's default Relax pipeline: on CPU it applies no
schedule at all (expect it to be orders of magnitude slower than onnxruntime). MetaSchedule tuning dodges two
traps of TVM 0.27 on this machine (see notes/tvm.md):

* its builder workers ``import tvm.s_tir.tensor_intrin``, which parses every target's intrinsics (38–49 s here)
  and so hits the builder timeout on every build; a worker initializer pre-loads only the x86 intrinsics;
* ``extract_tasks`` finds no task in a freshly imported module; LegalizeOps, AnnotateTIROpPattern, FoldConstant,
  FuseOps and FuseTIR are run first. :func:`meta_schedule.relax_integration.compile_relax` applies the same
  passes before it looks tuned kernels up, so the records match; kernels without a record stay unscheduled.

tvm and onnx are imported inside the functions only.
"""

from __future__ import annotations

import os
import sys
import time
import types
from typing import Any, Sequence

import numpy as np


class RelaxRunner:
    """A compiled Relax executable on the CPU. ``runner(*arrays) -> list[np.ndarray]`` (numpy in, numpy out, like
    :class:`nacos.Compiled`, so the conversions are timed alike)."""

    def __init__(self, exe, inputs: Sequence[tuple[str, tuple, str]], label: str,
                 tuning_seconds: float | None = None, info: dict | None = None) -> None:
        from schedules.tvm_env import tvm

        self.exe = exe
        self.device = tvm.cpu()
        self.vm = tvm.relax.VirtualMachine(exe, self.device)
        self.inputs = tuple(inputs)
        self.label = label
        self.tuning_seconds = tuning_seconds
        self.info = dict(info or {})

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        from schedules.tvm_env import tvm

        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.label} takes {len(self.inputs)} input(s), got {len(arrays)}")
        # tvm.runtime.tensor copies into aligned TVM memory (an unaligned array can crash a kernel)
        args = [tvm.runtime.tensor(np.ascontiguousarray(a, dtype=dtype).reshape(shape), self.device)
                for a, (_, shape, dtype) in zip(arrays, self.inputs)]
        out = self.vm["main"](*args)
        outs = list(out) if not hasattr(out, "numpy") else [out]
        return [np.asarray(o.numpy()) for o in outs]

    def __repr__(self) -> str:
        return f"<RelaxRunner {self.label} inputs={[(n, s) for n, s, _ in self.inputs]}>"


def onnx_inputs(model, input_shapes: dict | None = None) -> list[tuple[str, tuple, str]]:
    """(name, static shape, numpy dtype) of each real input of an ONNX model; ``input_shapes`` overrides shapes."""
    from onnx import helper

    shapes = dict(input_shapes or {})
    inits = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        if inp.name in shapes:
            shape = tuple(int(d) for d in shapes[inp.name])
        else:
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
            if any(d <= 0 for d in dims):
                raise ValueError(f"input {inp.name!r} has a symbolic shape; pass input_shapes={{{inp.name!r}: ...}}")
            shape = tuple(dims)
        out.append((inp.name, shape, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name))
    return out


def _import(onnx_bytes: bytes, input_shapes: dict | None):
    import onnx

    from schedules.tvm_env import tvm  # noqa: F401  (sets TVM_NUM_THREADS before TVM starts)
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load_from_string(onnx_bytes)
    inputs = onnx_inputs(model, input_shapes)
    mod = from_onnx(model, shape_dict={n: list(s) for n, s, _ in inputs})
    return mod, inputs


def relax_untuned(onnx_bytes: bytes, input_shapes: dict | None = None, target: Any = None) -> RelaxRunner:
    """TVM's ONNX importer → default Relax pipeline → ``tvm.compile`` → VirtualMachine, with no tuning."""
    from schedules.tvm_env import make_target, tvm

    tgt = make_target(target)
    t0 = time.perf_counter()
    mod, inputs = _import(onnx_bytes, input_shapes)
    with tgt:
        exe = tvm.compile(mod, tgt)
    return RelaxRunner(exe, inputs, "relax-untuned", info={"compile_s": time.perf_counter() - t0})


# ---- MetaSchedule ------------------------------------------------------------------------------------------------
def preload_x86_intrinsics() -> None:
    """Register only the x86 tensor intrinsics, so that a later ``import tvm.s_tir.tensor_intrin`` is instant.

    The package's ``__init__`` imports the intrinsics of every target (38–49 s of TVMScript parsing here); an
    empty stand-in package put in ``sys.modules`` first makes that import a no-op, and the x86 module (the only
    one a CPU tune can use) is loaded into it. Used as the MetaSchedule builder's worker initializer (it must
    be a module-level function: the worker imports it by name) and in the tuning process itself.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        import tvm.s_tir

        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(os.path.dirname(tvm.s_tir.__file__), "tensor_intrin")]
        pkg.__package__ = name
        sys.modules[name] = pkg
    import tvm.s_tir.tensor_intrin.x86  # noqa: F401  (registers the intrinsics)


def _tuning_parts(trials: int, build_timeout: float, quiet: bool):
    import logging

    from tvm.s_tir import meta_schedule as ms

    if quiet:  # MetaSchedule logs every task pick and xgboost iteration to the console at INFO/DEBUG
        logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    preload_x86_intrinsics()
    builder = ms.builder.LocalBuilder(initializer=preload_x86_intrinsics, timeout_sec=build_timeout)
    runner = ms.runner.LocalRunner()
    return ms, builder, runner, min(64, max(1, trials))


def _fuse_for_tasks(mod):
    from schedules.tvm_env import tvm

    t = tvm.relax.transform
    return tvm.transform.Sequential([t.LegalizeOps(), t.AnnotateTIROpPattern(), t.FoldConstant(), t.FuseOps(),
                                     t.FuseTIR()])(mod)


def relax_metaschedule(onnx_bytes: bytes, input_shapes: dict | None = None, target: Any = None, trials: int = 64,
                       work_dir: str | os.PathLike = "ms_work", cost_model: str = "xgb",
                       build_timeout: float = 60.0, seed: int = 0, quiet: bool = True) -> RelaxRunner:
    """TVM's ONNX importer → MetaSchedule tune of every fused kernel (``trials`` measurements in all, shared by
    the task scheduler) → ``compile_relax`` with the tuning records → VirtualMachine.

    The runner's ``tuning_seconds`` is the wall time of task extraction plus tuning; ``info`` holds the number
    of tasks and of records. ``work_dir`` keeps MetaSchedule's logs and JSON database; with ``quiet`` only
    warnings reach the console.
    """
    from schedules.tvm_env import make_target

    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    tgt = make_target(target)
    ms, builder, runner, per_iter = _tuning_parts(trials, build_timeout, quiet)
    os.makedirs(work_dir, exist_ok=True)
    mod, inputs = _import(onnx_bytes, input_shapes)
    t0 = time.perf_counter()
    tasks = ms.relax_integration.extract_tasks(_fuse_for_tasks(mod), tgt)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(work_dir), seed=seed)
    database = ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                                  max_trials_global=trials, num_trials_per_iter=per_iter, builder=builder,
                                  runner=runner, cost_model=cost_model)
    tuning_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    exe = ms.relax_integration.compile_relax(database, mod, tgt, params=None)
    info = {"tasks": len(contexts), "records": len(database), "trials": trials,
            "compile_s": time.perf_counter() - t1}
    return RelaxRunner(exe, inputs, f"relax-metaschedule-{trials}", tuning_seconds=tuning_s, info=info)


def metaschedule_tune_primfunc(primfunc, target: Any = None, trials: int = 32,
                               work_dir: str | os.PathLike = "ms_kernel", cost_model: str = "xgb",
                               build_timeout: float = 60.0, seed: int = 0, quiet: bool = True):
    """Tune one TIR PrimFunc with MetaSchedule. Returns ``(scheduled IRModule, tuning seconds)``; build it with
    ``tvm.compile(mod, target)``. When no trial succeeded the IRModule is the unscheduled function."""
    from schedules.tvm_env import make_target, tvm

    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    tgt = make_target(target)
    ms, builder, runner, per_iter = _tuning_parts(trials, build_timeout, quiet)
    os.makedirs(work_dir, exist_ok=True)
    mod = primfunc if isinstance(primfunc, tvm.IRModule) else tvm.IRModule({"main": primfunc.with_attr(
        "global_symbol", "main")})
    t0 = time.perf_counter()
    database = ms.tir_integration.tune_tir(mod, tgt, str(work_dir), max_trials_global=trials,
                                           num_trials_per_iter=per_iter, builder=builder, runner=runner,
                                           cost_model=cost_model, seed=seed)
    seconds = time.perf_counter() - t0
    sch = ms.tir_integration.compile_tir(database, mod, tgt)
    return (mod if sch is None else sch.mod), seconds
