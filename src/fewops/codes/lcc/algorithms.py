"""The registry of LCC algorithms: one function per name, each (T, budget, options) -> code."""

from __future__ import annotations

import numpy as np

from fewops.codes.lcc.chains import allocate, backtrack, beam_chains, extend_code
from fewops.codes.lcc.core import SliceCode
from fewops.codes.lcc.cse import dedupe
from fewops.codes.lcc.dmp import layered
from fewops.codes.lcc.grow import grow
from fewops.codes.lcc.polish import polish
from fewops.parallel import pmap

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
    "share",
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
    """Ours: batched growth; defaults by slice height (measured on Gaussian slices).

    ``polish=True`` refits and prunes the result (:mod:`fewops.codes.lcc.polish`).
    """
    do_polish = bool(opts.get("polish", False))
    opts = _grow_opts(opts)
    rows = t.shape[0]
    if opts.get("keep_depth", "auto") == "auto":
        if rows <= ALL_DICTIONARY_ROWS:
            opts["keep_depth"] = None
        else:
            opts["keep_depth"] = 2 if rows <= 2048 else 8
            # Free re-pointing of every row to a better new codeword: with shared moves it
            # pays on tall slices too (4096 x 12 at 96.3 dB: 63584 -> 63089 adds, lookahead 4
            # 61430 -> 60945; 1024 x 10 at 40 dB: -1.5%), for about 30% more search time.
            opts.setdefault("realias", True)
    opts.setdefault("batch", 0.25 if rows > 2048 else 0.5)
    # Shared moves (one add for rows that build the same codeword): 4096 x 12 at 96.3 dB 64000
    # -> 63584 adds after merging copies; on 256-row slices no better (1716-1739 either way).
    opts.setdefault("share", rows > ALL_DICTIONARY_ROWS)
    # Batched rounds build some codewords twice (rows that share a codeword and pick the same
    # next term): the copies are merged, which changes no value and saves their adds.
    code = dedupe(grow(t, budget, **opts))
    return dedupe(polish(code, t, budget)) if do_polish else code


# Where "chain" hands over from the shared growth to the private beam-searched chains (SQNR of
# the slice, dB). Measured on Gaussian slices, beam 8 x 8: 4096 x 12 at 96.3 dB switch 15 / 21 /
# 27 / 38 / 50 dB: 1.207 / 1.189 / 1.191 / 1.211 / 1.236 adds per entry; 256 x 8 at 47 dB (beam
# 32 x 8) switch 15 / 20 / 25 / 30: 0.811 / 0.796 / 0.807 / 0.819.
# Low targets switch earlier (about half the target): 512 x 9 at 20 dB, switch 5 / 8 / 12 dB: 1702 /
# 1450 / 1416 adds (grow 1557, dmp 2225).
CHAIN_SWITCH_DB = 21.0


def default_switch_db(energy: float, budget: float) -> float:
    """The switch point of "chain" for a slice of this energy and error budget."""
    target_db = 10.0 * np.log10(energy / budget) if budget > 0 and energy > 0 else 0.0
    return min(CHAIN_SWITCH_DB, 0.5 * target_db + 2.0)


# Beam of the chains: tall slices keep 8 chains per row (16: 1.2 % fewer adds, twice the time),
# slices of <= ALL_DICTIONARY_ROWS rows 32 (cheap there; 8 x 8 gives 0.807 on 256 x 8).
CHAIN_BEAM_TALL, CHAIN_BEAM_SMALL = 8, 32
CHAIN_WIDTH = 8


def _chain(t, budget, *, switch_db=None, beam=None, width=CHAIN_WIDTH, **opts):
    """Ours: shared growth (``grow``) to ``switch_db``, then every row's chain by beam search
    with the adds allocated across rows (:mod:`fewops.codes.lcc.chains`)."""
    rows = t.shape[0]
    small = rows <= ALL_DICTIONARY_ROWS
    energy = float(np.einsum("ij,ij->", t, t))
    if switch_db is None:
        switch_db = default_switch_db(energy, budget)
    if beam is None:
        beam = CHAIN_BEAM_SMALL if small else CHAIN_BEAM_TALL
    head_opts = {k: v for k, v in opts.items() if k in GROW_OPTIONS and k != "on_step"}
    if small:
        head_opts.setdefault("batch", 0.05)
        head_opts.setdefault("lookahead", 4)
    head_budget = max(budget, energy * 10.0 ** (-float(switch_db) / 10.0))
    head = _grow(t, head_budget, **head_opts)
    if _err(head, t) <= budget:
        return head
    errors, trace = beam_chains(
        t, head.matrix(), head.values(), budget, beam=int(beam), width=int(width)
    )
    steps = allocate(errors, budget)
    code = dedupe(extend_code(head, backtrack(trace, steps)))
    code.info.update(
        rounds=head.info.get("rounds", 0),
        err=_err(code, t),
        switch_db=float(switch_db),
        chain_adds=int(steps.sum()),
    )
    if opts.get("on_step") is not None:
        opts["on_step"](code.info["err"])
    return code


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


