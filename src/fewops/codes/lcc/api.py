"""``decompose``: LCC of a whole matrix (slicing, per-slice algorithms in parallel, lowering)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import check_matrix, sqnr_db
from fewops.codes.lcc import core
from fewops.codes.lcc.algorithms import ALGORITHMS, DEFAULT_ALGORITHM, TRY_WORKERS, run_algorithm
from fewops.codes.lcc.core import SliceCode
from fewops.codes.lcc.lower import to_graph
from fewops.cost.count import GraphCost, count_graph
from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import datapath_bits
from fewops.parallel import pmap, task_threads

# Beyond this the float64 search cannot see the residual any more.
MAX_TARGET_DB = 200.0
# Matrices whose largest entry lies beyond 2**+-SCALE_WINDOW are coded as W * 2**-k (k the
# exponent of the largest entry) so that squared errors neither overflow nor underflow; the
# graph's output shifts put the 2**k back (no wider datapath).
SCALE_WINDOW = 256
# Keyword options some algorithm reads (anything else is a typo and is refused).
KNOWN_OPTIONS = frozenset(
    {
        "batch",
        "per_round",
        "keep_depth",
        "realias",
        "max_depth",
        "max_rounds",
        "start_terms",
        "lookahead",
        "jitter",
        "shared_gain",
        "share",
        "on_step",
        "polish",
        "max_layers",
        "switch_db",
        "beam",
        "width",
        "depths",
        "restarts",
    }
)


def auto_slice_width(rows: int, cols: int) -> int:
    """Slice width near log2(rows) (at least 1, at most the number of columns)."""
    return int(min(cols, max(1, round(math.log2(max(rows, 2))))))


def slice_bounds(cols: int, width: int) -> list[tuple[int, int]]:
    """Column ranges of ceil(cols / width) slices of near-equal width (<= width)."""
    count = math.ceil(cols / width)
    edges = np.linspace(0, cols, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@dataclass
class SliceResult:
    """One column slice: its code, cost by the add rule (without slice sums) and accuracy."""

    start: int
    stop: int
    algorithm: str
    code: SliceCode
    adds: int
    sqnr_db: float
    seconds: float

    @property
    def width(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return {
            "columns": [self.start, self.stop],
            "algorithm": self.algorithm,
            "adds": self.adds,
            "sqnr_db": self.sqnr_db,
            "seconds": round(self.seconds, 4),
            "codewords": self.code.num_codewords,
            **{k: v for k, v in self.code.info.items() if isinstance(v, int | float | str)},
        }


@dataclass
class LCCResult:
    """The LCC of a matrix W: W ~ W_hat, computed by ``graph`` with ``adds`` adders."""

    weight: np.ndarray
    target_sqnr_db: float
    algorithm: str
    graph: Graph
    slices: list[SliceResult]
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    scale_e: int = 0  # the slices code W * 2**-scale_e (see SCALE_WINDOW); 0 for most matrices

    @cached_property
    def cost(self) -> GraphCost:
        return count_graph(self.graph)

    @property
    def adds(self) -> int:
        """Every adder of the graph: the wiring rows and the sums over slices."""
        return self.cost.adds

    @property
    def combine_adds(self) -> int:
        """Adds that sum the slices' outputs."""
        return self.adds - sum(s.adds for s in self.slices)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    @cached_property
    def datapath_bits(self) -> int:
        """The widest integer of the exact fixed-point graph for 8-bit signed inputs (dmp and rs
        reach high SQNRs on thin slices through very fine shifts: see docs/lcc_network.md)."""
        return datapath_bits(self.graph)

    @property
    def adds_per_entry(self) -> float:
        return self.adds / self.weight.size

    @cached_property
    def _normalised(self) -> np.ndarray:
        w_hat = np.zeros(self.weight.shape)
        for s in self.slices:
            w_hat[:, s.start : s.stop] = s.code.matrix()
        return w_hat

    @cached_property
    def _matrix(self) -> np.ndarray:
        return np.ldexp(self._normalised, self.scale_e) if self.scale_e else self._normalised

    def matrix(self) -> np.ndarray:
        """The float W_hat (its entries are dyadic rationals; the graph computes it exactly)."""
        return self._matrix.copy()

    @cached_property
    def sqnr_db(self) -> float:
        return sqnr_db(np.ldexp(self.weight, -self.scale_e), self._normalised)

    def coded(self) -> CodedMatrix:
        """The result as a :class:`fewops.codes.base.CodedMatrix` (scale 1)."""
        return CodedMatrix(
            method="lcc",
            graph=self.graph,
            params=int(self.weight.size),
            config={"algorithm": self.algorithm, "target_sqnr_db": self.target_sqnr_db},
            extra={"sqnr_db": self.sqnr_db, "adds_per_entry": self.adds_per_entry},
        )

    def summary(self) -> dict:
        cost = self.cost
        return {
            "shape": list(self.shape),
            "algorithm": self.algorithm,
            "target_sqnr_db": self.target_sqnr_db,
            "sqnr_db": self.sqnr_db,
            "adds": self.adds,
            "adds_per_entry": self.adds_per_entry,
            "combine_adds": self.combine_adds,
            "negs": cost.negs,
            "adder_depth": cost.adder_depth,
            "datapath_bits": self.datapath_bits,
            "finest_bit": int(self.graph.lsb.min(initial=0)),
            "slices": len(self.slices),
            "seconds": round(self.seconds, 3),
            "options": self.options,
        }


