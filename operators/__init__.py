"""Operator definitions (the op table) and, later, operator search (GOS).

Importing this package registers every built-in op with :mod:`ir.registry`.
"""

from operators import conv, elementwise, layout, linalg, norm, pool, shape  # noqa: F401
