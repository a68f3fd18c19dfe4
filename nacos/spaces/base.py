"""The search-space base: decision variables, the frozen ``Arch`` record, and a small layer builder.

A space is a list of :class:`Variable` s, each with a fixed tuple of choices. An :class:`Arch` holds one choice per
variable, so every combination is a valid network *by construction*: a space's ``to_graph`` must turn any of them
into a graph (choices that cannot apply at some input size are adapted there, never rejected). Variables that a
choice makes irrelevant (an attention-only setting of a conv stage) are *inactive*; :meth:`SearchSpace.canonical`
resets them to their first choice so that one network has one ``archid``.

``sample``, ``mutate``, ``crossover`` and ``encode`` are generic over the variables; a space writes
``variables()``, ``to_graph()`` and, if it has inactive variables, ``active()``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ir.graph import Graph, GraphBuilder


@dataclass(frozen=True)
class Variable:
    """One decision: its name, its choices (numbers are ordinal, strings categorical) and what it means."""

    name: str
    choices: tuple
    doc: str = ""

    @property
    def categorical(self) -> bool:
        return any(isinstance(c, str) for c in self.choices)


@dataclass(frozen=True)
class Arch:
    """One point of a space: ``values`` are ``(variable name, choice)`` pairs in the space's variable order."""

    space: str
    values: tuple[tuple[str, Any], ...]

    def __getitem__(self, name: str) -> Any:
        for k, v in self.values:
            if k == name:
                return v
        raise KeyError(f"{self.space} arch has no variable {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def archid(self) -> str:
        """A stable structural name (space + hash of the choices): a cache key and a duplicate detector."""
        text = json.dumps([self.space, [[k, v] for k, v in self.values]], separators=(",", ":"))
        return f"{self.space}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class SearchSpace:
    """Base class: generic sampling, variation and encoding over ``variables()``."""

    name = "space"

    # ---- to be written by a space ---------------------------------------------------------------------
    def variables(self) -> tuple[Variable, ...]:
        raise NotImplementedError

    def to_graph(self, arch: Arch, input_shape: Sequence[int] = (1, 1, 16, 16), num_classes: int = 10,
                 seed: int = 0) -> Graph:
        raise NotImplementedError

    def active(self, values: Mapping[str, Any]) -> set[str]:
        """Names of the variables that matter given the other choices (default: all)."""
        return {v.name for v in self.variables()}

    # ---- generic ---------------------------------------------------------------------------------------
    def make(self, values: Mapping[str, Any] | None = None, **kw: Any) -> Arch:
        """An arch from explicit choices; missing variables take their first choice; bad ones raise ValueError."""
        given = {**(values or {}), **kw}
        unknown = set(given) - {v.name for v in self.variables()}
        if unknown:
            raise ValueError(f"{self.name}: unknown variables {sorted(unknown)}")
        chosen = {}
        for var in self.variables():
            value = given.get(var.name, var.choices[0])
            # the choice itself, not the value given: numpy's 2 or 2.0 equals the choice 2 but would change the
            # archid (or not serialize) and break the graph builder; a bool is no number choice
            flag = isinstance(value, (bool, np.bool_))
            match = [c for c in var.choices if c == value and isinstance(c, bool) == flag]
            if not match:
                raise ValueError(f"{self.name}: {var.name}={value!r} is not one of {var.choices}")
            chosen[var.name] = match[0]
        return self.canonical(chosen)

    def canonical(self, values: Mapping[str, Any]) -> Arch:
        live = self.active(values)
        return Arch(self.name, tuple((v.name, values[v.name] if v.name in live else v.choices[0])
                                     for v in self.variables()))

    def from_indices(self, indices: Iterable[int]) -> Arch:
        """An arch from one choice index per variable (how an optimizer with integer variables names it)."""
        idx = [int(i) for i in indices]
        for v, i in zip(self.variables(), idx):
            if not 0 <= i < len(v.choices):  # a negative index would silently take a choice from the end
                raise ValueError(f"{self.name}: index {i} of {v.name} is outside 0..{len(v.choices) - 1}")
        return self.canonical({v.name: v.choices[i] for v, i in zip(self.variables(), idx, strict=True)})

    def indices(self, arch: Arch) -> tuple[int, ...]:
        return tuple(v.choices.index(arch[v.name]) for v in self.variables())

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.canonical({v.name: v.choices[rng.integers(len(v.choices))] for v in self.variables()})

    def mutate(self, arch: Arch, rng: np.random.Generator, n: int = 1) -> Arch:
        """A new arch with ``n`` active variables changed to another choice (``arch`` is left as it is)."""
        values = arch.as_dict()
        for _ in range(n):
            live = [v for v in self.variables() if v.name in self.active(values) and len(v.choices) > 1]
            if not live:
                break
            var = live[rng.integers(len(live))]
            others = [c for c in var.choices if c != values[var.name]]
            values[var.name] = others[rng.integers(len(others))]
        return self.canonical(values)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each variable from ``a`` or ``b`` with equal chance."""
        da, db = a.as_dict(), b.as_dict()
        return self.canonical({v.name: (da if rng.random() < 0.5 else db)[v.name] for v in self.variables()})

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector: ordinal choices scaled to [0, 1] by their largest choice, categorical
        choices one-hot, inactive variables zero (so the predictor sees what the network really is)."""
        live = self.active(arch.as_dict())
        out: list[float] = []
        for var in self.variables():
            value = arch[var.name]
            if var.categorical:
                out += [float(value == c and var.name in live) for c in var.choices]
            else:
                top = max(abs(float(c)) for c in var.choices) or 1.0
                out.append(float(value) / top if var.name in live else 0.0)
        return np.asarray(out, np.float32)

    def encoding_names(self) -> list[str]:
        return [f"{v.name}={c}" if v.categorical else v.name for v in self.variables()
                for c in (v.choices if v.categorical else (None,))]

    def describe(self) -> list[dict]:
        """``variables()`` as plain data: name, choices, doc, and kind — 'choice' (categorical: a pymoo Choice) or
        'ordinal' (sorted numbers: a pymoo Integer over the choice index)."""
        return [{"name": v.name, "choices": list(v.choices), "doc": v.doc,
                 "kind": "choice" if v.categorical else "ordinal"} for v in self.variables()]


# ---- shared by the spaces' to_graph -----------------------------------------------------------------------
def round_channels(c: float, divisor: int = 4) -> int:
    return max(divisor, int(round(c / divisor)) * divisor)


def stride_plan(size: int, stages: int, min_size: int = 2) -> tuple[int, list[int]]:
    """(stem stride, per-stage strides): the stem halves inputs of 16+ pixels (as MobileNets do; it keeps small
    models fast to train), then stages 2.. halve the map while it stays above ``min_size``: 16×16 digits run at
    8, 8, 4, 2, 2, 2 and 224×224 inputs at 112, 112, 56, 28, 14, 7."""
    stem = 2 if size >= 16 else 1
    cur = math.ceil(size / stem)
    strides = [1]
    for _ in range(1, stages):
        s = 2 if cur > min_size else 1
        cur = math.ceil(cur / s)
        strides.append(s)
    return stem, strides


class LayerBuilder:
    """A ``GraphBuilder`` with seeded, trainability-minded initialisation.

    There is no batch norm (the IR's is inference-only), so the init carries trainability: He-normal weights
    before activations, and the last layer of every residual branch scaled by ``residual_scale`` so each block
    starts close to the identity (as Fixup/SkipInit do).
    """

    residual_scale = 0.2

    def __init__(self, name: str, input_shape: Sequence[int], seed: int) -> None:
        self.b = GraphBuilder(name)
        self.rng = np.random.default_rng(seed)
        self.x = self.b.input("x", tuple(input_shape))

    def shape(self, v: str) -> tuple[int, ...]:
        return self.b.type_of(v).shape

    def _weight(self, shape: tuple[int, ...], fan_in: int, gain: float, name: str) -> str:
        std = gain * math.sqrt(1.0 / fan_in)
        return self.b.constant(self.rng.normal(0.0, std, shape).astype(np.float32), name)

    def conv(self, x: str, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: str | None = None,
             last: bool = False, name: str = "conv") -> str:
        cin = self.shape(x)[1]
        gain = math.sqrt(2.0) * (self.residual_scale if last else 1.0)
        w = self._weight((cout, cin // groups, k, k), cin // groups * k * k, gain, name + ".w")
        bias = self.b.constant(np.zeros(cout, np.float32), name + ".b")
        p = k // 2
        y = self.b.op("conv", x, w, bias, strides=(stride, stride), pads=(p, p, p, p), dilations=(1, 1),
                      groups=groups, name=name)
        return self.act(y, act)

    def dense(self, x: str, out: int, act: str | None = None, last: bool = False, gain: float = 1.0,
              name: str = "dense") -> str:
        fan_in = self.shape(x)[-1]
        gain = gain * (self.residual_scale if last else 1.0)
        w = self._weight((out, fan_in), fan_in, gain, name + ".w")
        bias = self.b.constant(np.zeros(out, np.float32), name + ".b")
        return self.act(self.b.op("dense", x, w, bias, name=name), act)

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "relu6":
            return self.b.op("clip", x, min=0.0, max=6.0)
        return self.b.op(act, x)

    def layernorm(self, x: str, name: str = "ln") -> str:
        c = self.shape(x)[-1]
        scale = self.b.constant(np.ones(c, np.float32), name + ".scale")
        bias = self.b.constant(np.zeros(c, np.float32), name + ".bias")
        return self.b.op("layernorm", x, scale, bias, axis=len(self.shape(x)) - 1, epsilon=1e-5, name=name)

    def add(self, a: str, b: str) -> str:
        return self.b.op("add", a, b)

    def classifier(self, x: str, num_classes: int) -> str:
        """Global average pool → [N, C] → layernorm → dense logits.

        Without batch norm, pooled features barely differ between examples at init (each is a mean of
        non-negative activations), so the classifier learns slowly and short trainings vary a lot from seed to
        seed; normalizing the pooled vector removes that (digits, 2 epochs: +2 points, half the seed spread)."""
        n, c = self.shape(x)[:2]
        pooled = self.b.op("reshape", self.b.op("global_avgpool", x), shape=(n, c))
        return self.dense(self.layernorm(pooled, "head.ln"), num_classes, name="classifier")

    def build(self, out: str) -> Graph:
        return self.b.build([out])
