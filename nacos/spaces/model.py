"""``model``: the operator rewrites of Grassroots Operator Search (GOS) on one imported model, as a search space.

Each variable is one operator of the model that GOS can rewrite (:func:`operators.gos.candidates`); its choices are
``"keep"`` and the names of that operator's rewrites (``"lowrank:0.5"``, ``"bottleneck:0.5>dwsep:1"`` …). So the
joint optimizer (``nacos optimize --model MODEL.onnx``) searches a model's rewrites like any other space, and the
first choice everywhere (:meth:`ModelSpace.original`) is the model itself.

    space = spaces.from_model(nacos.load("model.onnx"))
    graph = space.to_graph(space.sample(rng))        # weights transferred from the model, no seed involved

Every combination is a valid network: rewrites are found one node at a time, so two of them can clash (a rewrite
can remove a node another one targets, or a pair can break the IR). ``to_graph`` then keeps the failing nodes as
they are and records them in :attr:`ModelSpace.fallbacks` — the arch still builds, deterministically, into the
network nearest to what it asked for, which is what the base class promises to an optimizer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from ir.analysis import graph_cost, node_cost
from ir.graph import Graph
from nacos.spaces.base import Arch, SearchSpace, Variable


class ModelSpace(SearchSpace):
    """One categorical variable per rewritable operator of ``graph`` (see the module docstring).

    ``max_variables`` caps the genome: the costliest rewritable operators by FLOPs are kept, because they are where
    rewrites pay and a long genome of near-free operators only dilutes the search. ``rewrites_per_node`` caps the
    choices of each (``None``: GOS's default). ``dropped`` names the operators left out by the cap.
    """

    name = "model"
    cache_size = 8   # graphs of a big model are large; an optimizer re-asks mostly for the arch it just made

    def __init__(self, graph: Graph, max_variables: int = 12, rewrites_per_node: int | None = None) -> None:
        from operators.gos import KEEP, RULES, candidates

        if not isinstance(graph, Graph):
            raise TypeError(f"ModelSpace needs an ir.Graph (e.g. nacos.load('model.onnx')), not {type(graph)}")
        if max_variables < 1:
            raise ValueError(f"max_variables must be at least 1, not {max_variables}")
        self.base = graph
        flops = {n.name: node_cost(graph, n).flops for n in graph.compute_nodes}
        # A rule's pattern is a cheap test; generating a node's candidates is not (ResNet-50: ~14 s a conv, SVDs of
        # each trial rewrite), so they are generated costliest first and only until the genome is full: 12 of its
        # 54 convs, ~3 min, instead of ~13 min for all of them and throwing most away.
        order = {n.name: k for k, n in enumerate(graph.nodes)}
        matched = [n.name for n in graph.compute_nodes
                   if any(r.pattern(graph, n) is not None for r in RULES.values())]
        matched.sort(key=lambda n: (-flops[n], order[n]))
        per_node = {} if rewrites_per_node is None else {"max_per_op": int(rewrites_per_node)}
        found: list[tuple[str, list[str]]] = []
        examined = 0
        for node in matched:
            if len(found) == max_variables:
                break
            examined += 1
            found += candidates(graph, [node], **per_node)
        if not found:
            raise ValueError(f"no operator in {graph.name!r} has a GOS rewrite; nothing to search")
        #: rewritable operators (a rule matches) beyond the cap; their rewrites were not generated
        self.dropped: tuple[str, ...] = tuple(matched[examined:])
        total = graph_cost(graph).flops or 1
        found.sort(key=lambda nc: order[nc[0]])   # graph order reads naturally in describe() and reports
        self._vars = tuple(
            Variable(node, (KEEP, *rewrites),
                     f"{graph.node(node).op} {list(graph.node(node).shape)}: {flops[node]:,} FLOPs "
                     f"({100 * flops[node] / total:.1f}% of the model); keep it or one of its GOS rewrites")
            for node, rewrites in found)
        self._cache: OrderedDict[str, Graph] = OrderedDict()
        #: archid -> nodes kept as they are because the arch's rewrite there failed in combination
        self.fallbacks: dict[str, tuple[str, ...]] = {}

    def variables(self) -> tuple[Variable, ...]:
        return self._vars

    def original(self) -> Arch:
        """The arch that keeps every operator: ``to_graph`` gives the model itself."""
        return self.make()

    def to_graph(self, arch: Arch, input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                 seed: int = 0) -> Graph:
        """The model with ``arch``'s rewrites applied (weights transferred, so ``seed`` plays no part).

        ``input_shape`` and ``num_classes`` cannot change an imported model; given, they are checked against it
        (the batch dimension excepted, as ``nacos gos`` does) so that a data set that does not fit is named."""
        self._check_fit(input_shape, num_classes)
        if arch.space != self.name:
            raise ValueError(f"arch of space {arch.space!r} given to the {self.name!r} space")
        key = arch.archid
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        choices = {v.name: arch[v.name] for v in self._vars if arch[v.name] != v.choices[0]}
        graph = self._build(key, choices)
        self._cache[key] = graph
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return graph

    # ---- helpers -------------------------------------------------------------------------------------------
    def _build(self, key: str, choices: dict[str, str]) -> Graph:
        from ir.verify import IRError, verify
        from operators.gos import RewriteError, apply, apply_rewrite

        try:
            return apply(self.base, choices)
        except (RewriteError, IRError):
            pass
        # One node at a time in graph order (as apply does), so a failure is pinned on the node that caused it
        # and the rewrites before it survive.
        graph, kept = self.base, []
        order = {n.name: k for k, n in enumerate(self.base.nodes)}
        for node in sorted(choices, key=order.__getitem__):
            try:
                graph = verify(apply_rewrite(graph, node, choices[node]))
            except (RewriteError, IRError, KeyError):
                kept.append(node)
        self.fallbacks[key] = tuple(kept)
        return verify(graph)

    def _check_fit(self, input_shape: Sequence[int] | None, num_classes: int | None) -> None:
        if input_shape is not None:
            ins = self.base.input_types()
            if len(ins) != 1:
                raise ValueError(f"model {self.base.name!r} has {len(ins)} inputs; an input_shape "
                                 f"{tuple(input_shape)} cannot describe them")
            have = tuple(ins[0].shape)
            want = tuple(int(d) for d in input_shape)
            if len(want) != len(have) or want[1:] != have[1:]:
                raise ValueError(f"input_shape {want} does not fit model {self.base.name!r}, whose input is {have}")
        if num_classes is not None:
            outs = [tuple(t.shape) for t in self.base.output_types()]
            if len(outs) != 1 or not outs[0] or outs[0][-1] != num_classes:
                raise ValueError(f"num_classes {num_classes} does not fit model {self.base.name!r}, whose "
                                 f"output shapes are {outs}")
