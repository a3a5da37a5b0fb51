"""Rounding inside the graph: per-node bit drops under a noise budget, and their error accounting.

A node may drop low bits (a TRUNC node: floor, i.e. plain wires). Each drop of ``d`` data bits at
exponent ``e`` is a noise source with mean ``(2**d - 1) / 2 * 2**e`` and variance
``(4**d - 1) / 12 * 4**e`` (dropped bits uniform); it reaches output ``j`` through the exact gain
``G[v, j]`` of node ``v``. The mean is cancelled by one constant per output (rounded to the output
LSB), so what is left is the variance ``sum_v var_v * G[v, j]**2`` and a worst case
``sum_v |G[v, j]| * max|error_v - mean_v|``.

All exponents here are absolute: a node's value is ``int * 2**lsb``; ``zero`` is the exponent of
its lowest bit that may be nonzero (``lsb`` plus its known-zero low bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import infer_widths, level_groups, trunc_drops

NO_BITS = 1 << 12  # exponent standing for "every bit is zero" (a zero constant)
OUTPUT_GUARD = 2
DATA_GUARD = 3
FILL_ROUNDS = 4  # rounds of one more level for the quietest nodes after the common level
ROUNDABLE = (Op.INPUT, Op.ADD, Op.SUB, Op.NEG, Op.MUL, Op.SHIFT)


def trailing_zeros(values: np.ndarray) -> np.ndarray:
    """Trailing zero bits of integers (NO_BITS for zero)."""
    out = np.full(values.shape[0], NO_BITS, dtype=np.int64)
    for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
        v = abs(int(v))
        if v:
            out[i] = (v & -v).bit_length() - 1
    return out


def gains(graph: Graph) -> np.ndarray:
    """G (nodes x outputs): how much output j's real value moves per unit of node v's real value.

    Read off the graph as if it were exact (a TRUNC node passes its operand with gain 1).
    """
    n, m = graph.num_nodes, graph.num_outputs
    g = np.zeros((n, m), dtype=np.float64)
    op = graph.op
    const = np.where(op == Op.MUL, graph.const, 1).astype(np.float64)
    coef_a = np.ldexp(1.0, graph.sa) * np.where(op == Op.NEG, -1.0, 1.0) * const
    coef_b = np.ldexp(1.0, graph.sb) * np.where(op == Op.SUB, -1.0, 1.0)
    outs = graph.output_nodes
    g[outs, np.arange(m)] = 1.0
    for nodes in reversed(level_groups(graph)[1:]):
        rows = g[nodes]
        np.add.at(g, graph.a[nodes], rows * coef_a[nodes, None])
        has_b = graph.b[nodes] >= 0
        if has_b.any():
            sel = nodes[has_b]
            np.add.at(g, graph.b[sel], rows[has_b] * coef_b[sel, None])
    return g


def node_rows(graph: Graph) -> np.ndarray:
    """F (nodes x inputs): each node's real value as a linear form in the inputs (exact graph)."""
    n, k = graph.num_nodes, graph.num_inputs
    f = np.zeros((n, k), dtype=np.float64)
    f[graph.input_nodes, np.arange(k)] = 1.0
    op = graph.op
    const = np.where(op == Op.MUL, graph.const, 1).astype(np.float64)
    coef_a = np.ldexp(1.0, graph.sa) * np.where(op == Op.NEG, -1.0, 1.0) * const
    coef_b = np.ldexp(1.0, graph.sb) * np.where(op == Op.SUB, -1.0, 1.0)
    for nodes in level_groups(graph)[1:]:
        rows = f[graph.a[nodes]] * coef_a[nodes, None]
        has_b = graph.b[nodes] >= 0
        rows[has_b] += f[graph.b[nodes][has_b]] * coef_b[nodes][has_b, None]
        f[nodes] = rows
    return f


