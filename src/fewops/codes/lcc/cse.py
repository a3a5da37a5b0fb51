"""Merge codewords that compute the same value up to a sign and a shift (free wiring).

Searches that grow many rows at once build the same codeword more than once: two rows that start
at the same shifted input and pick the same next term in one round each get a private copy of
``x_i + c x_j``. Each copy is an adder; one is enough, since a shift and a sign are free wiring.

The merge is structural and exact (no float comparison): codewords are visited level by level;
each term's source is replaced by its representative (the oldest equal codeword) with the
power-of-two factor between them folded into the coefficient; repeated sources are summed; the
term list, divided by the power of two and sign of its first coefficient, is the codeword's key.
A codeword whose key was seen before becomes a reference to the older one (its value is
``factor * older``), every reader is re-pointed, and it is left as a dead end (which costs 0 and
is dropped by the lowering).

Measured (Gaussian, numpy default_rng(0)): 4096 x 12 at 96.3 dB, grow: 955 of 64904 adds were
copies.
"""

from __future__ import annotations

import numpy as np

from fewops.codes.lcc.core import SliceCode


def _pow2_of(c: np.ndarray) -> np.ndarray:
    """sign(c) * 2^floor(log2 |c|) (exact; 1 where c is 0)."""
    _, e = np.frexp(np.abs(c))
    return np.where(c == 0, 1.0, np.copysign(np.ldexp(1.0, e - 1), c))


def dedupe(code: SliceCode) -> SliceCode:
    """The same code with repeated codewords merged (see the module docstring).

    The value of every row is unchanged bit for bit; the adds never go up.
    """
    k, m = code.num_inputs, code.num_codewords
    if m == 0 or code.term_cw.size == 0:
        return code
    rep = np.arange(k + m)  # representative id of every id
    fac = np.ones(k + m)  # value(id) = fac[id] * value(rep[id]), fac = +-2^e
    lead_of = np.ones(m)  # the normalising factor of each representative's key
    src = code.term_src.copy()
    coef = code.term_coef.copy()
    cw = code.term_cw
    lvl = code.level[cw]
    seen: dict[bytes, int] = {}
    merged = 0
    for level in np.unique(lvl):
        sel = np.flatnonzero(lvl == level)
        # Re-point this level's terms to the representatives of their (older) sources.
        s = src[sel]
        coef[sel] = coef[sel] * fac[s]
        src[sel] = rep[s]
        # Canonical term lists: merge equal sources, sort by source, normalise the first coef.
        c_w, c_s, c_c = cw[sel], src[sel], coef[sel]
        o = np.lexsort((c_s, c_w))
        c_w, c_s, c_c = c_w[o], c_s[o], c_c[o]
        first = np.ones(c_w.size, dtype=bool)
        first[1:] = (c_w[1:] != c_w[:-1]) | (c_s[1:] != c_s[:-1])
        tot = np.bincount(np.cumsum(first) - 1, weights=c_c)
        g_w, g_s = c_w[first], c_s[first]
        keep = tot != 0
        g_w, g_s, tot = g_w[keep], g_s[keep], tot[keep]
        if g_w.size == 0:
            continue
        starts = np.r_[0, np.flatnonzero(np.diff(g_w)) + 1]
        ends = np.r_[starts[1:], g_w.size]
        lead = _pow2_of(tot[starts])
        norm = tot / np.repeat(lead, ends - starts)
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            key = g_s[a:b].tobytes() + norm[a:b].tobytes()
            w = int(g_w[a])
            old = seen.setdefault(key, w)
            lead_of[w] = lead[i]
            if old != w:  # value(w) = lead * key = lead / lead_of[old] * value(old)
                rep[k + w] = rep[k + old]
                fac[k + w] = lead[i] / lead_of[old] * fac[k + old]
                merged += 1
    if merged == 0:
        return code
    out_src = code.out_src.copy()
    out_coef = code.out_coef.copy()
    used = out_src >= 0
    out_coef[used] = out_coef[used] * fac[out_src[used]]
    out_src[used] = rep[out_src[used]]
    new = SliceCode(
        num_rows=code.num_rows,
        num_inputs=k,
        term_cw=cw.copy(),
        term_src=src,
        term_coef=coef,
        level=code.level.copy(),
        out_src=out_src,
        out_coef=out_coef,
        algorithm=code.algorithm,
        info=dict(code.info),
    )
    new.info["merged_codewords"] = merged
    return new
