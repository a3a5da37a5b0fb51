"""Fixed-point bookkeeping: each node's exponent (lsb), integer range and bit width.

Ranges are interval arithmetic over the declared input range, so the inferred width of every node
is enough that no intermediate can overflow for any input in that range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fewops.graph.ops import Op

if TYPE_CHECKING:
    from fewops.graph.graph import Graph

INT64_SAFE = 2**62
FLOAT_EXACT = 2**52  # float64 holds every integer up to 2**53; keep one bit of headroom
MIN_INPUT_WIDTH = 2
MAX_INPUT_WIDTH = 64


def check_input_width(
    input_width: object, max_bits: int = MAX_INPUT_WIDTH, min_bits: int = MIN_INPUT_WIDTH
) -> int:
    """``input_width`` as an int in ``min_bits``..``max_bits``, else a TypeError/ValueError
    naming the value."""
    if isinstance(input_width, bool) or not isinstance(input_width, int | np.integer):
        raise TypeError(f"Input width must be an integer number of bits; got {input_width!r}.")
    if not min_bits <= int(input_width) <= max_bits:
        raise ValueError(
            f"Input width must be between {min_bits} and {max_bits} bits; got {int(input_width)}."
        )
    return int(input_width)


def level_groups(graph: Graph) -> list[np.ndarray]:
    """Node indices of each topological level, in increasing level."""
    level = graph.level
    order = np.argsort(level, kind="stable")
    bounds = np.flatnonzero(np.diff(level[order])) + 1
    return np.split(order, bounds)


def infer_lsb(graph: Graph) -> np.ndarray:
    """Exponent of every node's integer (inputs and constants have exponent 0).

    An adder takes the smaller exponent of its two shifted operands, so it never drops a bit; all
    outputs share the smallest output exponent so the output port has one scale.
    """
    lsb = np.zeros(graph.num_nodes, dtype=np.int64)
    op = graph.op
    for nodes in level_groups(graph)[1:]:
        ea = lsb[graph.a[nodes]] + graph.sa[nodes]
        binary = (op[nodes] == Op.ADD) | (op[nodes] == Op.SUB)
        eb = np.where(binary, lsb[np.maximum(graph.b[nodes], 0)] + graph.sb[nodes], ea)
        lsb[nodes] = np.minimum(ea, eb) + trunc_drops(graph, nodes)
    outs = graph.output_nodes
    if outs.size:
        lsb[outs] = lsb[outs].min()
    return lsb


def trunc_drops(graph: Graph, nodes: np.ndarray | None = None) -> np.ndarray:
    """Low bits each node drops: ``const`` for TRUNC nodes, 0 for every other node."""
    idx = np.arange(graph.num_nodes) if nodes is None else nodes
    is_trunc = graph.op[idx] == Op.TRUNC
    return np.where(is_trunc, graph.const[idx], 0).astype(np.int64)


def operand_shifts(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """Left shifts (>= 0) that align each operand's integer to its node's exponent.

    A TRUNC node's operand needs no alignment (shift 0): the node is the operand's integer with
    its ``const`` low bits dropped.
    """
    lsb = graph.lsb
    a = np.maximum(graph.a, 0)
    b = np.maximum(graph.b, 0)
    la = np.where(graph.a >= 0, lsb[a] + graph.sa - lsb + trunc_drops(graph), 0)
    lb = np.where(graph.b >= 0, lsb[b] + graph.sb - lsb, 0)
    return la, lb


def infer_ranges(
    graph: Graph, input_lo: ArrayLike, input_hi: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Integer range [lo, hi] of every node for inputs within [input_lo, input_hi].

    The bounds may be scalars or one value per input port. Returns int64 arrays when every bound
    fits comfortably, else arrays of Python ints (exact at any width).
    """
    n_in = graph.num_inputs
    in_lo = np.broadcast_to(np.asarray(input_lo, dtype=object), (n_in,))
    in_hi = np.broadcast_to(np.asarray(input_hi, dtype=object), (n_in,))
    if any(lo > hi for lo, hi in zip(in_lo, in_hi, strict=True)):
        raise ValueError("Each input's lower bound must not exceed its upper bound.")
    estimate = _ranges(graph, in_lo.astype(np.float64), in_hi.astype(np.float64), np.float64)
    magnitude = max(np.abs(estimate[0]).max(initial=0), np.abs(estimate[1]).max(initial=0))
    if magnitude < FLOAT_EXACT:
        # Every bound is an integer below 2**53 built by adds, shifts and integer products that
        # stay below it too, so the float pass was exact: no second pass needed.
        return estimate[0].astype(np.int64), estimate[1].astype(np.int64)
    if magnitude < INT64_SAFE:
        return _ranges(graph, in_lo.astype(np.int64), in_hi.astype(np.int64), np.int64)
    return _ranges(graph, in_lo, in_hi, object)