@dataclass(frozen=True)
class Exponents:
    """Absolute exponents of each node before and after its own drop (see module docstring)."""

    lsb_in: np.ndarray  # lsb of the node's value before it drops bits
    zero_in: np.ndarray  # lowest possibly-nonzero bit before the drop
    lsb: np.ndarray  # lsb after the drop

    @property
    def drop(self) -> np.ndarray:
        return self.lsb - self.lsb_in

    def noise(self) -> tuple[np.ndarray, np.ndarray]:
        """Per node: (mean, variance) of the error its drop subtracts, in real units."""
        data = np.maximum(self.lsb - self.zero_in, 0).astype(np.float64)
        # Nodes that drop no data bits (zero constants included) contribute exactly nothing.
        unit = np.where(data > 0, np.ldexp(1.0, np.minimum(self.zero_in, 500)), 0.0)
        mean = (np.exp2(data) - 1) / 2 * unit
        var = (np.exp2(2 * data) - 1) / 12 * unit**2
        return mean, var


def exponents(graph: Graph, target: np.ndarray | None = None) -> Exponents:
    """Each node's exponents when node v may round its value up to exponent ``target[v]``.

    ``target`` None keeps the graph's own drops (TRUNC nodes) and nothing else. Drops only ever
    raise exponents, so a drop upstream moves every reader's exponent with it.
    """
    n = graph.num_nodes
    op = graph.op
    lsb = np.zeros(n, dtype=np.int64)
    zero = np.zeros(n, dtype=np.int64)
    lsb_in = np.zeros(n, dtype=np.int64)
    zero_in = np.zeros(n, dtype=np.int64)
    consts = np.flatnonzero(op == Op.CONST)
    zero[consts] = trailing_zeros(graph.const[consts])
    mul_tz = np.zeros(n, dtype=np.int64)
    muls = np.flatnonzero(op == Op.MUL)
    mul_tz[muls] = trailing_zeros(graph.const[muls])
    own = trunc_drops(graph)
    leaves = np.flatnonzero((op == Op.INPUT) | (op == Op.CONST))
    lsb_in[leaves], zero_in[leaves] = lsb[leaves], zero[leaves]
    groups = level_groups(graph)
    for i, nodes in enumerate(groups):
        if i:
            a, b = graph.a[nodes], graph.b[nodes]
            binary = b >= 0
            bb = np.maximum(b, 0)
            la = lsb[a] + graph.sa[nodes]
            za = zero[a] + graph.sa[nodes] + mul_tz[nodes]
            lb = np.where(binary, lsb[bb] + graph.sb[nodes], la)
            zb = np.where(binary, zero[bb] + graph.sb[nodes], za)
            lsb_in[nodes] = np.minimum(la, lb)
            zero_in[nodes] = np.maximum(np.minimum(za, zb), lsb_in[nodes])
            lsb[nodes] = lsb_in[nodes] + own[nodes]
        if target is not None:
            lsb[nodes] = np.maximum(lsb[nodes], np.minimum(target[nodes], NO_BITS))
        zero[nodes] = np.maximum(zero_in[nodes], lsb[nodes])
    outs = graph.output_nodes
    if outs.size:  # outputs share one exponent (one port scale)
        lsb[outs] = lsb[outs].min()
    return Exponents(lsb_in=lsb_in, zero_in=zero_in, lsb=lsb)


@dataclass(frozen=True)
class NoiseReport:
    """Predicted rounding error of a graph, per output, in real output units."""

    variance: np.ndarray  # noise power per output after bias cancellation
    bias: np.ndarray  # mean error per output left after the output constants
    worst: np.ndarray  # bound on |error| per output

    @property
    def power(self) -> float:
        """Total predicted noise power over outputs (variance plus squared bias)."""
        return float(self.variance.sum() + (self.bias**2).sum())

    def to_dict(self) -> dict:
        return {
            "noise_power": self.power,
            "worst_case": float(self.worst.max(initial=0.0)),
            "bias_max": float(np.abs(self.bias).max(initial=0.0)),
        }


