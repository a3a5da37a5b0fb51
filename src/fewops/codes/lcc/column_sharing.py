"""Column sharing by affinity propagation, and its lowering to the shift-add graph (spec 2.2).

The columns of W (out, in) are clustered with affinity propagation (scikit-learn); each column
is replaced by its cluster's centre. Then

    W x = sum_c w_c (sum_{j in c} x_j) = W_narrow (P x),

with P the 0/1 cluster-membership matrix. The pre-sums P x cost (inputs read - clusters) adds,
and only the narrower W_narrow (out, clusters) is left to code. Exactly-zero columns (pruned
inputs) are read by no cluster at all and cost nothing.

:func:`compose` joins two graphs (the pre-sums, then the code of W_narrow) into one graph over
the layer's original inputs, so a shared-and-coded layer is still ONE graph that the counting,
simulation and Verilog read like any other.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from fewops.codes import csd
from fewops.codes.base import CodedMatrix
from fewops.codes.common import check_matrix, sqnr_db
from fewops.codes.lcc.algorithms import DEFAULT_ALGORITHM
from fewops.codes.lcc.api import decompose
from fewops.cost.count import count_graph
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import datapath_bits

# Datapath width (8-bit signed inputs) above which a layer's code is redone with grow (or, with
# no limit set, a warning is given). The layered algorithms (dmp, rs) refine every row in every
# step through the previous step's codewords, so each small correction shifts the finest bit
# further down: thin slices at high SQNR reach 2^-96 and beyond (a 10 x 64 Gaussian matrix at
# 40 dB: a 111-bit datapath). grow and fs stay near 30 bits.
WIDE_DATAPATH_BITS = 64


class WideDatapathWarning(UserWarning):
    """A coded layer's exact fixed-point datapath is wider than WIDE_DATAPATH_BITS."""


CENTRES = ("mean", "exemplar")


@dataclass(frozen=True, eq=False)
class Sharing:
    """A clustering of the columns of a matrix and the narrow matrix of cluster centres.

    ``assignment[j]`` is the cluster of input column j, or -1 for an input that is not read
    (an exactly-zero column). ``centres`` is (out, clusters). ``W_shared = expand()``.
    """

    assignment: np.ndarray
    centres: np.ndarray
    preference: float | None = None

    def __post_init__(self) -> None:
        a = np.asarray(self.assignment)
        k = self.centres.shape[1]
        if a.ndim != 1 or (a.size and (a.min() < -1 or a.max() >= k)):
            raise ValueError(f"A sharing assignment must lie in -1..{k - 1}; got {a!r}.")
        if k and np.bincount(a[a >= 0], minlength=k).min() == 0:
            raise ValueError("Every cluster of a sharing must hold at least one column.")

    @property
    def num_inputs(self) -> int:
        return int(self.assignment.shape[0])

    @property
    def num_clusters(self) -> int:
        return int(self.centres.shape[1])

    @property
    def inputs_read(self) -> int:
        return int(np.count_nonzero(self.assignment >= 0))

    @property
    def presum_adds(self) -> int:
        """Adds of the input pre-sums: (inputs read) - (clusters)."""
        return self.inputs_read - self.num_clusters

    def membership(self) -> np.ndarray:
        """P (clusters, inputs): P[c, j] = 1 where column j belongs to cluster c."""
        p = np.zeros((self.num_clusters, self.num_inputs), dtype=np.int64)
        used = np.flatnonzero(self.assignment >= 0)
        p[self.assignment[used], used] = 1
        return p

    def expand(self, narrow: np.ndarray | None = None) -> np.ndarray:
        """The full-width matrix narrow @ P (``narrow`` defaults to the centres)."""
        narrow = self.centres if narrow is None else np.asarray(narrow, dtype=np.float64)
        return narrow @ self.membership()

    def to_dict(self) -> dict:
        return {
            "inputs": self.num_inputs,
            "inputs_read": self.inputs_read,
            "clusters": self.num_clusters,
            "presum_adds": self.presum_adds,
            "preference": self.preference,
        }


def _nonzero_columns(w: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(w != 0, axis=0))


def identity_sharing(w) -> Sharing:
    """One cluster per nonzero column (changes nothing); zero columns are left unread."""
    w = check_matrix(w)
    cols = _nonzero_columns(w)
    assignment = np.full(w.shape[1], -1, dtype=np.int64)
    assignment[cols] = np.arange(cols.size)
    return Sharing(assignment, w[:, cols].copy(), preference=None)


