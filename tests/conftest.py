"""Shared fixtures: models exported to ONNX once per session, torch kept to one thread."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import pytest

LIGHT_MODELS = Path(__import__("onnx").__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def export_onnx(module, example: tuple, path: Path | None = None) -> bytes:
    """A torch module as ONNX bytes (opset 17), also written to ``path`` when given."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=17, input_names=["input"])
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def conv_chain(n: int, pool: bool = False):
    """An IR graph of ``n`` 3×3 conv + relu layers on a 1×16×12×12 input (seeded weights), optionally ending in a
    global average pool."""
    import numpy as np

    from ir.graph import GraphBuilder

    rng = np.random.default_rng(0)
    b = GraphBuilder("chain")
    y = b.input("x", (1, 16, 12, 12))
    for i in range(n):
        w = b.constant(rng.standard_normal((16, 16, 3, 3)).astype("float32") * 0.1, f"w{i}")
        y = b.op("relu", b.op("conv", y, w, pads=(1, 1, 1, 1)))
    return b.build([b.op("global_avgpool", y) if pool else y])


def ort_run(model_bytes: bytes, *arrays):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: a for i, a in zip(sess.get_inputs(), arrays)})


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory):
    """name -> (onnx path, input array) for the zoo models at test-friendly sizes."""
    import numpy as np
    import torch

    from nacos import zoo

    out = {}
    folder = tmp_path_factory.mktemp("zoo")
    sizes = {"small_cnn": (1, 3, 32, 32), "resnet18": (1, 3, 64, 64), "mobilenet_v2": (1, 3, 64, 64),
             "squeezenet1_1": (1, 3, 64, 64), "tiny_attention": (1, 16, 32)}
    for name, shape in sizes.items():
        torch.manual_seed(0)
        module = getattr(zoo, name)()
        zoo.randomize_batchnorm_(module)
        module.eval()
        x = torch.randn(*shape)
        path = folder / f"{name}.onnx"
        export_onnx(module, (x,), path)
        out[name] = (path, np.ascontiguousarray(x.numpy()))
    return out


os.environ.setdefault("TVM_NUM_THREADS", "2")
