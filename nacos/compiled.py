"""A compiled model: run it, time it, export it as a self-contained artifact, load it back.

This module needs only ``tvm`` and ``numpy`` at run time, so an exported artifact can be deployed without torch,
onnx or the rest of nacos' search machinery. An artifact is a folder::

    model.so      the TVM Relax executable with every kernel and the weights
    nacos.json    input/output names, shapes and dtypes, the target, and which graph nodes each kernel computes
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ARTIFACT_VERSION = 1
LIBRARY = "model.so"
METADATA = "nacos.json"


@contextlib.contextmanager
def _quiet_vm_log():
    """Silence the native stderr while TVM saves or loads a VM executable: it logs one "Scope Saving/Loaded"
    warning line per kernel, hundreds for a network, and nothing a user can act on. Errors still raise Python
    exceptions with their message. ``NACOS_TVM_LOG=1`` keeps the log."""
    if os.environ.get("NACOS_TVM_LOG") == "1":
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class InputError(ValueError):
    """Inputs that do not match the compiled model's signature."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class KernelInfo:
    name: str
    nodes: tuple[str, ...]
    ops: tuple[str, ...]
    output: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tvm():
    from schedules.tvm_env import tvm  # sets TVM_NUM_THREADS before TVM starts

    return tvm


class Compiled:
    """A runnable compiled model. ``Compiled(*arrays) -> list[np.ndarray]`` (one array per graph output)."""

    def __init__(self, module, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], target: str,
                 kernels: Sequence[KernelInfo] = (), name: str = "model", stats=None) -> None:
        tvm = _tvm()
        self._module = module
        self._source: Path | None = None  # the library file of a loaded artifact (what export copies)
        self._device = tvm.cpu()
        self._vm = tvm.relax.VirtualMachine(module, self._device)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.target = target
        self.kernels = tuple(kernels)
        self.name = name
        self.stats = stats

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_executable(cls, exe, graph, target: str, kernels, stats=None) -> "Compiled":
        nodes = graph.node_map
        ins = [TensorSpec(n, nodes[n].shape, nodes[n].dtype) for n in graph.inputs]
        outs = [TensorSpec(n, nodes[n].shape, nodes[n].dtype) for n in graph.outputs]
        return cls(exe, ins, outs, target, kernels, graph.name, stats)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Compiled":
        """Reload an artifact written by :meth:`export`. A damaged one raises ``ValueError`` (its library is
        checked against the size and SHA-256 the export recorded: loading a truncated library can kill the
        process with SIGBUS)."""
        path = Path(path)
        meta_path = path / METADATA
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path}: not a nacos artifact (no {METADATA})")
        try:
            meta = json.loads(meta_path.read_text())
            version = meta.get("version")
        except (ValueError, AttributeError):
            raise ValueError(f"{path}: not a valid nacos artifact ({METADATA} is not a JSON object)") from None
        if version != ARTIFACT_VERSION:
            raise ValueError(f"{path}: artifact version {version} is not supported "
                             f"(this nacos reads version {ARTIFACT_VERSION})")
        lib = path / LIBRARY
        if not lib.is_file():
            raise FileNotFoundError(f"{path}: not a nacos artifact (no {LIBRARY})")
        recorded = meta.get("library")
        if recorded is not None and (lib.stat().st_size != recorded.get("bytes")
                                     or _sha256(lib) != recorded.get("sha256")):
            raise ValueError(f"{path}: {LIBRARY} is damaged (its size or SHA-256 differs from what {METADATA} "
                             "recorded at export)")
        try:
            spec = lambda d: TensorSpec(d["name"], tuple(d["shape"]), d["dtype"])  # noqa: E731
            kernels = [KernelInfo(k["name"], tuple(k["nodes"]), tuple(k["ops"]), k["output"])
                       for k in meta["kernels"]]
            inputs, outputs, target = [spec(d) for d in meta["inputs"]], [spec(d) for d in meta["outputs"]], \
                meta["target"]
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a valid nacos artifact ({METADATA} lacks {e})") from None
        with _quiet_vm_log():
            module = _tvm().runtime.load_module(str(lib))
        model = cls(module, inputs, outputs, target, kernels, meta.get("name", "model"))
        model._source = lib
        return model

    def export(self, path: str | os.PathLike) -> Path:
        """Write the artifact folder (created if needed) and return its path."""
        path = Path(path)
        source = self._source
        if source is None and not hasattr(self._module, "export_library"):
            raise RuntimeError("this model has no library to export")
        path.mkdir(parents=True, exist_ok=True)
        lib = path / LIBRARY
        # written under another name, then renamed over: a library this process (or another) has loaded keeps its
        # file, where writing into it would change the code under the running model (SIGBUS, a crash at exit)
        tmp = path / f".{LIBRARY}.{os.getpid()}.tmp.so"
        try:
            if source is not None:  # loaded from an artifact: its library is the one to write
                if not (lib.exists() and lib.samefile(source)):
                    shutil.copyfile(source, tmp)
                    os.replace(tmp, lib)
            else:
                with _quiet_vm_log():
                    self._module.export_library(str(tmp))
                os.replace(tmp, lib)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta = {
            "version": ARTIFACT_VERSION,
            "name": self.name,
            "target": self.target,
            "inputs": [asdict(s) for s in self.inputs],
            "outputs": [asdict(s) for s in self.outputs],
            "kernels": [asdict(k) for k in self.kernels],
            "library": {"bytes": lib.stat().st_size, "sha256": _sha256(lib)},
        }
        (path / METADATA).write_text(json.dumps(meta, indent=2))
        return path

    # ---- running -----------------------------------------------------------------------------------
    def _prepare(self, arrays: Sequence[np.ndarray]) -> list:
        tvm = _tvm()
        if len(arrays) != len(self.inputs):
            raise InputError(f"{self.name} takes {len(self.inputs)} input(s) "
                             f"({', '.join(s.name + ': ' + s.describe() for s in self.inputs)}), got {len(arrays)}")
        out = []
        for spec, a in zip(self.inputs, arrays):
            a = np.asarray(a)
            if tuple(a.shape) != spec.shape:
                raise InputError(f"input {spec.name!r} expects shape {list(spec.shape)}, got {list(a.shape)}")
            if a.dtype != np.dtype(spec.dtype):
                if a.dtype.kind == np.dtype(spec.dtype).kind or (a.dtype.kind in "iu" and spec.dtype.startswith("f")):
                    a = a.astype(spec.dtype)
                else:
                    raise InputError(f"input {spec.name!r} expects dtype {spec.dtype}, got {a.dtype}")
            # tvm.runtime.tensor copies into TVM-owned (aligned) memory: unaligned numpy data can crash a kernel
            out.append(tvm.runtime.tensor(np.ascontiguousarray(a).reshape(spec.shape or (1,)), self._device))
        return out

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        result = self._vm["main"](*self._prepare(arrays))
        if len(self.outputs) == 1:
            result = [result]
        return [np.asarray(r.numpy()).reshape(s.shape) for r, s in zip(result, self.outputs)]

    def benchmark(self, *arrays: np.ndarray, number: int = 10, repeat: int = 5, min_repeat_ms: int = 0) -> list[float]:
        """Seconds per call of each repeat (each the mean of ``number`` calls), timed inside TVM."""
        if number < 1 or repeat < 1 or min_repeat_ms < 0:
            raise ValueError(f"number={number}, repeat={repeat}, min_repeat_ms={min_repeat_ms}: number and repeat "
                             "must be at least 1, min_repeat_ms at least 0")
        args = self._prepare(arrays)
        timer = self._vm.time_evaluator("main", self._device, number=number, repeat=repeat,
                                        min_repeat_ms=min_repeat_ms)
        return list(timer(*args).results)

    def __repr__(self) -> str:
        sig = ", ".join(f"{s.name}: {s.describe()}" for s in self.inputs)
        return f"<Compiled {self.name}({sig}) {len(self.kernels)} kernels for {self.target}>"