def _ranges(
    graph: Graph, in_lo: np.ndarray, in_hi: np.ndarray, dtype: DTypeLike
) -> tuple[np.ndarray, np.ndarray]:
    n = graph.num_nodes
    lo = np.zeros(n, dtype=dtype)
    hi = np.zeros(n, dtype=dtype)
    inputs = graph.input_nodes
    lo[inputs] = in_lo
    hi[inputs] = in_hi
    consts = np.flatnonzero(graph.op == Op.CONST)
    lo[consts] = graph.const[consts].astype(dtype)
    hi[consts] = graph.const[consts].astype(dtype)
    la, lb = operand_shifts(graph)
    scale_a = _pow2(la, dtype)
    scale_b = _pow2(lb, dtype)
    op = graph.op
    for nodes in level_groups(graph)[1:]:
        a = graph.a[nodes]
        b = np.maximum(graph.b[nodes], 0)
        alo, ahi = lo[a] * scale_a[nodes], hi[a] * scale_a[nodes]
        blo, bhi = lo[b] * scale_b[nodes], hi[b] * scale_b[nodes]
        kind = op[nodes]
        c = graph.const[nodes].astype(dtype)
        new_lo, new_hi = alo.copy(), ahi.copy()
        for mask, l_val, h_val in (
            (kind == Op.ADD, alo + blo, ahi + bhi),
            (kind == Op.SUB, alo - bhi, ahi - blo),
            (kind == Op.NEG, -ahi, -alo),
            (kind == Op.MUL, np.minimum(c * alo, c * ahi), np.maximum(c * alo, c * ahi)),
        ):
            new_lo = np.where(mask, l_val, new_lo)
            new_hi = np.where(mask, h_val, new_hi)
        cut = kind == Op.TRUNC
        if cut.any():
            drop = graph.const[nodes][cut]
            new_lo[cut] = _floor_shift(alo[cut], drop, dtype)
            new_hi[cut] = _floor_shift(ahi[cut], drop, dtype)
        lo[nodes] = new_lo
        hi[nodes] = new_hi
    return lo, hi


def _floor_shift(values: np.ndarray, drop: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """floor(values / 2**drop), exactly, in the pass's number type."""
    if dtype is object:
        return np.array([int(v) >> int(t) for v, t in zip(values, drop, strict=True)], dtype=object)
    if dtype == np.float64:
        return np.floor(np.ldexp(values, -np.asarray(drop, dtype=np.int64)))
    return np.right_shift(values, np.asarray(drop, dtype=np.int64))


def _pow2(shifts: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    if dtype is object:
        return np.array([1 << int(s) for s in shifts], dtype=object)
    if dtype == np.float64:
        return np.ldexp(1.0, shifts)
    return np.left_shift(np.int64(1), shifts.astype(np.int64))


def signed_width(lo: ArrayLike, hi: ArrayLike) -> np.ndarray:
    """Smallest two's-complement width holding every integer in [lo, hi] (at least 1 bit)."""
    low = np.asarray(lo)
    high = np.asarray(hi)
    if low.dtype == object or high.dtype == object:
        need = [
            max(int(h).bit_length() if h > 0 else 0, (-int(x) - 1).bit_length() if x < 0 else 0)
            for x, h in zip(low.ravel(), high.ravel(), strict=True)
        ]
        return np.asarray(need, dtype=np.int64).reshape(low.shape) + 1
    pos = np.maximum(high, 0).astype(np.int64)
    neg = np.maximum(-low.astype(np.int64) - 1, 0)
    return np.maximum(bit_length(pos), bit_length(neg)) + 1


def bit_length(x: np.ndarray) -> np.ndarray:
    """int.bit_length for non-negative int64 values, vectorised.

    frexp gives it directly below 2**53; above, the float may round up to the next power of two,
    which the correction step catches (x >> (e - 1) is 0 exactly when e overshoots by one).
    """
    x = np.asarray(x, dtype=np.int64)
    _, exp = np.frexp(x.astype(np.float64))
    exp = exp.astype(np.int64)
    over = (exp > 0) & ((x >> np.maximum(exp - 1, 0)) == 0)
    return exp - over


def infer_widths(graph: Graph, input_width: int) -> np.ndarray:
    """Bit width of each node's integer for signed inputs of ``input_width`` bits."""
    if not 1 <= int(input_width) <= 4096:
        raise ValueError(f"Input width must be between 1 and 4096 bits; got {input_width}.")
    top = 1 << (int(input_width) - 1)
    lo, hi = infer_ranges(graph, -top, top - 1)
    return signed_width(lo, hi)


def modular_widths(graph: Graph, widths: np.ndarray) -> np.ndarray:
    """Narrow exact widths to the bits some reader needs (two's-complement wrap-around).

    The low ``w`` bits of a sum, difference, negation or product depend only on the low ``w``
    bits of its operands, so a node needs no more bits than its widest reader needs after that
    reader's alignment shift (plus the bits a TRUNC reader drops). Outputs keep their exact
    width, so every output value is unchanged; inputs keep theirs (they are ports).
    """
    widths = np.asarray(widths, dtype=np.int64)
    need = np.zeros(graph.num_nodes, dtype=np.int64)
    outs = graph.output_nodes
    need[outs] = widths[outs]
    la, lb = operand_shifts(graph)
    drop = trunc_drops(graph)
    for nodes in reversed(level_groups(graph)[1:]):
        have = np.minimum(widths[nodes], need[nodes])
        a = graph.a[nodes]
        np.maximum.at(need, a, have - la[nodes] + drop[nodes])
        has_b = graph.b[nodes] >= 0
        np.maximum.at(need, graph.b[nodes][has_b], have[has_b] - lb[nodes][has_b])
    narrowed = np.minimum(widths, np.maximum(need, 1))
    narrowed[graph.input_nodes] = widths[graph.input_nodes]
    return narrowed


def datapath_bits(graph: Graph, input_width: int = 8) -> int:
    """The widest node integer of the exact fixed-point graph for signed inputs of
    ``input_width`` bits: the adder width the hardware needs."""
    return int(infer_widths(graph, input_width).max(initial=0))
