"""Layered LCC: discrete matching pursuit (DMP) and its reduced-state beam search (RS).

Every step p re-approximates all rows of the target T with at most S signed power-of-two terms
over the previous step's codewords (step 1: the inputs), T ~ F_P ... F_1 C_0. Steps are added
until the target error is met. Rows are independent, so a step is a few matrix products.
"""

from __future__ import annotations

import numpy as np

from fewops.codes.lcc.core import TERM_FLOOR, SliceCode, best_terms, top_terms


def _pick_dmp(target, dic, s_terms, floor=0.0):
    """Greedy S-term approximation of every row: (src, coef) arrays (rows, S), residuals."""
    n = target.shape[0]
    resid = target.copy()
    dnorm = np.einsum("ij,ij->i", dic, dic)
    src = np.full((n, s_terms), -1, dtype=np.int64)
    coef = np.zeros((n, s_terms))
    active = np.arange(n)
    for s in range(s_terms):
        if active.size == 0:
            break
        j, c, g = best_terms(resid[active], dic, dnorm)
        ok = g > floor
        rows = active[ok]
        src[rows, s] = j[ok]
        coef[rows, s] = c[ok]
        resid[rows] -= c[ok, None] * dic[j[ok]]
        active = rows  # stop early where no pick reduces the residual
    return src, coef, resid


def _pick_rs(target, dic, s_terms, mem, floor=0.0):
    """Beam search over the S picks: keep the ``mem`` best partial sums per row."""
    n, k = target.shape
    dnorm = np.einsum("ij,ij->i", dic, dic)
    # Hypotheses: (n, h) residual errors, (n, h, K) residuals, (n, h, S) picks.
    err = np.einsum("ij,ij->i", target, target)[:, None]
    resid = target[:, None, :].copy()
    src = np.full((n, 1, s_terms), -1, dtype=np.int64)
    coef = np.zeros((n, 1, s_terms))
    for s in range(s_terms):
        h = resid.shape[1]
        width = mem if s < s_terms - 1 else 1
        j, c, g = top_terms(resid.reshape(n * h, k), dic, width, dnorm)
        width = j.shape[1]
        j, c, g = (x.reshape(n, h * width) for x in (j, c, g))
        g = np.where(g > floor, g, 0.0)  # a useless pick keeps the hypothesis as it is
        cand_err = np.repeat(err, width, axis=1) - g
        keep = min(mem, h * width)
        order = np.argsort(cand_err, axis=1, kind="stable")[:, :keep]
        parent = order // width
        rows = np.arange(n)[:, None]
        pj, pc, pg = j[rows, order], c[rows, order], g[rows, order]
        pc = np.where(pg > 0, pc, 0.0)
        new_src = src[rows, parent].copy()
        new_coef = coef[rows, parent].copy()
        new_src[:, :, s] = np.where(pg > 0, pj, -1)
        new_coef[:, :, s] = pc
        resid = resid[rows, parent] - pc[:, :, None] * dic[pj]
        err = cand_err[rows, order]
        src, coef = new_src, new_coef
    return src[:, 0], coef[:, 0], resid[:, 0]


def layered(
    target: np.ndarray,
    budget: float,
    *,
    s_terms: int = 2,
    mem: int = 1,
    max_layers: int = 200,
    start: SliceCode | None = None,
    on_step=None,
) -> SliceCode:
    """DMP (mem == 1) or RS (mem > 1) layers over T until ||T - T_hat||^2 <= budget.

    ``start`` optionally continues from an existing code (the mixed algorithm): its codewords are
    kept and the first new layer may use all of them, and the inputs, as its dictionary.
    """
    n, k = target.shape
    cw_parts, src_parts, coef_parts, levels = [], [], [], []
    dict_ids = np.arange(k)
    next_id = k
    base_level = 0
    all_vals = np.eye(k)
    if start is not None:
        cw_parts.append(start.term_cw)
        src_parts.append(start.term_src)
        coef_parts.append(start.term_coef)
        levels.append(start.level)
        all_vals = start.values()
        next_id = all_vals.shape[0]
        base_level = int(start.level.max(initial=0))
        norms = np.einsum("ij,ij->i", all_vals, all_vals)
        dict_ids = np.flatnonzero(norms > 0)
    out_src = np.full(n, -1, dtype=np.int64)
    out_coef = np.ones(n)
    err = float(np.einsum("ij,ij->", target, target))
    if start is not None:
        out_src, out_coef = start.out_src.copy(), start.out_coef.copy()
        diff = target - start.matrix()
        err = float(np.einsum("ij,ij->", diff, diff))
    floor = TERM_FLOOR * budget  # terms too small to matter are never picked
    layer = 0
    while err > budget and layer < max_layers:
        layer += 1
        dic = all_vals[dict_ids]
        if mem > 1:
            src, coef, resid = _pick_rs(target, dic, s_terms, mem, floor)
        else:
            src, coef, resid = _pick_dmp(target, dic, s_terms, floor)
        new_err = float(np.einsum("ij,ij->", resid, resid))
        if new_err >= err * (1 - 1e-12):
            break  # no progress: the target is out of reach for this algorithm
        rows, slot = np.nonzero(src >= 0)
        has = np.zeros(n, dtype=bool)
        has[rows] = True
        ids = np.full(n, -1, dtype=np.int64)
        ids[has] = next_id + np.arange(int(has.sum()))
        cw_parts.append(ids[rows] - k)
        src_parts.append(dict_ids[src[rows, slot]])
        coef_parts.append(coef[rows, slot])
        levels.append(np.full(int(has.sum()), base_level + layer, dtype=np.int64))
        new_vals = target[has] - resid[has]
        all_vals = np.concatenate([all_vals, new_vals])
        next_id += int(has.sum())
        out_src = ids
        out_coef = np.ones(n)
        dict_ids = ids[has]
        err = new_err
        if on_step is not None:
            on_step(err)
    code = _assemble(n, k, cw_parts, src_parts, coef_parts, levels, out_src, out_coef)
    code.info.update(layers=layer, err=err)
    return code


def _assemble(n, k, cw_parts, src_parts, coef_parts, levels, out_src, out_coef) -> SliceCode:
    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return SliceCode(
        num_rows=n,
        num_inputs=k,
        term_cw=cat(cw_parts, np.int64),
        term_src=cat(src_parts, np.int64),
        term_coef=cat(coef_parts, np.float64),
        level=cat(levels, np.int64),
        out_src=np.asarray(out_src, dtype=np.int64),
        out_coef=np.asarray(out_coef, dtype=np.float64),
    )
