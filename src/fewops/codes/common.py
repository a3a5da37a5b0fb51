"""Helpers shared by the weight codes: input checks, SQNR, dyadic scales."""

from __future__ import annotations

import math

import numpy as np


def check_matrix(w, name: str = "W") -> np.ndarray:
    """A finite 2-D float64 copy of ``w``, or a ValueError/TypeError saying what is wrong."""
    if hasattr(w, "detach"):
        w = w.detach().cpu().numpy()
    if np.iscomplexobj(w):
        raise TypeError(
            f"{name} must be a real matrix; got complex values (dtype {np.asarray(w).dtype})."
        )
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric matrix; got {type(w).__name__}.") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix (out, in); got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite entries (NaN or inf), "
            f"first at [{i}, {j}] = {arr[i, j]}."
        )
    return arr


def sqnr_db(w, w_hat) -> float:
    """20 log10(||W||_F / ||W - W_hat||_F); inf for an exact match."""
    w = np.asarray(w, dtype=np.float64)
    w_hat = np.asarray(w_hat, dtype=np.float64)
    if w.shape != w_hat.shape:
        raise ValueError(f"SQNR needs matrices of one shape; got {w.shape} and {w_hat.shape}.")
    err = np.linalg.norm(w - w_hat)
    ref = np.linalg.norm(w)
    if err == 0:
        return math.inf
    if ref == 0:
        return -math.inf
    return float(20.0 * np.log10(ref / err))


def dyadic(value: float, bits: int = 16) -> tuple[int, int]:
    """(m, e) with value ~ m * 2**e and |m| < 2**bits: a scale a fixed-point multiplier can apply."""
    if not math.isfinite(value):
        raise ValueError(f"A scale must be finite; got {value}.")
    if value == 0:
        return 0, 0
    _, exp = math.frexp(abs(value))  # abs(value) = f * 2**exp, 0.5 <= f < 1
    e = exp - bits
    m = round(value / 2.0**e)
    if abs(m) >= 2**bits:  # rounding carried into a new bit
        m, e = round(m / 2), e + 1
    return int(m), int(e)


def dyadic_value(m: int, e: int) -> float:
    return math.ldexp(float(m), int(e))
