"""Dense fixed point in canonical signed digits (CSD): the multiplier-free baseline.

Weights are rounded to b-bit signed integers (scale so that max|W| hits the top code); each integer
is written in CSD (no two adjacent nonzero digits, the fewest nonzero digits of any signed-digit
form), and an output row sums its shifted, signed inputs: (nonzero digits of the row) - 1 adds.
"""

from __future__ import annotations

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import check_matrix, dyadic, dyadic_value, sqnr_db
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.passes import fold_negations

MAX_BITS = 32


def csd_digits(values) -> np.ndarray:
    """CSD digits of integers, least significant first: shape values.shape + (digits,), in {-1,0,1}."""
    v = np.asarray(values, dtype=np.int64)
    width = int(np.abs(v).max(initial=0)).bit_length() + 1
    digits = np.zeros(v.shape + (width,), dtype=np.int8)
    for k in range(width):
        odd = (v & 1) != 0
        # 2 - (v mod 4) is +1 for v = 1 (mod 4) and -1 for v = 3 (mod 4): the CSD choice.
        d = np.where(odd, 2 - (v & 3), 0)
        digits[..., k] = d
        v = (v - d) >> 1
    return digits


def quantize(w: np.ndarray, bits: int) -> tuple[np.ndarray, int, int]:
    """Round W to ``bits``-bit signed integers; returns (W_int, m, e) with W ~ W_int * m * 2**e."""
    if not 2 <= int(bits) <= MAX_BITS:
        raise ValueError(f"Fixed-point width must be between 2 and {MAX_BITS} bits; got {bits}.")
    top = 2 ** (int(bits) - 1) - 1
    peak = float(np.abs(w).max())
    if peak == 0:
        return np.zeros(w.shape, dtype=np.int64), 1, 0
    m, e = dyadic(peak / top)
    w_int = np.clip(np.round(w / dyadic_value(m, e)), -top, top).astype(np.int64)
    return w_int, m, e


def integer_matrix_graph(w_int: np.ndarray, meta: dict | None = None):
    """Shift-add graph of y = W_int x with every weight in CSD; signs fold into subtractions."""
    out, inp = w_int.shape
    digits = csd_digits(w_int)  # (out, in, D)
    row, col, pos = np.nonzero(digits)
    builder = GraphBuilder()
    x = builder.inputs(inp)
    sums = sum_terms(builder, x[col], pos, digits[row, col, pos].astype(np.int64), row, out)
    emit_outputs(builder, *sums)
    return fold_negations(builder.build(meta=meta))


def encode(w, bits: int) -> CodedMatrix:
    """Code W at ``bits``-bit fixed point in CSD."""
    w = check_matrix(w)
    w_int, m, e = quantize(w, bits)
    graph = integer_matrix_graph(w_int, meta={"code": "csd", "bits": int(bits)})
    return CodedMatrix(
        method="csd",
        graph=graph,
        scale_m=m,
        scale_e=e,
        weight_bits=int(bits) * w.size,
        params=int(w.size),
        config={"bits": int(bits)},
        extra={"nonzero_digits": int(np.count_nonzero(csd_digits(w_int)))},
    )


def bits_for_sqnr(w, target_db: float, max_bits: int = MAX_BITS) -> int:
    """Smallest width b whose rounding reaches ``target_db`` SQNR (ValueError if none does)."""
    w = check_matrix(w)
    for bits in range(2, max_bits + 1):
        w_int, m, e = quantize(w, bits)
        if sqnr_db(w, w_int * dyadic_value(m, e)) >= target_db:
            return bits
    raise ValueError(
        f"No fixed-point width up to {max_bits} bits reaches {target_db} dB SQNR for this matrix."
    )


def adds_for_integer_matrix(w_int: np.ndarray) -> int:
    """Closed-form CSD cost: per row (nonzero digits) - 1, empty rows free (used by tests)."""
    nz = np.count_nonzero(csd_digits(w_int), axis=(1, 2))
    return int(np.maximum(nz - 1, 0).sum())
