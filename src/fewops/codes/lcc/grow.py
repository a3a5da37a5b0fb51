"""Sequential LCC: grow the codebook by two-term codewords, one add each.

Every row of the target T points at one shifted codeword (free). A *move* for row i builds the
new codeword ``coef_i * v_ref(i) + c * d_j`` (one add, c = +-2^q) from the row's current codeword
and the best dictionary entry for its residual, and points the row at it.

- ``batch=1`` (one move per round, dictionary of all codewords, free re-pointing of every row to a
  better new codeword): the fully sequential algorithm (FS, Lempel-Ziv style), with the candidate
  codewords restricted to "a row's current codeword plus one shifted codeword" so that a step is
  one vectorised search instead of a search over all pairs.
- ``batch`` a fraction (our default for large slices): each round makes the moves of the best
  fraction of rows by error reduction, so adds go where they buy the most, and the last round
  makes just enough moves to meet the target.
"""

from __future__ import annotations

import math

import numpy as np

from fewops.codes.lcc.core import TERM_FLOOR, SliceCode, best_terms, pow2_round, top_terms
from fewops.codes.lcc.shared_moves import Known


class _Book:
    """Growing array of codeword values with their depths."""

    def __init__(self, k: int, capacity: int) -> None:
        self.vals = np.zeros((k + capacity, k))
        self.vals[:k] = np.eye(k)
        self.norm = np.zeros(k + capacity)
        self.norm[:k] = 1.0
        self.depth = np.zeros(k + capacity, dtype=np.int64)
        self.size = k

    def append(self, values: np.ndarray, depth: np.ndarray) -> np.ndarray:
        n = values.shape[0]
        if self.size + n > self.vals.shape[0]:
            grow = max(self.vals.shape[0], n)
            k = self.vals.shape[1]
            self.vals = np.concatenate([self.vals, np.zeros((grow, k))])
            self.norm = np.concatenate([self.norm, np.zeros(grow)])
            self.depth = np.concatenate([self.depth, np.zeros(grow, dtype=np.int64)])
        ids = np.arange(self.size, self.size + n)
        self.vals[ids] = values
        self.norm[ids] = np.einsum("ij,ij->i", values, values)
        self.depth[ids] = depth
        self.size += n
        return ids


def _lookahead(resid, dic, dnorm, width):
    """Per row, of the ``width`` best terms the one whose best follow-up leaves the least error."""
    n, k = resid.shape
    tj, tc, tg = top_terms(resid, dic, width, dnorm, fast=True)
    width = tj.shape[1]
    nxt = resid[:, None, :] - tc[:, :, None] * dic[tj]
    _, _, g2 = best_terms(nxt.reshape(n * width, k), dic, dnorm)
    score = np.where(tg > 0, tg + np.maximum(g2.reshape(n, width), 0.0), -np.inf)
    pick = np.argmax(score, axis=1)
    rows = np.arange(n)
    return tj[rows, pick], tc[rows, pick], np.maximum(tg[rows, pick], 0.0)


def _shared_gain(target, tnorm, err, coef, ref, mj, mc, cand, book):
    """Total error reduction over all rows if each candidate codeword were built."""
    vals = coef[cand, None] * book.vals[ref[cand]] + mc[cand, None] * book.vals[mj[cand]]
    vn = np.einsum("ij,ij->i", vals, vals)
    g = target @ vals.T  # (rows, candidates)
    alpha = np.divide(g, vn, out=np.zeros_like(g), where=vn > 0)
    c = pow2_round(alpha)
    new_err = tnorm[:, None] - (2.0 * c * g - c * c * vn)
    return np.maximum(err[:, None] - new_err, 0.0).sum(axis=0)


