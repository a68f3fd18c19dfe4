"""Architecture search spaces: ``create(name, **kw)`` → a :class:`SearchSpace`; ``available()`` lists the names.

>>> space = create("hyt")
>>> arch = space.sample(np.random.default_rng(0))          # a frozen, hashable Arch with a stable .archid
>>> graph = space.to_graph(arch, (1, 1, 16, 16), num_classes=10, seed=0)

Spaces: ``hyt`` (HyT-NAS-style hybrid conv/attention), ``mbv2`` (MobileNetV2/ProxylessNAS-style),
``resnet`` (AnalogNAS-style ResNets). ``from_model(graph)`` makes the space of one imported model's GOS operator
rewrites (:class:`ModelSpace`); it needs the model, so it is not created by name. Only numpy and the IR are
imported here; torch is not needed to build graphs.
"""

from __future__ import annotations

from typing import Callable

from nacos.spaces.base import Arch, SearchSpace, Variable
from nacos.spaces.hyt import HyTSpace
from nacos.spaces.mbv2 import MBV2Space
from nacos.spaces.model import ModelSpace
from nacos.spaces.resnet import ResNetSpace

_SPACES: dict[str, Callable[..., SearchSpace]] = {
    "hyt": HyTSpace,
    "mbv2": MBV2Space,
    "resnet": ResNetSpace,
}


def register(name: str, factory: Callable[..., SearchSpace]) -> None:
    """Add a space under ``name`` (a class or any callable returning a :class:`SearchSpace`)."""
    if name in _SPACES:
        raise ValueError(f"search space {name!r} registered twice")
    _SPACES[name] = factory


def available() -> list[str]:
    return sorted(_SPACES)


def create(name: str | SearchSpace, **kw) -> SearchSpace:
    """The space called ``name`` built with ``kw`` (e.g. ``width_mult=2``); a space instance is returned as is."""
    if isinstance(name, SearchSpace):
        return name
    if name == ModelSpace.name and name not in _SPACES:
        raise ValueError("the 'model' space searches the operator rewrites of one model, so it needs that model: "
                         "use `nacos optimize --model MODEL.onnx` or spaces.from_model(graph)")
    try:
        factory = _SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; available: {', '.join(available())}") from None
    return factory(**kw)


def from_model(graph, **kw) -> ModelSpace:
    """The space of ``graph``'s GOS operator rewrites (``max_variables=12``, ``rewrites_per_node=None``); its
    first arch, ``space.original()``, is the model itself. Raises ValueError if no operator has a rewrite."""
    return ModelSpace(graph, **kw)


__all__ = ["Arch", "SearchSpace", "Variable", "HyTSpace", "MBV2Space", "ModelSpace", "ResNetSpace", "available",
           "create", "from_model", "register"]
