"""Kernels shared by the LCC algorithms: power-of-two terms, the add rule, the slice code.

A slice code describes one column slice T (N x K) as a set of *codewords*. Ids 0..K-1 are the
slice's inputs; every later id is a codeword built from earlier ones as a sum of shifted signed
terms (one row of a wiring matrix F_p). Each row of T is finally one reference: a codeword times
+-2^e, or zero. This one form covers every algorithm: a DMP layer is a batch of codewords with up
to S terms each, a fully sequential step is one codeword with two terms.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# Rows of the gain matrix handled at once: bounds the work arrays to about CHUNK_ENTRIES floats.
CHUNK_ENTRIES = 1 << 21
# Searches of at least this many (row, codeword) pairs run in float32 (torch); smaller ones are
# exact in float64. FAST_CHUNK bounds the float32 work arrays; FAST_THREADS threads share them
# (the decompose workers set it to 1: they already use every core). 2^19 pairs: a 1024-row slice
# with a 512-codeword dictionary; the float32 kernel is about 6x cheaper there (1024 x 10 at
# 40 dB, grow: 0.1 s of CPU instead of 0.65 s), while 256-row slices (at most ~2000 codewords)
# keep the exact search.
FAST_ENTRIES = 1 << 19
FAST_CHUNK = 1 << 19
FAST_THREADS = 2
# A term must lower the slice's squared error by more than this fraction of the error budget.
# Smaller terms cannot matter for the target (a whole row of them is far below the budget), and
# they would cost an add and a very fine shift (2^-170 on near-zero rows: huge hardware widths).
TERM_FLOOR = 1e-9
# Exponents of power-of-two coefficients stay in this range (far beyond any useful SQNR).
MIN_EXP, MAX_EXP = -400, 400


def pow2_round(alpha: np.ndarray) -> np.ndarray:
    """The signed power of two nearest to each value (|.| distance); 0 stays 0.

    Of the two powers of two bracketing |alpha|, the upper one is nearer from 1.5 * lower on,
    which is also where its least-squares gain overtakes the lower one's.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    m, e = np.frexp(np.abs(alpha))  # |alpha| = m 2^e, 0.5 <= m < 1
    e = np.clip(np.where(m >= 0.75, e, e - 1), MIN_EXP, MAX_EXP)
    return np.where(alpha == 0, 0.0, np.copysign(np.ldexp(1.0, e), alpha))


def pow2_exponent(c: np.ndarray) -> np.ndarray:
    """Exponent e of +-2^e values (which must be exact powers of two)."""
    _, e = np.frexp(np.abs(np.asarray(c, dtype=np.float64)))
    return (e - 1).astype(np.int64)