def grow(
    target: np.ndarray,
    budget: float,
    *,
    batch: float = 0.5,
    per_round: int | None = None,
    keep_depth: int | None = None,
    realias: bool | None = None,
    max_depth: int | None = None,
    max_rounds: int = 100_000,
    start_terms: bool = True,
    lookahead: int = 0,
    jitter: float = 0.0,
    shared_gain: bool = False,
    share: bool = False,
    seed: int = 0,
    on_step=None,
) -> SliceCode:
    """Grow codewords until ||T - T_hat||^2 <= budget (or no move helps).

    ``batch``: moves per round as a fraction (0, 1] of the movable rows; ``per_round`` instead
    fixes the number of moves per round (1: fully sequential).
    ``keep_depth``: the dictionary a row searches after its residual changed: every codeword
    ever built (None), or only the inputs, the codewords of depth <= keep_depth and every row's
    current codeword (cheaper for tall slices; late codewords are nearly parallel to the rows
    they approximate, so they add little). Rows whose residual did not change search only the
    codewords new since the last round.
    ``realias``: after each round let every row re-point, for free, to a new codeword that
    approximates it better (default: on when keep_depth is None).
    ``lookahead``: choose a row's term among its ``lookahead`` best by the gain of this term plus
    the best next one (a two-step beam, as in RS); 0 or 1: plain greedy.
    ``jitter``: randomise the order of moves whose gains differ by less than this fraction
    (seeded by ``seed``); 0 keeps the search deterministic greedy.
    ``shared_gain``: rank the candidate codewords by the error they remove from every row that
    would re-point to them (the FS criterion "most lowers the total error"), not only their own
    row's; costs rows x candidates work per round.
    ``max_depth``: limit on the codeword depth (adder depth) of the moves.
    ``share``: moves that build the same codeword (up to sign and shift) share one add, and a
    move onto a codeword that already exists is free: a round ranks the new codewords by the
    summed gain of all rows that take them, and counts adds per distinct new codeword
    (:class:`fewops.codes.lcc.shared_moves.Known`).
    """
    if realias is None:
        realias = keep_depth is None
    if per_round is None and not 0 < batch <= 1:
        raise ValueError(f"batch must be a fraction in (0, 1]; got {batch}.")
    n, k = target.shape
    rng = np.random.default_rng(seed)
    book = _Book(k, capacity=4 * n + 16)
    known = Known(book.vals[:k]) if share else None
    tnorm = np.einsum("ij,ij->i", target, target)
    # Start: every row points at its best single shifted input (no adds).
    ref = np.full(n, -1, dtype=np.int64)
    coef = np.zeros(n)
    if start_terms:
        j, c, g = best_terms(target, book.vals[:k], book.norm[:k])
        ok = g > TERM_FLOOR * budget
        ref[ok], coef[ok] = j[ok], c[ok]
    approx = np.where(ref[:, None] >= 0, coef[:, None] * book.vals[np.maximum(ref, 0)], 0.0)
    resid = target - approx
    err = np.einsum("ij,ij->i", resid, resid)
    total = float(err.sum())
    terms_cw: list[np.ndarray] = []
    terms_src: list[np.ndarray] = []
    terms_coef: list[np.ndarray] = []
    # Incremental search state for the "all" dictionary.
    cache_j = np.zeros(n, dtype=np.int64)
    cache_c = np.zeros(n)
    cache_g = np.zeros(n)
    stale = np.ones(n, dtype=bool)
    seen = 0
    rounds = 0
    limit = max_depth if max_depth is not None else np.iinfo(np.int64).max
    while total > budget and rounds < max_rounds:
        rounds += 1
        movable = (ref >= 0) & (err > 0) & (book.depth[np.maximum(ref, 0)] < limit)
        if not movable.any():
            break
        norm = book.norm[: book.size].copy()
        norm[book.depth[: book.size] >= limit] = 0.0  # entries too deep to use
        rows = np.flatnonzero(stale & movable)
        if rows.size:
            if keep_depth is None:
                ids = np.arange(book.size)
            else:
                early = np.flatnonzero(book.depth[: book.size] <= keep_depth)
                ids = np.union1d(early, ref[ref >= 0])
            ids = ids[norm[ids] > 0]
            if lookahead > 1:
                j, c, g = _lookahead(resid[rows], book.vals[ids], norm[ids], lookahead)
            else:
                j, c, g = best_terms(resid[rows], book.vals[ids], norm[ids])
            cache_j[rows], cache_c[rows], cache_g[rows] = ids[j], c, g
        fresh = np.flatnonzero(~stale & movable)
        if fresh.size and book.size > seen:
            new = np.arange(seen, book.size)
            j, c, g = best_terms(resid[fresh], book.vals[new], norm[new])
            better = g > cache_g[fresh]
            f = fresh[better]
            cache_j[f], cache_c[f], cache_g[f] = new[j[better]], c[better], g[better]
        stale[:] = False
        seen = book.size
        mj, mc, mg = cache_j, cache_c, np.where(movable, cache_g, 0.0)
        cand = np.flatnonzero(mg > TERM_FLOOR * budget)  # no terms too small to matter
        if cand.size == 0:
            break
        rank = mg[cand]
        if shared_gain and realias:
            rank = _shared_gain(target, tnorm, err, coef, ref, mj, mc, cand, book)
        if jitter > 0:  # randomised order of near-equal moves (restarts with different seeds)
            rank = rank * (1.0 + jitter * rng.random(cand.size))
        if per_round is not None:
            count = int(per_round)
        else:
            count = math.ceil(batch * movable.sum())
        need = total - budget
        if share:
            rows, cw_of, fresh_new, lead = known.plan(
                cand, rank, mg, coef, ref, mj, mc, book, max(1, count), need
            )
        else:
            order = cand[np.argsort(-rank, kind="stable")]
            order = order[: max(1, count)]
            reach = np.cumsum(mg[order])
            if reach[-1] >= need:  # the last round: only as many moves as the target needs
                order = order[: int(np.searchsorted(reach, need)) + 1]
            rows = order
            fresh_new = rows
        src_j = mj[fresh_new]
        values = (
            coef[fresh_new, None] * book.vals[ref[fresh_new]]
            + mc[fresh_new, None] * book.vals[src_j]
        )
        depth = np.maximum(book.depth[ref[fresh_new]], book.depth[src_j]) + 1
        new_ids = book.append(values, depth)
        terms_cw.append(np.repeat(new_ids - k, 2))
        terms_src.append(np.stack([ref[fresh_new], src_j], axis=1).ravel())
        terms_coef.append(np.stack([coef[fresh_new], mc[fresh_new]], axis=1).ravel())
        if share:
            ids, scale = known.settle(new_ids, cw_of, lead, values)
            ref[rows], coef[rows] = ids, scale
            resid[rows] = target[rows] - coef[rows, None] * book.vals[ref[rows]]
        else:
            ref[rows], coef[rows] = new_ids, 1.0
            resid[rows] = target[rows] - book.vals[new_ids]
        err[rows] = np.einsum("ij,ij->i", resid[rows], resid[rows])
        stale[rows] = True
        if realias:
            j, c, g = best_terms(target, book.vals[new_ids], book.norm[new_ids])
            better = (tnorm - g < err * (1 - 1e-9)) & (g > 0) & (new_ids[j] != ref)
            rows = np.flatnonzero(better)
            ref[rows], coef[rows] = new_ids[j[rows]], c[rows]
            resid[rows] = target[rows] - coef[rows, None] * book.vals[ref[rows]]
            err[rows] = np.einsum("ij,ij->i", resid[rows], resid[rows])
            stale[rows] = True
        total = float(err.sum())
        if on_step is not None:
            on_step(total)
    m = book.size - k
    code = SliceCode(
        num_rows=n,
        num_inputs=k,
        term_cw=np.concatenate(terms_cw) if terms_cw else np.zeros(0, dtype=np.int64),
        term_src=np.concatenate(terms_src) if terms_src else np.zeros(0, dtype=np.int64),
        term_coef=np.concatenate(terms_coef) if terms_coef else np.zeros(0),
        level=book.depth[k : k + m].copy(),
        out_src=ref,
        out_coef=np.where(ref >= 0, coef, 1.0),
    )
    code.info.update(rounds=rounds, err=total)
    return code