def predict_noise(graph: Graph, g: np.ndarray | None = None) -> NoiseReport:
    """Predicted error of ``graph``'s TRUNC nodes at its outputs (0 for an exact graph).

    The output constants (ADD of a CONST in front of an OUTPUT, as :func:`apply_drops` builds
    them) are taken as the bias correction they are.
    """
    g = gains(graph) if g is None else g
    exp = exponents(graph)
    mean, var = exp.noise()
    is_trunc = graph.op == Op.TRUNC
    mean, var = mean * is_trunc, var * is_trunc
    spread = mean  # |error - mean| <= mean for an error uniform in 0 .. 2 * mean
    bias = -(mean @ g)
    consts = np.flatnonzero((graph.op == Op.CONST) & (graph.const != 0))
    if consts.size:
        bias = bias + _const_values(graph, consts) @ g[consts]
    return NoiseReport(variance=var @ g**2, bias=bias, worst=spread @ np.abs(g) + np.abs(bias))


def _const_values(graph: Graph, consts: np.ndarray) -> np.ndarray:
    return np.asarray(graph.const[consts], dtype=np.float64)


def apply_drops(graph: Graph, drop: np.ndarray, bias: bool = True) -> Graph:
    """``graph`` with node v's value floored by ``drop[v]`` low bits for every reader.

    Each dropping node gets a TRUNC node that all its readers read instead. With ``bias`` set,
    each output adds one constant (rounded to the output LSB) that cancels the mean error of the
    drops. All-zero drops return ``graph`` itself, unchanged.
    """
    drop = np.asarray(drop, dtype=np.int64)
    if drop.shape != (graph.num_nodes,):
        raise ValueError(
            f"Drops must give one count per node ({graph.num_nodes}); got shape {drop.shape}."
        )
    if (drop < 0).any():
        i = int(np.flatnonzero(drop < 0)[0])
        raise ValueError(f"Node {i} drops {int(drop[i])} bits; drops must be 0 or more.")
    where = np.flatnonzero(drop)
    if where.size == 0:
        return graph
    bad = ~np.isin(graph.op[where], np.asarray(ROUNDABLE, dtype=np.uint8))
    if bad.any():
        i = int(where[bad][0])
        raise ValueError(
            f"Node {i} is a {Op(int(graph.op[i])).name.lower()} node; only inputs, adders, "
            "negations, multipliers and shifts may drop bits."
        )
    n = graph.num_nodes
    new_of = np.arange(n, dtype=np.int64)
    new_of[where] = n + np.arange(where.size)
    a = np.where(graph.a >= 0, new_of[np.maximum(graph.a, 0)], -1)
    b = np.where(graph.b >= 0, new_of[np.maximum(graph.b, 0)], -1)
    op = np.concatenate([graph.op, np.full(where.size, Op.TRUNC, dtype=np.uint8)])
    a = np.concatenate([a, where])
    b = np.concatenate([b, np.full(where.size, -1)])
    sa = np.concatenate([graph.sa, np.zeros(where.size, dtype=np.int64)])
    sb = np.concatenate([graph.sb, np.zeros(where.size, dtype=np.int64)])
    const = np.concatenate([graph.const, drop[where]])
    key = np.concatenate([np.arange(n, dtype=np.float64), where + 0.5])
    rounded = _in_order(graph, key, op, a, b, sa, sb, const)
    return add_bias_constants(rounded) if bias else rounded


def add_bias_constants(graph: Graph) -> Graph:
    """Add to each output the constant (at the output LSB) that cancels its mean rounding error."""
    report = predict_noise(graph)
    # The constant in output LSBs, exactly (a fine output LSB can make it wider than 64 bits).
    values = [int(np.round(np.ldexp(-b, graph.output_scale))) for b in report.bias.tolist()]
    wide = any(abs(v) >= 1 << 62 for v in values)
    c = np.array(values, dtype=object if wide else np.int64)
    outs = graph.output_nodes
    need = np.flatnonzero(c != 0)
    if need.size == 0:
        return graph
    n, k = graph.num_nodes, need.size
    lsb_out = -graph.output_scale
    # New nodes: k constants, then k adders (source << sa) + (constant << lsb_out).
    cidx = n + np.arange(k)
    aidx = n + k + np.arange(k)
    o = outs[need]
    op = np.concatenate([graph.op, np.full(k, Op.CONST, np.uint8), np.full(k, Op.ADD, np.uint8)])
    a = np.concatenate([graph.a, np.full(k, -1), graph.a[o]])
    b = np.concatenate([graph.b, np.full(k, -1), cidx])
    sa = np.concatenate([graph.sa, np.zeros(k, np.int64), graph.sa[o]])
    sb = np.concatenate([graph.sb, np.zeros(k, np.int64), np.full(k, lsb_out)])
    const = np.concatenate([graph.const, c[need], np.zeros(k, np.int64)])
    if wide or graph.const.dtype == object:
        const = np.concatenate(
            [graph.const.astype(object), c[need].astype(object), np.zeros(k, dtype=object)]
        )
    a[o] = aidx
    sa[o] = 0
    key = np.concatenate([np.arange(n, dtype=np.float64), o - 0.6, o - 0.3])
    return _in_order(graph, key, op, a, b, sa, sb, const)


