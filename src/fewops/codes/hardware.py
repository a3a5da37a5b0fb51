"""Code a matrix for hardware: fewest estimated LUTs at a measured output SQNR.

The SQNR budget is split between the weights' approximation (the code reaches ``target + split``
dB on the matrix) and the arithmetic's rounding noise (bits dropped inside the graph by
:func:`fewops.graph.rounding.choose_drops`, the mean cancelled by one constant per output). Each
split is tried; the result is the one with the fewest estimated LUTs whose *measured* output
SQNR, against the float ``W @ x`` on fresh uniform full-scale inputs, meets the target.

Every code here keeps a power-of-two scale, so output integer ``y`` stands for
``y * 2**-scale`` of ``W @ x`` with nothing else to apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fewops.codes import csd, dense
from fewops.codes.common import check_matrix, sqnr_db
from fewops.codes.lcc import decompose
from fewops.cost.bits import bit_cost
from fewops.graph.graph import Graph
from fewops.graph.rounding import apply_drops, choose_drops, predict_noise
from fewops.graph.widths import check_input_width
from fewops.sim.evaluate import evaluate, graph_matrix

HW_CODES = ("csd", "dense", "lcc")
AUTO_CODES = ("csd", "lcc")  # dense: LUT estimate not calibrated for general multipliers
SPLITS_DB = (0.5, 1.0, 2.0, 3.0)  # how far above the target the weights' approximation goes
# Widest input the export contract takes: 64-bit and wider inputs are refused (issue 18).
MAX_INPUT_WIDTH = 63
MAX_RETRIES = 10
MARGIN_DB = 0.1  # aim this far above the target on the selection sample (sampling spread)


@dataclass(frozen=True)
class HardwareCode:
    """A coded, rounded layer: ``graph`` maps integer inputs to ``y ~ W @ x * 2**scale``."""

    code: str
    graph: Graph
    scale: int
    target_db: float
    weight_db: float  # SQNR of the exact code's matrix against W
    measured_db: float  # output SQNR of the rounded graph against float W @ x (uniform inputs)
    exact_db: float  # the same for the exact (unrounded) graph
    predicted_noise: float  # rounding noise power summed over outputs, in units of W @ x, squared
    measured_noise: float  # the same measured (rounded against exact graph, uniform inputs)
    worst_case: float  # bound on any output's rounding error, in units of W @ x
    luts_est: int
    adder_bits: int
    adds: int
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "code",
                "scale",
                "target_db",
                "weight_db",
                "measured_db",
                "exact_db",
                "predicted_noise",
                "measured_noise",
                "worst_case",
                "luts_est",
                "adder_bits",
                "adds",
            )
        }


def check_target(target_db) -> float:
    if isinstance(target_db, bool) or not isinstance(target_db, int | float):
        raise TypeError(f"The target SQNR must be a number of dB; got {target_db!r}.")
    if not math.isfinite(target_db) or not 0 < target_db <= 150:
        raise ValueError(f"The target SQNR must be between 0 and 150 dB; got {target_db}.")
    return float(target_db)


def exact_code(w: np.ndarray, code: str, weight_db: float) -> tuple[Graph, int]:
    """The exact graph of ``code`` reaching ``weight_db`` on W, and its power-of-two scale
    (the graph's real outputs times ``2**e`` approximate ``W @ x``)."""
    if code == "lcc":
        coded = decompose(w, weight_db, workers=2)
        return coded.graph, 0
    peak = float(np.abs(w).max())
    if peak == 0:
        raise ValueError("W is all zeros; there is nothing to code.")
    top = int(math.floor(math.log2(peak)))
    for e in range(top, top - 40, -1):  # the coarsest power-of-two step that reaches weight_db
        w_int = np.round(np.ldexp(w, -e)).astype(np.int64)
        if sqnr_db(w, np.ldexp(w_int.astype(np.float64), e)) >= weight_db:
            build = csd.integer_matrix_graph if code == "csd" else dense.integer_matrix_graph
            return build(w_int, meta={"code": code, "step_exp": e}), e
    raise ValueError(f"No power-of-two step reaches {weight_db} dB for this matrix.")


def uniform_inputs(k: int, count: int, input_width: int, seed: int) -> np.ndarray:
    top = 1 << (input_width - 1)
    return np.random.default_rng(seed).integers(-top, top, size=(count, k))


def output_sqnr(graph: Graph, e: int, w: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """(SQNR in dB of the graph against float W @ x, its error power in output units**2)."""
    ref = x.astype(np.float64) @ w.T
    y = np.ldexp(np.asarray(evaluate(graph, x), dtype=np.float64), e - graph.output_scale)
    err = float(((y - ref) ** 2).sum(axis=1).mean())
    sig = float((ref**2).sum(axis=1).mean())
    return (math.inf if err == 0 else 10 * math.log10(sig / err)), err


def round_for_target(
    w: np.ndarray,
    graph: Graph,
    e: int,
    target_db: float,
    input_width: int,
    samples: int = 20000,
    seed: int = 0,
) -> tuple[Graph, float, float]:
    """Drop bits inside ``graph`` within what the target leaves after the weights' error.

    The budget (noise power over the outputs for uniform full-scale inputs) is checked by
    measurement on ``samples`` inputs; while the measured SQNR falls short, the budget shrinks.
    Returns (rounded graph, measured dB, measured error power).
    """
    x = uniform_inputs(w.shape[1], samples, input_width, seed)
    var_x = float(np.var(x))
    m_hat = graph_matrix(graph) * 2.0**e
    signal = var_x * float((w**2).sum())
    weight_noise = var_x * float(((w - m_hat) ** 2).sum())
    budget = signal * 10 ** (-target_db / 10) - weight_noise
    if budget <= 0:
        db, err = output_sqnr(graph, e, w, x)
        return graph, db, err
    budget_graph = 0.97 * budget * 2.0 ** (-2 * e)  # in the graph's own output units
    for _ in range(MAX_RETRIES):
        rounded = apply_drops(graph, choose_drops(graph, budget_graph, input_width))
        db, err = output_sqnr(rounded, e, w, x)
        if db >= target_db:
            return rounded, db, err
        budget_graph *= 0.85
    db, err = output_sqnr(graph, e, w, x)
    return graph, db, err


def code_for_hardware(
    w, code: str, target_db: float, input_width: int = 8, seed: int = 0
) -> HardwareCode:
    """The fewest-LUT rounded coding of W by ``code`` ("auto": the best of :data:`HW_CODES`)
    whose output SQNR, measured on fresh uniform inputs, is at least ``target_db``."""
    w = check_matrix(w)
    target_db = check_target(target_db)
    input_width = check_input_width(input_width, MAX_INPUT_WIDTH)
    if code == "auto":
        found = [code_for_hardware(w, c, target_db, input_width, seed) for c in AUTO_CODES]
        return min(found, key=lambda h: h.luts_est)
    if code not in HW_CODES:
        raise ValueError(f"Unknown code {code!r} for hardware; choose one of {HW_CODES} or auto.")
    best: HardwareCode | None = None
    for split in SPLITS_DB:
        try:
            graph, e = exact_code(w, code, target_db + split)
        except ValueError:
            continue
        aim = target_db + MARGIN_DB
        rounded, db, err = round_for_target(w, graph, e, aim, input_width, seed=seed)
        if db < aim:
            continue
        fresh = uniform_inputs(w.shape[1], 20000, input_width, seed + 1)
        fresh_db, _ = output_sqnr(rounded, e, w, fresh)
        exact_db, _ = output_sqnr(graph, e, w, fresh)
        y_round = np.ldexp(np.asarray(evaluate(rounded, fresh), np.float64), -rounded.output_scale)
        y_exact = np.ldexp(np.asarray(evaluate(graph, fresh), np.float64), -graph.output_scale)
        measured = float(((y_round - y_exact) ** 2).sum(axis=1).mean()) * 4.0**e
        if fresh_db < target_db:  # the promise is about fresh inputs: never return less
            continue
        cost = bit_cost(rounded, input_width)
        noise = predict_noise(rounded)
        found = HardwareCode(
            code=code,
            graph=rounded,
            scale=int(rounded.output_scale - e),
            target_db=target_db,
            weight_db=sqnr_db(w, graph_matrix(graph) * 2.0**e),
            measured_db=fresh_db,
            exact_db=exact_db,
            predicted_noise=noise.power * 4.0**e,
            measured_noise=measured,
            worst_case=float(noise.worst.max(initial=0.0)) * 2.0**e,
            luts_est=cost.luts_est,
            adder_bits=cost.adder_bits,
            adds=cost.adds,
            extra={"split_db": split},
        )
        if best is None or found.luts_est < best.luts_est:
            best = found
    if best is None:
        raise ValueError(
            f"No {code} coding with rounding reaches {target_db} dB output SQNR for "
            f"{input_width}-bit inputs; the target is out of reach at any width tried."
        )
    return best
