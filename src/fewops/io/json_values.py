"""Values made fit for JSON: reports and saved-model records go through these two helpers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: mappings become dicts with string keys, tuples lists,
    numpy scalars Python ones, and non-finite floats (an exact layer's SQNR is inf) None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _lists(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def json_safe_dict(entries: Mapping) -> dict:
    """The entries of ``entries`` that survive a JSON round trip unchanged (tuples written as
    lists); the others (arrays, objects, NaN) are dropped."""
    out = {}
    for key, value in dict(entries).items():
        plain = _lists(value)
        try:
            if json.loads(json.dumps(plain)) == plain:
                out[str(key)] = plain
        except (TypeError, ValueError):
            continue
    return out