def cluster_columns(
    w,
    preference: float | None = None,
    *,
    damping: float = 0.9,
    max_iter: int = 400,
    centre: str = "mean",
    seed: int = 0,
) -> Sharing:
    """Affinity propagation over the nonzero columns of W with similarity -||w_i - w_j||^2.

    ``preference`` (<= 0) sets how many clusters form: near 0 gives one per column, very
    negative few; None is scikit-learn's default (the median similarity). ``centre`` is "mean"
    (the least-squares centre of each cluster, the default) or "exemplar" (AP's chosen column).
    If affinity propagation does not converge, every column keeps its own cluster.
    """
    # heavy: scikit-learn (about a second to import), needed only to cluster columns
    from sklearn.cluster import AffinityPropagation
    from sklearn.exceptions import ConvergenceWarning

    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {', '.join(CENTRES)}; got {centre!r}.")
    w = check_matrix(w)
    cols = _nonzero_columns(w)
    if cols.size <= 1:
        return identity_sharing(w)
    # Identical columns are merged before clustering: AP breaks ties between equal points
    # arbitrarily and could split them. The unique columns are weighted by their counts.
    uniq, inverse, counts = np.unique(w[:, cols], axis=1, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    assignment = np.full(w.shape[1], -1, dtype=np.int64)
    if uniq.shape[1] == 1:
        assignment[cols] = 0
        return Sharing(assignment, uniq.copy(), preference)
    sq = np.sum(uniq * uniq, axis=0)
    sim = -np.maximum(sq[:, None] + sq[None, :] - 2.0 * (uniq.T @ uniq), 0.0)
    ap = AffinityPropagation(
        affinity="precomputed",
        preference=preference,
        damping=damping,
        max_iter=max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = ap.fit_predict(sim)
    exemplars = getattr(ap, "cluster_centers_indices_", None)
    if exemplars is None or len(exemplars) == 0 or np.any(labels < 0):
        return identity_sharing(w)
    # Relabel to dense 0..k-1 (AP may leave an exemplar without members in degenerate cases).
    present, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(-1)
    k = present.size
    if centre == "exemplar":
        narrow = uniq[:, np.asarray(exemplars)[present]].copy()
    else:
        sums = np.zeros((k, w.shape[0]))
        np.add.at(sums, labels, (uniq * counts).T)
        narrow = (sums / np.bincount(labels, weights=counts, minlength=k)[:, None]).T
    assignment[cols] = labels[inverse]
    return Sharing(assignment, narrow, preference)


def share_for_sqnr(
    w,
    target_db: float,
    *,
    steps: int = 12,
    damping: float = 0.9,
    centre: str = "mean",
    seed: int = 0,
) -> Sharing:
    """The sharing with the fewest clusters found whose SQNR against W is >= ``target_db``.

    Bisects the affinity-propagation preference on a log scale (``steps`` clusterings). Falls
    back to :func:`identity_sharing` (no loss) when no clustering reaches the target.
    """
    w = check_matrix(w)
    best = identity_sharing(w)
    cols = _nonzero_columns(w)
    if cols.size <= 1 or not math.isfinite(target_db):
        return best
    v = w[:, cols]
    sq = np.sum(v * v, axis=0)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (v.T @ v), 0.0)
    positive = d2[d2 > 0]
    if positive.size == 0:  # every nonzero column is identical
        return cluster_columns(w, -1.0, damping=damping, centre=centre, seed=seed)
    lo, hi = math.log(positive.min()) - 1.0, math.log(d2.max() * cols.size)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        candidate = cluster_columns(w, -math.exp(mid), damping=damping, centre=centre, seed=seed)
        ok = sqnr_db(w, candidate.expand()) >= target_db
        if ok and candidate.num_clusters < best.num_clusters:
            best = candidate
        # A more negative preference (larger mid) means fewer clusters and more error.
        if ok:
            lo = mid
        else:
            hi = mid
    return best


# -- lowering --------------------------------------------------------------------------------


def presum_graph(sharing: Sharing) -> Graph:
    """Graph with the layer's inputs and one output per cluster: the sum of its columns' inputs."""
    builder = GraphBuilder()
    x = builder.inputs(sharing.num_inputs)
    used = np.flatnonzero(sharing.assignment >= 0)
    zeros = np.zeros(used.size, dtype=np.int64)
    sums = sum_terms(
        builder,
        x[used],
        zeros,
        np.ones(used.size, dtype=np.int64),
        sharing.assignment[used],
        sharing.num_clusters,
    )
    emit_outputs(builder, *sums)
    return builder.build(meta={"code": "presum"})


def compose(first: Graph, second: Graph, meta: dict | None = None) -> Graph:
    """One graph computing ``second(first(x))``: second's input k reads first's output k.

    The result has first's inputs and second's outputs; first's OUTPUT nodes and second's INPUT
    nodes disappear (their shifts move onto the operands that read them), so no node is added
    and the cost is exactly the sum of both graphs' costs.
    """
    if first.num_outputs != second.num_inputs:
        raise ValueError(
            f"Cannot compose a graph with {first.num_outputs} outputs into one with "
            f"{second.num_inputs} inputs."
        )
    keep1 = first.op != Op.OUTPUT
    idx1 = np.cumsum(keep1) - 1
    n1 = int(keep1.sum())
    out_nodes = first.output_nodes
    src = idx1[first.a[out_nodes]]
    src_shift = first.sa[out_nodes]

    keep2 = second.op != Op.INPUT
    node_map = n1 + np.cumsum(keep2) - 1
    shift_map = np.zeros(second.num_nodes, dtype=np.int64)
    inputs = second.input_nodes  # in port order
    node_map[inputs] = src
    shift_map[inputs] = src_shift

    def remap(operand, shift):
        has = operand >= 0
        safe = np.where(has, operand, 0)
        return np.where(has, node_map[safe], -1), np.where(has, shift + shift_map[safe], shift)

    a2, sa2 = remap(second.a[keep2], second.sa[keep2])
    b2, sb2 = remap(second.b[keep2], second.sb[keep2])
    a1, b1 = first.a[keep1], first.b[keep1]
    a1 = np.where(a1 >= 0, idx1[np.maximum(a1, 0)], -1)
    b1 = np.where(b1 >= 0, idx1[np.maximum(b1, 0)], -1)
    const2 = second.const[keep2]
    const1 = first.const[keep1]
    const = np.concatenate([np.asarray(const1, dtype=object), np.asarray(const2, dtype=object)])
    if const1.dtype != object and const2.dtype != object:
        const = const.astype(np.int64)
    merged = dict(second.meta)
    merged.update(meta or {})
    return Graph.from_arrays(
        np.concatenate([first.op[keep1], second.op[keep2]]),
        np.concatenate([a1, a2]),
        np.concatenate([b1, b2]),
        np.concatenate([first.sa[keep1], sa2]),
        np.concatenate([first.sb[keep1], sb2]),
        const,
        meta=merged,
    )


def shared_graph(sharing: Sharing, narrow_graph: Graph) -> Graph:
    """The whole layer as one graph: cluster pre-sums, then ``narrow_graph`` (clusters -> out)."""
    if narrow_graph.num_inputs != sharing.num_clusters:
        raise ValueError(
            f"The coded narrow matrix has {narrow_graph.num_inputs} inputs but the sharing has "
            f"{sharing.num_clusters} clusters."
        )
    return compose(presum_graph(sharing), narrow_graph)


# -- one layer: share, then LCC, as one coded matrix -----------------------------------------


def combined_lcc_target(total_db: float, share_db: float) -> float:
    """LCC SQNR for the narrow matrix so that sharing error + LCC error stay near ``total_db``.

    Error powers add: 10^(-total/10) = 10^(-share/10) + 10^(-lcc/10).
    """
    rest = 10.0 ** (-total_db / 10.0) - 10.0 ** (-share_db / 10.0)
    if rest <= 0:
        raise ValueError(
            f"A sharing SQNR of {share_db} dB leaves no error budget for a total of {total_db} dB."
        )
    return -10.0 * math.log10(rest)


def share_and_decompose(
    w,
    target_db: float,
    *,
    share_margin_db: float | None = 6.0,
    algorithm: str = DEFAULT_ALGORITHM,
    S: int = 2,
    mem: int = 8,
    slice_width: int | None = None,
    seed: int = 0,
    workers: int | None = 1,
    options: dict | None = None,
    max_datapath_bits: int | None = WIDE_DATAPATH_BITS,
    reference_bits: int | None = 8,
):
    """Code W at about ``target_db``: AP column sharing (at target + margin), then LCC.

    ``share_margin_db`` None skips the clustering (zero columns are still left unread). Returns
    a :class:`~fewops.codes.base.CodedMatrix` whose one graph holds the pre-sums and the LCC of
    the narrow matrix; ``extra`` holds the per-stage numbers (with ``reference_bits``, also the
    dense-CSD adds of the narrow matrix at that width plus the pre-sums: what sharing alone buys).
    A dmp / rs / mixed code whose exact datapath is wider than ``max_datapath_bits`` (8-bit
    inputs; None: any width, with a warning above WIDE_DATAPATH_BITS) is redone with grow;
    ``extra["algorithm_used"]`` and ``extra["width_fallback"]`` say so.
    """
    t0 = time.perf_counter()
    w = check_matrix(w)
    if not np.any(w):
        raise ValueError("Cannot code an all-zero matrix with LCC; the layer has no weights left.")
    if share_margin_db is None:
        sharing = identity_sharing(w)
        lcc_db = float(target_db)
    else:
        sharing = share_for_sqnr(w, target_db + share_margin_db, seed=seed)
        if sharing.num_clusters < sharing.inputs_read:
            lcc_db = combined_lcc_target(target_db, target_db + share_margin_db)
        else:
            lcc_db = float(target_db)
    t_share = time.perf_counter() - t0
    kw = dict(S=S, mem=mem, slice_width=slice_width, seed=seed, workers=workers, **(options or {}))
    result, used, fallback = _decompose_within_width(
        sharing.centres, lcc_db, algorithm, kw, max_datapath_bits
    )
    graph = shared_graph(sharing, result.graph)
    w_hat = sharing.expand(result.matrix())
    wiring = 0
    for s in result.slices:
        code = s.code
        live = code.live()
        wiring += int(np.count_nonzero(live[code.term_cw])) + int(
            np.count_nonzero(code.out_src >= 0)
        )
    method = "fs-lcc" if algorithm == "fs" else "lcc"

    total_adds = count_graph(graph).adds
    bits = datapath_bits(graph)
    if bits > (WIDE_DATAPATH_BITS if max_datapath_bits is None else max_datapath_bits):
        warnings.warn(
            f"The LCC code of a {w.shape[0]} x {w.shape[1]} matrix at {lcc_db:.1f} dB needs a "
            f"{bits}-bit datapath for 8-bit inputs (finest bit 2^{int(graph.lsb.min())}) "
            f"with algorithm {used!r}. algorithm='grow' or 'fs' usually keeps it near 30 bits.",
            WideDatapathWarning,
            stacklevel=2,
        )
    coded = CodedMatrix(
        method=method,
        graph=graph,
        params=wiring + sharing.inputs_read,
        config={
            "algorithm": algorithm,
            "target_sqnr_db": float(target_db),
            "lcc_sqnr_db": float(lcc_db),
            "share_margin_db": share_margin_db,
            "S": int(S),
            "mem": int(mem),
            "slice_width": result.options.get("slice_width"),
        },
        extra={
            "sqnr_db": sqnr_db(w, w_hat),
            "share_sqnr_db": sqnr_db(w, sharing.expand()),
            "lcc_sqnr_db": float(result.sqnr_db),
            "inputs": sharing.num_inputs,
            "inputs_read": sharing.inputs_read,
            "clusters": sharing.num_clusters,
            "presum_adds": sharing.presum_adds,
            "lcc_adds": int(result.adds),
            "combine_adds": int(result.combine_adds),
            "adds": int(total_adds),
            "wiring_entries": wiring,
            "algorithm_used": used,
            "width_fallback": fallback,
            "datapath_bits": bits,
            "finest_bit": int(graph.lsb.min(initial=0)),
            "shared_csd_adds": None
            if reference_bits is None
            else _csd_adds(sharing.centres, reference_bits) + sharing.presum_adds,
            "share_seconds": round(t_share, 3),
            "lcc_seconds": round(result.seconds, 3),
        },
    )
    # The graph computes W_hat exactly; evaluating the graph on every unit vector to get it back
    # would cost (inputs x nodes) work, so the decoded matrix is handed over directly.
    return coded.with_known_matrix(w_hat)


def _decompose_within_width(centres, lcc_db, algorithm, kw, max_bits):
    """LCC of ``centres``; returns (result, algorithm used, fallback record or None).

    Layered algorithms can stall below a high target on some slices: the growing codebook search
    reaches any target, so those fall back to it. They can also reach it through ever finer
    shifts (see WIDE_DATAPATH_BITS): a code wider than ``max_bits`` (None: no limit) is redone
    with grow, and the record keeps what the requested algorithm needed.
    """
    try:
        result = decompose(centres, lcc_db, algorithm=algorithm, **kw)
    except ValueError as exc:
        if algorithm == "grow":
            raise
        result = decompose(centres, lcc_db, algorithm="grow", **kw)
        return result, "grow", {"from": algorithm, "reason": str(exc)}
    if max_bits is None or algorithm in ("grow", "fs"):
        return result, algorithm, None
    bits = result.datapath_bits
    if bits <= max_bits:
        return result, algorithm, None
    narrow = decompose(centres, lcc_db, algorithm="grow", **kw)
    record = {
        "from": algorithm,
        "reason": f"datapath of {bits} bits > {max_bits}",
        "datapath_bits": bits,
        "finest_bit": int(result.graph.lsb.min()),
        "lcc_adds": int(result.adds),
    }
    return narrow, "grow", record


def _csd_adds(w: np.ndarray, bits: int) -> int:
    if not np.any(w):
        return 0
    return csd.adds_for_integer_matrix(csd.quantize(w, bits)[0])