def _in_order(
    graph: Graph,
    key: np.ndarray,
    op: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sa: np.ndarray,
    sb: np.ndarray,
    const: np.ndarray,
) -> Graph:
    """A graph of appended nodes, placed by ``key`` so that no reordering (and no change of
    output port order) is needed."""
    order = np.argsort(key, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    a, b = a[order], b[order]
    a = np.where(a >= 0, rank[np.maximum(a, 0)], -1)
    b = np.where(b >= 0, rank[np.maximum(b, 0)], -1)
    return Graph.from_arrays(op[order], a, b, sa[order], sb[order], const[order], meta=graph.meta)


def strip_rounding(graph: Graph) -> Graph:
    """The exact graph behind a rounded one: TRUNC nodes become plain shifts, constants zero."""
    trunc = graph.op == Op.TRUNC
    if not trunc.any() and not np.any((graph.op == Op.CONST) & (graph.const != 0)):
        return graph
    op = np.where(trunc, np.uint8(Op.SHIFT), graph.op).astype(np.uint8)
    const = np.where(trunc | (graph.op == Op.CONST), 0, graph.const)
    return Graph.from_arrays(op, graph.a, graph.b, graph.sa, graph.sb, const, meta=graph.meta)


def hoist(
    graph: Graph, target: np.ndarray, eligible: np.ndarray, ceiling: np.ndarray, zero: np.ndarray
) -> np.ndarray:
    """Raise each node's target to the exponent below which no reader uses its bits.

    Bits of an operand below where the other operand's data starts pass through an adder as
    wires; when every reader rounds them away (directly or further downstream), rounding them
    once at their source gives the same values, narrows the source, and keeps the error in one
    place: several readers rounding the same passed-through bits would repeat one error
    (correlated noise that the model, which adds variances, would miss). ``zero`` is the exact
    graph's lowest-data exponent of each node (drops only raise it, so this is conservative).
    """
    target = target.copy()
    n = graph.num_nodes
    floor = np.full(n, NO_BITS, dtype=np.int64)
    unused = np.full(n, -NO_BITS, dtype=np.int64)
    is_out = graph.op == Op.OUTPUT
    za = np.where(graph.a >= 0, zero[np.maximum(graph.a, 0)] + graph.sa, NO_BITS)
    zb = np.where(graph.b >= 0, zero[np.maximum(graph.b, 0)] + graph.sb, NO_BITS)
    for nodes in reversed(level_groups(graph)):
        # Every reader sits on a later level, so this level's floors are final.
        up = eligible[nodes] & (floor[nodes] < NO_BITS)
        t = nodes[up]
        target[t] = np.maximum(target[t], np.minimum(floor[t], ceiling[t]))
        own = np.where(eligible[nodes], target[nodes], -NO_BITS)
        unused[nodes] = np.where(is_out[nodes], -NO_BITS, np.maximum(own, floor[nodes]))
        unused[nodes] = np.minimum(unused[nodes], NO_BITS - 1)
        for operand, sh, other in ((graph.a, graph.sa, zb), (graph.b, graph.sb, za)):
            readers = nodes[operand[nodes] >= 0]
            want = np.minimum(unused[readers], other[readers]) - sh[readers]
            np.minimum.at(floor, operand[readers], want)
    return target


def choose_drops(
    graph: Graph, noise_budget: float, input_width: int, g: np.ndarray | None = None
) -> np.ndarray:
    """Per-node drops whose predicted noise power (summed over outputs) stays within budget.

    Water-filling: every node rounds to the exponent ``floor(c - log2 |G_v|)``, so every rounding
    contributes about the same noise, with the largest offset ``c`` (bisection) that keeps the
    total within ``noise_budget``. No node drops into its top two bits (the noise model needs
    data bits to drop). Returns zeros when even one dropped bit anywhere is over budget.
    """
    if not noise_budget > 0:
        return np.zeros(graph.num_nodes, dtype=np.int64)
    g = gains(graph) if g is None else g
    norm = np.sqrt((g**2).sum(axis=1))
    eligible = np.isin(graph.op, np.asarray(ROUNDABLE, dtype=np.uint8)) & (norm > 0)
    base = exponents(graph)
    base_zero = np.maximum(base.zero_in, base.lsb)
    widths = infer_widths(graph, input_width)
    ceiling = base.lsb + np.maximum(widths - 2, 0)
    # Keep at least DATA_GUARD bits below each node's typical magnitude (its standard deviation
    # for uniform full-scale inputs), where dropped bits are close to uniform as the model needs.
    sigma = np.ldexp(1.0, int(input_width) - 1) / np.sqrt(3.0)
    spread = sigma * np.sqrt((node_rows(graph) ** 2).sum(axis=1))
    typical = np.floor(np.log2(np.where(spread > 0, spread, 1.0))).astype(np.int64)
    ceiling = np.minimum(ceiling, np.where(spread > 0, typical - DATA_GUARD, ceiling))
    # Nodes that feed outputs round OUTPUT_GUARD bits finer than the rest, so that the output
    # LSB (where one constant cancels the mean error) leaves a residual bias far below the noise.
    feeds_output = np.zeros(graph.num_nodes, dtype=bool)
    feeds_output[graph.a[graph.output_nodes]] = True
    log_norm = np.log2(np.where(norm > 0, norm, 1.0))

    def levels(c: float, raised: np.ndarray | None = None) -> np.ndarray:
        level = np.floor(c - log_norm) - OUTPUT_GUARD * feeds_output
        if raised is not None:
            level = level + raised
        return np.where(eligible, level, -NO_BITS).astype(np.int64)

    def trial(target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        target = hoist(graph, np.minimum(target, ceiling), eligible, ceiling, base_zero)
        exp = exponents(graph, target)
        _, var = exp.noise()
        part = var * eligible * norm**2
        return exp.drop * eligible, float(part.sum()), part

    lo, hi = -80.0, 80.0
    best = np.zeros(graph.num_nodes, dtype=np.int64)
    if trial(levels(lo))[1] > noise_budget:
        return best
    for _ in range(40):
        mid = (lo + hi) / 2
        drop, noise, _ = trial(levels(mid))
        if noise <= noise_budget:
            lo, best = mid, drop
        else:
            hi = mid
        if hi - lo < 1 / 16:
            break
    # One level more for the nodes whose noise is smallest, as many as the budget allows: the
    # common level moves all nodes at once (noise x4), this fills the rest of the budget.
    bumped = np.zeros(graph.num_nodes, dtype=np.int64)
    for _ in range(FILL_ROUNDS):
        _, _, part = trial(levels(lo, bumped))
        order = np.argsort(np.where(eligible, part, np.inf), kind="stable")
        order = order[eligible[order]]
        k_lo, k_hi = 0, order.shape[0]
        while k_hi - k_lo > max(1, order.shape[0] // 256):
            k = (k_lo + k_hi) // 2
            raised = bumped.copy()
            raised[order[:k]] += 1
            drop, noise, _ = trial(levels(lo, raised))
            if noise <= noise_budget:
                k_lo, best = k, drop
            else:
                k_hi = k
        if k_lo == 0:
            break
        bumped[order[:k_lo]] += 1
    return best
