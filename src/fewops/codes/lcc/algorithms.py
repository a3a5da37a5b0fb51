"""The registry of LCC algorithms: one function per name, each (T, budget, options) -> code."""

from __future__ import annotations

import numpy as np

from fewops.codes.lcc.core import SliceCode
from fewops.codes.lcc.dmp import layered
from fewops.codes.lcc.grow import grow

# Above this many rows the "all codewords" dictionary costs more than it buys.
ALL_DICTIONARY_ROWS = 512


def _dmp(t, budget, *, S=2, max_layers=200, on_step=None, **_):
    return layered(t, budget, s_terms=S, mem=1, max_layers=max_layers, on_step=on_step)


def _rs(t, budget, *, S=2, mem=8, max_layers=200, on_step=None, **_):
    return layered(t, budget, s_terms=S, mem=mem, max_layers=max_layers, on_step=on_step)


GROW_OPTIONS = (
    "batch",
    "per_round",
    "keep_depth",
    "realias",
    "max_depth",
    "lookahead",
    "jitter",
    "shared_gain",
    "seed",
    "on_step",
)


def _grow_opts(opts: dict) -> dict:
    return {k: v for k, v in opts.items() if k in GROW_OPTIONS}


def _fs(t, budget, **opts):
    opts = _grow_opts(opts)
    opts.update(per_round=1, keep_depth=None, realias=True)
    return grow(t, budget, **opts)


def _grow(t, budget, **opts):
    """Ours: batched growth; defaults by slice height (measured on Gaussian slices)."""
    opts = _grow_opts(opts)
    rows = t.shape[0]
    if opts.get("keep_depth", "auto") == "auto":
        if rows <= ALL_DICTIONARY_ROWS:
            opts["keep_depth"] = None
        else:
            opts["keep_depth"] = 2 if rows <= 2048 else 8
            opts.setdefault("realias", False)
    opts.setdefault("batch", 0.25 if rows > 2048 else 0.5)
    return grow(t, budget, **opts)


def _mixed(t, budget, *, S=2, mem=1, depths=(1, 2, 3, 4), max_layers=200, **_):
    """Depth-limited FS for the first layers, then DMP (mem 1) or RS layers; the best switch."""
    best = None
    for depth in depths:
        head = grow(t, budget, per_round=1, realias=True, max_depth=int(depth))
        code = head
        if head.info["err"] > budget:
            code = layered(t, budget, s_terms=S, mem=mem, max_layers=max_layers, start=head)
        code.info["switch_depth"] = int(depth)
        best = _better(best, code, t)
    return best


def _err(code: SliceCode, t: np.ndarray) -> float:
    d = t - code.matrix()
    return float(np.einsum("ij,ij->", d, d))


def _better(best: SliceCode | None, code: SliceCode, t: np.ndarray) -> SliceCode:
    if best is None:
        return code
    key_new = (code.rule_adds(), _err(code, t))
    key_old = (best.rule_adds(), _err(best, t))
    return code if key_new < key_old else best


def _best(t, budget, **opts):
    """The fewest adds (that meet the budget) over the algorithms worth trying at this size."""
    rows = t.shape[0]
    names = [("grow", {}), ("dmp", {})]
    if rows <= 512:
        names += [("fs", {"lookahead": 4}), ("grow", {"batch": 0.1, "lookahead": 8})]
    if rows <= 128:
        names += [("fs", {"shared_gain": True})]
    best = None
    for name, extra in names:
        code = run_algorithm(name, t, budget, **{**opts, **extra})
        if _err(code, t) > budget * (1 + 1e-9) + 1e-300:
            continue
        best = _better(best, code, t)
    if best is None:  # nothing met the budget: return the most accurate try
        best = run_algorithm("dmp", t, budget, **opts)
    return best


ALGORITHMS = {
    "dmp": _dmp,
    "rs": _rs,
    "fs": _fs,
    "mixed": _mixed,
    "grow": _grow,
    "best": _best,
}


def run_algorithm(name: str, target: np.ndarray, budget: float, **opts) -> SliceCode:
    """Run algorithm ``name`` on one slice until ||T - T_hat||^2 <= budget."""
    try:
        fn = ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"Unknown LCC algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}."
        ) from None
    code = fn(np.asarray(target, dtype=np.float64), float(budget), **opts)
    if not code.algorithm:
        code.algorithm = name
    return code
