"""Graph → graph passes. Every pass is a pure function whose output passes :func:`ir.verify.verify`."""

from ir.passes.fold import fold_batchnorm, fold_constants, remove_dead_nodes, simplify

__all__ = ["fold_batchnorm", "fold_constants", "remove_dead_nodes", "simplify"]
