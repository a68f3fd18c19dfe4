"""Graph → graph passes. Every pass is a pure function whose output passes :func:`ir.verify.verify`."""

from ir.passes.fold import fold_batchnorm, fold_bias, fold_constants, remove_dead_nodes, simplify
from ir.passes.layout import select_layout

__all__ = ["fold_batchnorm", "fold_bias", "fold_constants", "remove_dead_nodes", "select_layout", "simplify"]
