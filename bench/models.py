"""The bench model set: two CNNs and a conv/transformer hybrid, at 224×224 (default) or 32×32 (``--small``).

    from models import BENCH_MODELS, bench_model
    module, x, onnx_bytes = bench_model("mobilevit_xxs", small=True)

Each model comes from :mod:`nacos.zoo` with seeded random weights and random batch-norm statistics (fresh batch
norms are the identity in eval mode, which would hide folding mistakes), built by
:func:`nacos.benchmark.zoo_model` — the same construction ``nacos bench resnet18@224`` uses, so a bench script
and the CLI measure the same model.
"""

from __future__ import annotations

import common  # noqa: F401  (puts the repo root on sys.path)

# name -> what it stands for in the set
BENCH_MODELS = {
    "resnet18": "plain residual CNN (dense 3×3 convs, ≈1.8 GMAC at 224)",
    "mobilenet_v2": "depthwise-separable CNN (inverted residuals, ≈0.3 GMAC at 224)",
    "mobilevit_xxs": "MobileViT-XXS conv/transformer hybrid (MV2 blocks + attention on 2×2 patches)",
}
SIZES = {"default": 224, "small": 32}


def input_size(small: bool = False) -> int:
    return SIZES["small" if small else "default"]


def bench_model(name: str, small: bool = False, seed: int = 0):
    """(torch module in eval mode, example input tensor [1, 3, S, S], ONNX bytes) of a bench model."""
    from nacos.benchmark import zoo_model

    if name not in BENCH_MODELS:
        raise KeyError(f"unknown bench model {name!r}; choose from {', '.join(BENCH_MODELS)}")
    return zoo_model(name, input_size(small), seed)
