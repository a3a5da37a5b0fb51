"""Lowering of LCC slice codes to one shift-add graph.

Each codeword is an adder tree of its shifted signed terms; every entry of a wiring row is first
written as signed powers of two by the spec's greedy rule (so an entry 3 = 4 - 1 is two terms),
a codeword with one term is pure wiring (no node), and signs travel with the references so that
they fold into subtractions. The slices' outputs are summed per row (counted adds), dead ends are
removed, and negations folded.
"""

from __future__ import annotations

import numpy as np

from fewops.codes.lcc.core import SliceCode, pow2_exponent, split_pow2
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.passes import fold_negations, remove_dead_ends


def merged_terms(code: SliceCode) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Terms of every codeword after merging repeated sources and splitting entries.

    Returns ``(cw, src, exp, sign)``: codeword index (0-based, without the input offset), source
    id, and the power-of-two term ``sign * 2**exp``.
    """
    ids = code.num_inputs + code.num_codewords
    if code.term_cw.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    key = code.term_cw * ids + code.term_src
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.zeros(uniq.shape[0])
    np.add.at(total, inv, code.term_coef)
    idx, exp, sign = split_pow2(total)
    return uniq[idx] // ids, uniq[idx] % ids, exp, sign


def to_graph(codes: list[SliceCode], col_starts, in_dim: int, out_dim: int, meta=None) -> Graph:
    """One graph computing y = sum_s T_hat_s x_s for slice codes over the given columns."""
    builder = GraphBuilder()
    x = builder.inputs(in_dim)
    offsets = np.cumsum([0] + [c.num_codewords for c in codes])
    total = in_dim + int(offsets[-1])
    ref_node = np.full(total, -1, dtype=np.int64)
    ref_shift = np.zeros(total, dtype=np.int64)
    ref_sign = np.ones(total, dtype=np.int64)
    ref_node[:in_dim] = x
    parts = []
    levels = []
    for code, col0, off in zip(codes, col_starts, offsets[:-1], strict=True):
        k = code.num_inputs

        def glob(local, k=k, col0=col0, off=off):
            return np.where(local < k, col0 + local, in_dim + off + local - k)

        cw, src, exp, sign = merged_terms(code)
        parts.append((in_dim + off + cw, glob(src), exp, sign))
        levels.append(code.level)
    if parts:
        cw, src, exp, sign = (np.concatenate(p) for p in zip(*parts, strict=True))
        level = np.concatenate(levels)
    else:
        cw = src = exp = sign = level = np.zeros(0, dtype=np.int64)
    term_level = level[cw - in_dim] if cw.size else cw
    order = np.argsort(term_level, kind="stable")
    cw, src, exp, sign, term_level = (
        cw[order],
        src[order],
        exp[order],
        sign[order],
        term_level[order],
    )
    bounds = np.searchsorted(term_level, np.unique(term_level), side="left").tolist() + [cw.size]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        c, s, e, g = cw[lo:hi], src[lo:hi], exp[lo:hi], sign[lo:hi]
        ok = ref_node[s] >= 0
        members, group = np.unique(c, return_inverse=True)
        node, shift, sgn = sum_terms(
            builder,
            ref_node[s[ok]],
            ref_shift[s[ok]] + e[ok],
            ref_sign[s[ok]] * g[ok],
            group[ok],
            members.shape[0],
        )
        ref_node[members], ref_shift[members], ref_sign[members] = node, shift, sgn
    # Outputs: each slice's row reference, summed over slices per row.
    o_node, o_shift, o_sign, o_row = [], [], [], []
    for code, col0, off in zip(codes, col_starts, offsets[:-1], strict=True):
        k = code.num_inputs
        rows = np.flatnonzero(code.out_src >= 0)
        local = code.out_src[rows]
        g = np.where(local < k, col0 + local, in_dim + off + local - k)
        keep = ref_node[g] >= 0
        rows, g = rows[keep], g[keep]
        c = code.out_coef[rows]
        o_node.append(ref_node[g])
        o_shift.append(ref_shift[g] + pow2_exponent(c))
        o_sign.append(ref_sign[g] * np.where(c < 0, -1, 1))
        o_row.append(rows)
    cat = [
        np.concatenate(p) if p else np.zeros(0, dtype=np.int64)
        for p in (o_node, o_shift, o_sign, o_row)
    ]
    sums = sum_terms(builder, cat[0], cat[1], cat[2], cat[3], out_dim)
    emit_outputs(builder, *sums)
    graph = builder.build(meta=meta)
    return fold_negations(remove_dead_ends(graph))
