"""Targets by name: what ``--target`` accepts, and how each is built, measured and keyed.

``create(name) -> Target``; ``available()`` lists the names. Only the host CPU (TVM's llvm backend with the real
``mcpu``) measures whole models today; boards reached through a TVM RPC tracker tune kernels (``nacos tune
--rpc``) but cannot yet time whole models for the joint search, so ``rpc`` gives a clear "not supported yet".
Later targets (simulated analog in-memory accelerators, …) register here with their own measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Target:
    name: str
    doc: str
    tvm_target: Any = None          # what schedules.tvm_env.make_target accepts (None: this CPU)
    whole_model: bool = True        # can time compiled whole models (what the joint search needs)

    def key(self) -> str:
        from schedules.workload import target_key

        return target_key(self.tvm_target)


def _host() -> Target:
    return Target("host", "this CPU through TVM's llvm backend (real mcpu, all cores)")


def _rpc() -> Target:
    raise NotImplementedError("target 'rpc': whole-model measurement on a board over TVM RPC is not supported "
                              "yet by nacos optimize (kernels can be tuned there: nacos tune --rpc HOST:PORT)")


_TARGETS: dict[str, Callable[[], Target]] = {"host": _host, "llvm": _host, "cpu": _host, "rpc": _rpc}


def available() -> list[str]:
    return sorted(_TARGETS)


def register(name: str, factory: Callable[[], Target]) -> None:
    if name in _TARGETS:
        raise ValueError(f"target {name!r} registered twice")
    _TARGETS[name] = factory


def create(name: str | Target | None = None) -> Target:
    if isinstance(name, Target):
        return name
    factory = _TARGETS.get(name or "host")
    if factory is None:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(available())}")
    return factory()