def split_pow2(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spec's add rule: write each value as signed powers of two, greedily.

    Subtract the nearest power of two until nothing is left. Returns ``(index, exponent, sign)``
    arrays, one entry per term, where ``index`` points into the flattened ``values``. Values must
    be dyadic rationals (they are: sums of shifted powers of two).
    """
    v = np.asarray(values, dtype=np.float64).ravel().copy()
    idx_parts, exp_parts, sign_parts = [], [], []
    alive = np.flatnonzero(v != 0)
    for _ in range(2200):  # a float64 dyadic has at most ~2100 significant binary places
        if alive.size == 0:
            break
        p = pow2_round(v[alive])
        idx_parts.append(alive)
        exp_parts.append(pow2_exponent(p))
        sign_parts.append(np.where(p > 0, 1, -1).astype(np.int64))
        v[alive] -= p
        alive = alive[v[alive] != 0]
    else:  # pragma: no cover - impossible for finite float64 input
        raise ValueError("split_pow2 did not terminate; the values are not dyadic.")
    if not idx_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return np.concatenate(idx_parts), np.concatenate(exp_parts), np.concatenate(sign_parts)


def row_adds(row) -> int:
    """Adds of one wiring row by the spec's rule: (number of power-of-two terms) - 1, 0 if empty."""
    idx, _, _ = split_pow2(np.asarray(row, dtype=np.float64))
    return max(int(idx.shape[0]) - 1, 0)


def _chunks(n: int, m: int):
    step = max(1, CHUNK_ENTRIES // max(m, 1))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _refine(resid, dic, dnorm, j):
    """Exact (float64) coefficient and gain of the chosen codeword j of every row."""
    g = np.einsum("ij,ij->i", resid, dic[j])
    dn = dnorm[j]
    alpha = np.divide(g, dn, out=np.zeros_like(g), where=dn > 0)
    c = pow2_round(alpha)
    gain = 2.0 * c * g - c * c * dn
    return c, np.where(dn > 0, gain, 0.0)


def _fast_argmax(resid: np.ndarray, dic: np.ndarray, dnorm: np.ndarray) -> np.ndarray:
    """Index of the best power-of-two term per row, searched in float32 with torch.

    The nearest power of two to a > 0 is the largest power of two <= 4a/3: masking the mantissa
    bits of 4a/3 gives it without a logarithm. Row chunks run on up to FAST_THREADS threads with
    one torch thread each, so results do not depend on the machine's thread settings.
    """
    import torch  # heavy: torch, only for the float32 search on big slices; codes stay numpy

    dic_t = torch.from_numpy(np.ascontiguousarray(dic.T, dtype=np.float32))
    dn = torch.from_numpy(dnorm.astype(np.float32))
    inv = torch.from_numpy(
        np.divide(4.0 / 3.0, dnorm, out=np.zeros_like(dnorm), where=dnorm > 0).astype(np.float32)
    )
    res_t = torch.from_numpy(np.ascontiguousarray(resid, dtype=np.float32))
    n = resid.shape[0]
    out = np.zeros(n, dtype=np.int64)
    step = max(1, FAST_CHUNK // max(dic.shape[0], 1))

    def run(lo: int) -> None:
        hi = min(n, lo + step)
        g = (res_t[lo:hi] @ dic_t).abs_()
        a = g * inv
        c = (a.view(torch.int32) & 0x7F800000).view(torch.float32)
        gain = torch.addcmul(g.mul_(2.0), c, dn, value=-1.0).mul_(c)
        out[lo:hi] = gain.argmax(dim=1).numpy()

    _run_chunks(run, list(range(0, n, step)))
    return out


def best_terms(
    resid: np.ndarray, dic: np.ndarray, dnorm: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each residual row, the codeword j and coefficient c = +-2^q that most reduce it.

    ``resid`` is (n, K), ``dic`` (M, K). The gain of c d_j is ||r||^2 - ||r - c d_j||^2
    = 2 c <r, d_j> - c^2 ||d_j||^2. Returns ``(j, c, gain)``; gain <= 0 means no term helps
    (j is then meaningless). Large searches pick j in float32 (see :func:`_fast_argmax`) and
    recompute c and the gain in float64. Small ones are exact: the power-of-two gain is at least 8/9 of the least-squares
    gain, so only entries within that factor of the row's best least-squares gain are checked.
    """
    n = resid.shape[0]
    best_j = np.zeros(n, dtype=np.int64)
    best_c = np.zeros(n, dtype=np.float64)
    best_g = np.zeros(n, dtype=np.float64)
    if n == 0 or dic.shape[0] == 0:
        return best_j, best_c, best_g
    if dnorm is None:
        dnorm = np.einsum("ij,ij->i", dic, dic)
    if n * dic.shape[0] >= FAST_ENTRIES:
        best_j = _fast_argmax(resid, dic, dnorm)
        best_c, best_g = _refine(resid, dic, dnorm, best_j)
        return best_j, best_c, best_g
    usable = dnorm > 0
    inv = np.divide(1.0, dnorm, out=np.zeros_like(dnorm), where=usable)
    for lo, hi in _chunks(n, dic.shape[0]):
        g = resid[lo:hi] @ dic.T  # (rows, M)
        ls = g * g
        ls *= inv
        top = ls.max(axis=1)
        rows, cols = np.nonzero(ls >= (8.0 / 9.0) * top[:, None])
        keep = top[rows] > 0
        rows, cols = rows[keep], cols[keep]
        if rows.size == 0:
            continue
        gv = g[rows, cols]
        c = pow2_round(gv * inv[cols])
        gain = 2.0 * c * gv - c * c * dnorm[cols]
        order = np.lexsort((-gain, rows))
        first = np.ones(order.shape[0], dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        pick = order[first]
        r = rows[pick] + lo
        best_j[r] = cols[pick]
        best_c[r] = c[pick]
        best_g[r] = gain[pick]
    return best_j, best_c, best_g


def _fast_top(resid, dic, dnorm, k):
    """Float32 (torch) candidates for :func:`top_terms`: the 3k best least-squares gains.

    The power-of-two gain lies between 8/9 and 1 of the least-squares gain, so the k best
    power-of-two terms are almost always among the 3k best least-squares ones; the caller
    scores the candidates exactly in float64.
    """
    import torch  # heavy: torch, only for the float32 search on big slices; codes stay numpy

    width = min(3 * k, dic.shape[0])
    dic_t = torch.from_numpy(np.ascontiguousarray(dic.T, dtype=np.float32))
    inv = torch.from_numpy(
        np.divide(1.0, dnorm, out=np.zeros_like(dnorm), where=dnorm > 0).astype(np.float32)
    )
    res_t = torch.from_numpy(np.ascontiguousarray(resid, dtype=np.float32))
    n = resid.shape[0]
    out = np.zeros((n, width), dtype=np.int64)
    step = max(1, FAST_CHUNK // max(dic.shape[0], 1))

    def run(lo: int) -> None:
        hi = min(n, lo + step)
        g = res_t[lo:hi] @ dic_t
        ls = g.mul_(g).mul_(inv)
        out[lo:hi] = torch.topk(ls, width, dim=1, sorted=False).indices.numpy()

    _run_chunks(run, list(range(0, n, step)))
    return out


def _run_chunks(run, starts: list[int]) -> None:
    """``run(lo)`` for every chunk start on up to FAST_THREADS threads, one torch thread each
    (each chunk writes its own rows, so the result does not depend on the thread count)."""
    import torch  # heavy: torch, only for the float32 search on big slices; codes stay numpy

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if len(starts) > 1 and FAST_THREADS > 1:
            with ThreadPoolExecutor(max_workers=FAST_THREADS) as pool:
                list(pool.map(run, starts))
        else:
            for lo in starts:
                run(lo)
    finally:
        torch.set_num_threads(old)


def top_terms(
    resid: np.ndarray,
    dic: np.ndarray,
    k: int,
    dnorm: np.ndarray | None = None,
    fast: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best single terms per residual row (as :func:`best_terms`), best first.

    Returns (n, k) arrays ``(j, c, gain)``; where fewer than k terms help, gains are <= 0.
    With ``fast``, searches of >= FAST_ENTRIES pairs take their candidates from
    :func:`_fast_top` (float32) and score them exactly (grow's lookahead uses it; the
    published algorithms keep the exhaustive search).
    """
    n, m = resid.shape[0], dic.shape[0]
    k = max(1, min(int(k), m))
    if dnorm is None:
        dnorm = np.einsum("ij,ij->i", dic, dic)
    if fast and n * m >= FAST_ENTRIES and 3 * k < m:
        cand = _fast_top(resid, dic, dnorm, k)
        g = np.einsum("ik,ijk->ij", resid, dic[cand])
        dn = dnorm[cand]
        alpha = np.divide(g, dn, out=np.zeros_like(g), where=dn > 0)
        c = pow2_round(alpha)
        gain = np.where(dn > 0, 2.0 * c * g - c * c * dn, -np.inf)
        order = np.argsort(-gain, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(cand, order, axis=1),
            np.take_along_axis(c, order, axis=1),
            np.take_along_axis(gain, order, axis=1),
        )
    out_j = np.zeros((n, k), dtype=np.int64)
    out_c = np.zeros((n, k), dtype=np.float64)
    out_g = np.full((n, k), -np.inf)
    if n == 0 or m == 0:
        return out_j, out_c, out_g
    if dnorm is None:
        dnorm = np.einsum("ij,ij->i", dic, dic)
    usable = dnorm > 0
    inv = np.divide(1.0, dnorm, out=np.zeros_like(dnorm), where=usable)
    for lo, hi in _chunks(n, m * 2):
        g = resid[lo:hi] @ dic.T
        c = pow2_round(g * inv)
        gain = 2.0 * c * g - c * c * dnorm
        gain[:, ~usable] = -np.inf
        if k < m:
            part = np.argpartition(-gain, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(m), (hi - lo, m)).copy()
        pg = np.take_along_axis(gain, part, axis=1)
        order = np.argsort(-pg, axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        out_j[lo:hi] = part
        out_c[lo:hi] = np.take_along_axis(c, part, axis=1)
        out_g[lo:hi] = np.take_along_axis(pg, order, axis=1)
    return out_j, out_c, out_g


@dataclass
class SliceCode:
    """An LCC code of one slice: codewords as signed power-of-two sums of earlier ids.

    Ids ``0..K-1`` are the inputs; codeword ``K + m`` has the terms ``term_src[t] * term_coef[t]``
    for all t with ``term_cw[t] == m``, each src an earlier id. Row i of the slice is
    ``out_coef[i] * value(out_src[i])`` (``out_src[i] == -1``: zero). ``level[m]`` is the codeword's
    step (wiring layer) number.
    """

    num_rows: int
    num_inputs: int
    term_cw: np.ndarray
    term_src: np.ndarray
    term_coef: np.ndarray
    level: np.ndarray
    out_src: np.ndarray
    out_coef: np.ndarray
    algorithm: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_codewords(self) -> int:
        return int(self.level.shape[0])

    def values(self) -> np.ndarray:
        """Float values (ids x K) of the inputs and codewords (exact while they fit float64)."""
        k, m = self.num_inputs, self.num_codewords
        vals = np.zeros((k + m, k))
        vals[:k] = np.eye(k)
        if self.term_cw.size == 0:
            return vals
        # Terms sorted by (level, codeword): every level reads only lower levels, so one
        # vectorised sum per level (reduceat over each codeword's run of terms).
        lvl = self.level[self.term_cw]
        order = np.lexsort((self.term_cw, lvl))
        cw, src, coef, lvl = (x[order] for x in (self.term_cw, self.term_src, self.term_coef, lvl))
        edges = np.flatnonzero(np.diff(lvl)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, cw.size], strict=True):
            c = cw[lo:hi]
            starts = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
            part = coef[lo:hi, None] * vals[src[lo:hi]]
            vals[k + c[starts]] = np.add.reduceat(part, starts, axis=0)
        return vals

    def matrix(self) -> np.ndarray:
        """The float approximation T_hat (rows x K)."""
        vals = self.values()
        out = np.zeros((self.num_rows, self.num_inputs))
        used = self.out_src >= 0
        out[used] = self.out_coef[used, None] * vals[self.out_src[used]]
        return out

    def live(self) -> np.ndarray:
        """Boolean mask of codewords that some row depends on (dead ends are False)."""
        k, m = self.num_inputs, self.num_codewords
        live = np.zeros(k + m, dtype=bool)
        live[self.out_src[self.out_src >= 0]] = True
        order = np.argsort(self.term_cw, kind="stable")
        cw, src = self.term_cw[order], self.term_src[order]
        for lvl in np.unique(self.level)[::-1]:
            members = np.flatnonzero((self.level == lvl) & live[k:])
            if members.size == 0:
                continue
            sel = np.isin(cw, members)
            live[src[sel]] = True
        return live[k:]

    def rule_adds(self) -> int:
        """Adds of the live wiring rows by the spec's rule (no slice-combination adds)."""
        k = self.num_inputs
        live = self.live()
        keep = live[self.term_cw]
        cw, src, coef = self.term_cw[keep], self.term_src[keep], self.term_coef[keep]
        if cw.size == 0:
            return 0
        key = cw * (k + self.num_codewords) + src
        uniq, inv = np.unique(key, return_inverse=True)
        total = np.zeros(uniq.shape[0])
        np.add.at(total, inv, coef)
        idx, _, _ = split_pow2(total)
        terms = np.bincount(uniq[idx] // (k + self.num_codewords), minlength=self.num_codewords)
        return int(np.maximum(terms[live] - 1, 0).sum())
