"""Shared moves for the codebook growth (``grow(..., share=True)``).

A move of row i builds the codeword ``coef_i v_ref(i) + c v_j``. When several rows of one round
build the same value up to a sign and a shift (rows that share a codeword and pick the same next
term), one adder serves them all, since shifts and signs are free wiring; when the value already
is a codeword, the move costs nothing. So a round ranks the *distinct* new codewords by the summed
gain of the rows that take them (moves onto existing codewords first) and spends its adds on
distinct codewords. Values are compared after division by the power of two and sign of their first
nonzero entry (grow's codeword values are exact dyadic floats; an inexact one can only miss a
match or point a row at a real codeword whose value differs in the last bit, which its error
accounts for).
"""

from __future__ import annotations

import numpy as np


def canonical(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised rows, lead): ``values = lead[:, None] * rows``, lead = +-2^e, and the first
    nonzero entry of every row in [1, 2). Zero rows keep lead 1."""
    n = values.shape[0]
    first = np.argmax(values != 0, axis=1)
    f = values[np.arange(n), first]
    _, e = np.frexp(np.abs(f))
    lead = np.where(f == 0, 1.0, np.copysign(np.ldexp(1.0, e - 1), f))
    return values / lead[:, None] + 0.0, lead  # + 0.0: no -0.0 in the keys


class Known:
    """Every codeword value seen so far (canonical key -> id and lead) and one round's plan."""

    def __init__(self, inputs: np.ndarray) -> None:
        self.ids: dict[bytes, int] = {}
        self.lead: dict[int, float] = {}
        rows, lead = canonical(inputs)
        for i in range(rows.shape[0]):
            self._add(rows[i].tobytes(), i, float(lead[i]))
        self._pending = None

    def _add(self, key: bytes, ident: int, lead: float) -> None:
        if key not in self.ids:
            self.ids[key] = ident
            self.lead[ident] = lead

    def plan(self, cand, rank, mg, coef, ref, mj, mc, book, count: int, need: float):
        """Moves of one round: ``(rows, group, first_rows, lead)``.

        ``rows`` are the rows that move, ``first_rows`` the rows whose codeword is appended (one
        per distinct new value, at most ``count``), in the order of the new ids.
        """
        vals = coef[cand, None] * book.vals[ref[cand]] + mc[cand, None] * book.vals[mj[cand]]
        rows_c, lead_c = canonical(vals)
        uniq, inv = np.unique(rows_c, axis=0, return_inverse=True)
        inv = inv.ravel()
        exist = np.array([self.ids.get(u.tobytes(), -1) for u in uniq], dtype=np.int64)
        group_rank = np.bincount(inv, weights=rank, minlength=uniq.shape[0])
        key = np.where(exist[inv] >= 0, np.inf, group_rank[inv])
        order = np.argsort(-key, kind="stable")
        g = inv[order]
        first = np.zeros(order.size, dtype=bool)
        # The first member of each new group pays the add; later members ride along.
        _, pos = np.unique(g, return_index=True)
        first[pos] = True
        first &= exist[g] < 0
        cost = np.cumsum(first)
        keep = int(np.searchsorted(cost, count, side="right"))
        order, g, first = order[:keep], g[:keep], first[:keep]
        reach = np.cumsum(mg[cand[order]])
        if reach.size and reach[-1] >= need:  # the last round: just enough moves
            cut = int(np.searchsorted(reach, need)) + 1
            order, g, first = order[:cut], g[:cut], first[:cut]
        new_index = np.full(uniq.shape[0], -1, dtype=np.int64)
        new_index[g[first]] = np.arange(int(first.sum()))
        rows = cand[order]
        self._pending = (exist[g], new_index[g], [uniq[x].tobytes() for x in g[first]])
        return rows, g, rows[first], lead_c[order]

    def settle(self, new_ids: np.ndarray, group, lead: np.ndarray, values: np.ndarray):
        """Register the appended codewords; every moved row's (id, coefficient)."""
        exist, new_index, keys = self._pending
        _, new_lead = canonical(values)
        for key, ident, ld in zip(keys, new_ids.tolist(), new_lead.tolist(), strict=True):
            self._add(key, ident, ld)
        ids = np.where(exist >= 0, exist, new_ids[np.maximum(new_index, 0)] if new_ids.size else 0)
        base = np.array([self.lead[int(i)] for i in ids])
        return ids, lead / base