# "best": restarts of the fully sequential search with a randomised order of near-equal moves
# (seeds seed, seed + 1, ...) on slices up to this many rows, and how many of the tries are
# polished (the fewest adds first).
RESTART_ROWS = 128
# Slices of <= 512 rows: grow with lookahead 4 at these batch fractions (each about 0.5 s on
# 256 x 8; the adds vary by +-1% from one fraction to the next, so a few are tried).
SMALL_BATCHES = (0.03, 0.05, 0.07)
RESTARTS = 16
# Further switch points of "chain" (dB from the default) tried on slices of <= 512 rows (about
# 2 s each on 256 x 8).
SMALL_SWITCHES = (-5.0, 4.0)
POLISH_TOP = 3
# The option through which decompose tells "best" how many processes its tries may use.
TRY_WORKERS = "try_workers"


def _best(t, budget, **opts):
    """The fewest adds (that meet the budget) over the algorithms worth trying at this size.

    Small slices (<= 512 rows) try several searches, then polish the best few of them (refit
    and prune, :mod:`fewops.codes.lcc.polish`); the smallest (<= RESTART_ROWS rows) also try
    ``restarts`` seeded restarts (default RESTARTS). Deterministic for a given seed.
    """
    rows = t.shape[0]
    workers = opts.pop(TRY_WORKERS, 1)
    seed = int(opts.get("seed", 0))
    # Beam-searched chains after the shared growth: on 4096 x 12 at 96.3 dB 1.189 adds per entry
    # against 1.240 for grow with lookahead 4 (which it replaces: about the same time).
    names = [("grow", {}), ("dmp", {}), ("chain", {})]
    if rows <= 512:
        base = default_switch_db(float(np.einsum("ij,ij->", t, t)), budget)
        names += [("chain", {"switch_db": base + d}) for d in SMALL_SWITCHES]
        names += [("fs", {"lookahead": 4})]
        names += [("grow", {"batch": b, "lookahead": 4}) for b in SMALL_BATCHES]
    if rows <= RESTART_ROWS:
        names += [("fs", {"shared_gain": True})]
        names += [
            ("fs", {"lookahead": 4, "shared_gain": True, "jitter": 0.1, "seed": seed + r})
            for r in range(int(opts.get("restarts", RESTARTS)))
        ]
    # The tries are independent: they run in parallel when this slice is the only task (inside
    # a pmap task, e.g. one slice of many, pmap runs them one after another); kept in order, so
    # the choice below does not depend on the workers.
    codes = pmap(run_try, names, workers=workers, common={"t": t, "budget": budget, "opts": opts})
    tries = [code for code in codes if _err(code, t) <= budget * (1 + 1e-9) + 1e-300]
    if not tries:  # nothing met the budget: return the most accurate try
        return run_algorithm("dmp", t, budget, **opts)
    best = None
    for code in tries:
        best = _better(best, code, t)
    if rows <= 512:
        tries.sort(key=lambda c: (c.rule_adds(), _err(c, t)))
        for code in tries[: POLISH_TOP if rows <= RESTART_ROWS else 1]:
            polished = dedupe(polish(code, t, budget))
            if _err(polished, t) <= budget * (1 + 1e-9) + 1e-300:
                best = _better(best, polished, t)
    return best


def run_try(item: tuple[str, dict], t: np.ndarray, budget: float, opts: dict) -> SliceCode:
    """One try of "best": algorithm ``item[0]`` with ``item[1]`` on top of ``opts``."""
    name, extra = item
    return dedupe(run_algorithm(name, t, budget, **{**opts, **extra}))


# The default of every LCC entry point (decompose, LCCCode, `fewops lcc`): on Gaussian 64x64 and
# 256x64 at 40 dB grow needs 24% and 17% fewer adds than dmp and is as fast (0.1 s); "best"
# saves 9% more at about 100x the time (benchmarks/results/lcc_matrix.md).
DEFAULT_ALGORITHM = "grow"

ALGORITHMS = {
    "dmp": _dmp,
    "rs": _rs,
    "fs": _fs,
    "mixed": _mixed,
    "grow": _grow,
    "chain": _chain,
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
