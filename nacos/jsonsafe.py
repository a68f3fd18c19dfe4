"""JSON that strict readers accept: NaN and infinities (a failed candidate's latency, a τ of constant data) are
written as null, since ``json.dumps`` would write the non-standard ``NaN`` / ``Infinity``."""

from __future__ import annotations

import json
import math
from typing import Any, Callable


def finite(x: Any) -> Any:
    """``x`` with every non-finite float inside dicts and lists replaced by None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def dumps(obj: Any, default: Callable[[Any], Any] = str, **kwargs: Any) -> str:
    """``json.dumps`` of ``obj`` (``default`` converts what JSON lacks first), non-finite numbers as null."""
    return json.dumps(finite(json.loads(json.dumps(obj, default=default))), allow_nan=False, **kwargs)