def run_slice(item, w: np.ndarray) -> tuple[SliceCode, float]:
    """One slice's code: ``item`` = (first column, stop column, error budget, algorithm,
    options); ``w`` the whole matrix (sent once to each worker, not once per slice)."""
    start, stop, budget, algorithm, opts = item
    threads = task_threads()
    if threads is not None:
        core.FAST_THREADS = threads  # inside a worker: the cores are shared out already
    t0 = time.perf_counter()
    code = run_algorithm(algorithm, np.ascontiguousarray(w[:, start:stop]), budget, **opts)
    return code, time.perf_counter() - t0


def decompose(
    W,
    target_sqnr_db: float,
    algorithm: str = DEFAULT_ALGORITHM,
    S: int = 2,
    mem: int = 8,
    slice_width: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    **options,
) -> LCCResult:
    """Linear computation coding of W (out x in) to at least ``target_sqnr_db``.

    ``algorithm``: "dmp", "rs" (beam of ``mem``), "fs", "mixed", "grow" (ours), "chain" (ours:
    grow, then beam-searched row chains) or "best" (the fewest adds of several, about 100x
    slower). The default, grow, is the same for every LCC entry point (``DEFAULT_ALGORITHM``).
    ``S``: terms per wiring row for dmp/rs. Columns are cut into slices
    of ``slice_width`` (default near log2(out)); each slice meets the target on its own, so the
    whole matrix does. Slices run in ``workers`` processes (default: the CPU count; inside
    ``fewops.parallel.cluster(...)`` on that Dask cluster); the result does not depend on
    ``workers`` or on where they run. ``seed`` seeds the randomised parts of the search (the
    restarts of "best" on slices of <= 128 rows, and the ``jitter`` option); with the other
    defaults the algorithms are deterministic greedy searches.
    Extra ``options`` go to the algorithm (e.g. ``batch``, ``max_depth``, ``polish`` for
    "grow", ``switch_db``, ``beam``, ``width`` for "chain", ``restarts`` for "best").
    """
    w = check_matrix(W)
    t0 = time.perf_counter()
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"Unknown LCC algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}."
        )
    target = float(target_sqnr_db)
    if not math.isfinite(target) or target > MAX_TARGET_DB:
        raise ValueError(
            f"target_sqnr_db must be finite and at most {MAX_TARGET_DB} dB; got {target_sqnr_db}."
        )
    if target <= 0:
        raise ValueError(
            f"target_sqnr_db must be above 0 dB (at 0 dB the error is as large as W); got "
            f"{target_sqnr_db}."
        )
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise TypeError(
            f"decompose got unknown options {unknown}; the algorithms read "
            f"{', '.join(sorted(KNOWN_OPTIONS))}."
        )
    if int(S) < 1:
        raise ValueError(f"S (terms per wiring row) must be at least 1; got {S}.")
    if int(mem) < 1:
        raise ValueError(f"mem (beam width) must be at least 1; got {mem}.")
    rows, cols = w.shape
    width = auto_slice_width(rows, cols) if slice_width is None else int(slice_width)
    if width < 1:
        raise ValueError(f"slice_width must be at least 1; got {slice_width}.")
    bounds = slice_bounds(cols, min(width, cols))
    original, peak = w, float(np.abs(w).max())
    scale_e = 0
    if peak > 0 and abs(math.frexp(peak)[1]) > SCALE_WINDOW:
        scale_e = math.frexp(peak)[1]
        w = np.ldexp(w, -scale_e)  # exact: a power of two
    ratio = 10.0 ** (-target / 10.0)
    opts = dict(options, S=int(S), mem=int(mem), seed=int(seed))
    if algorithm == "best":
        opts[TRY_WORKERS] = workers  # a lone slice runs its tries in parallel instead
    jobs = []
    for i, (a, b) in enumerate(bounds):
        t = np.ascontiguousarray(w[:, a:b])
        budget = ratio * float(np.einsum("ij,ij->", t, t))
        jobs.append((t, budget, algorithm, dict(opts, seed=int(seed) * 1_000_003 + i)))
    results = pmap(
        run_slice,
        [(a, b, budget, alg, o) for (a, b), (_, budget, alg, o) in zip(bounds, jobs, strict=True)],
        workers=workers,
        common={"w": w},
        progress=progress,
        desc="lcc slices",
        unit="slice",
    )
    slices = []
    for (a, b), (t, budget, _, _), (code, secs) in zip(bounds, jobs, results, strict=True):
        sl = code.matrix()
        slices.append(
            SliceResult(
                a, b, code.algorithm or algorithm, code, code.rule_adds(), sqnr_db(t, sl), secs
            )
        )
        err = float(np.sum((t - sl) ** 2))
        if err > budget * (1 + 1e-9) + 1e-300:
            raise ValueError(
                f"LCC with algorithm {algorithm!r} could not reach {target} dB on columns "
                f"{a}:{b}: it stopped at {slices[-1].sqnr_db:.2f} dB. Lower the target or use "
                "another algorithm."
            )
    graph = to_graph(
        [s.code for s in slices],
        [s.start for s in slices],
        cols,
        rows,
        meta={"code": "lcc", "algorithm": algorithm},
    )
    if scale_e:
        out = graph.op == Op.OUTPUT
        sa = np.where(out, graph.sa + scale_e, graph.sa)
        arrays = (graph.op, graph.a, graph.b, sa, graph.sb, graph.const)
        graph = Graph.from_arrays(*arrays, meta={**graph.meta, "scale_e": scale_e})
    w_hat = np.zeros(w.shape)
    for s in slices:
        w_hat[:, s.start : s.stop] = s.code.matrix()
    measured = sqnr_db(w, w_hat)
    if peak > 0 and (math.isnan(measured) or measured < target - 1e-6):
        raise ValueError(
            f"LCC with algorithm {algorithm!r} measured {measured} dB on the whole matrix, not "
            f"the target {target} dB; the result is refused rather than reported."
        )
    return LCCResult(
        weight=original,
        target_sqnr_db=target,
        algorithm=algorithm,
        graph=graph,
        slices=slices,
        options={"S": int(S), "mem": int(mem), "slice_width": width, "seed": int(seed), **options},
        seconds=time.perf_counter() - t0,
        scale_e=scale_e,
    )
