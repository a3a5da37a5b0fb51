"""One network layer's share + LCC as a parallel task (numpy only, so workers never load torch)."""

from __future__ import annotations

import time

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.lcc.column_sharing import share_and_decompose


def code_layer(item: tuple[str, np.ndarray, float, dict]) -> tuple[CodedMatrix, float]:
    """Code ``item`` = (layer name, its (out, in) matrix, SQNR in dB, ``share_and_decompose``
    keywords); returns the coded matrix and the seconds it took. A failure names the layer."""
    name, w, db, kwargs = item
    t0 = time.perf_counter()
    try:
        coded = share_and_decompose(w, db, **kwargs)
    except ValueError as exc:
        raise ValueError(
            f"LCC of layer {name!r} ({w.shape[0]}x{w.shape[1]}) failed: {exc}"
        ) from exc
    return coded, time.perf_counter() - t0
