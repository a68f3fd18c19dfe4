"""nacos — Neural Architecture and Compiler Optimization co-Search.

Public API::

    graph = nacos.load("model.onnx")                 # or nacos.load(torch_module, (example_input,))
    info = nacos.inspect(graph)                      # per-node FLOPs/params/bytes from the math instructions
    model = nacos.compile(graph)                     # TVM, default schedules, this CPU
    report = nacos.tune(graph, trials=200, db="tune.db")  # schedule search; every measurement kept in tune.db
    result = nacos.optimize("hyt", "digits", out="out/")  # joint network × schedule search → result.pareto
    outputs = model(x)                               # list of numpy arrays
    model.export("out/"); nacos.Compiled.load("out/")

Heavy dependencies (tvm, torch, onnx) are imported on first use, not by ``import nacos``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nacos.api import compile, inspect, load

__version__ = "0.1.0"
__all__ = ["load", "compile", "inspect", "tune", "gos", "optimize", "Compiled", "__version__"]

if TYPE_CHECKING:
    from nacos.compiled import Compiled
    from nacos.operator_search import gos
    from nacos.joint.api import optimize
    from nacos.tuning import tune


def __getattr__(name: str):
    if name == "Compiled":
        from nacos.compiled import Compiled

        return Compiled
    if name == "tune":
        from nacos.tuning import tune

        return tune
    if name == "optimize":
        from nacos.joint.api import optimize

        return optimize
    if name == "gos":
        from nacos.operator_search import gos

        return gos
    raise AttributeError(f"module 'nacos' has no attribute {name!r}")
