"""Dense MAC baseline: every weight a general multiplier, every row an adder tree."""

from __future__ import annotations

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import check_matrix
from fewops.codes.csd import quantize
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms


def integer_matrix_graph(w_int: np.ndarray, meta: dict | None = None):
    """Shift-add graph of y = W_int x with one multiplier per weight and an adder tree per row."""
    out, inp = w_int.shape
    builder = GraphBuilder()
    x = builder.inputs(inp)
    row, col = np.divmod(np.arange(out * inp), inp)
    products = builder.mul(x[col], w_int[row, col])
    ones = np.ones(row.shape[0], dtype=np.int64)
    sums = sum_terms(builder, products, np.zeros_like(row), ones, row, out)
    emit_outputs(builder, *sums)
    return builder.build(meta=meta)


def encode(w, bits: int = 16) -> CodedMatrix:
    """Code W as ``bits``-bit fixed-point weights with one multiplier each (in mults, in-1 adds)."""
    w = check_matrix(w)
    w_int, m, e = quantize(w, bits)
    graph = integer_matrix_graph(w_int, meta={"code": "dense", "bits": int(bits)})
    return CodedMatrix(
        method="dense",
        graph=graph,
        scale_m=m,
        scale_e=e,
        weight_bits=int(bits) * w.size,
        params=int(w.size),
        config={"bits": int(bits)},
    )
