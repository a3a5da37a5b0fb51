"""Bit-level cost of a shift-add graph: full-adder bits per adder, and LUT / FF estimates.

An adder of output width ``w`` (the exact interval width, narrowed to the bits its readers need)
needs a full adder per bit except the low bits that pass through as wires: below the lowest
possibly-nonzero bit of the operand that starts higher, only one operand carries data (or none).
A subtraction whose subtracted operand starts lower pays for those bits too (the negation needs
the carry). This is FloPoCo's ``getNodeCost`` and da4ml's ``cost_add`` with ``adder_size=1``.

The LUT estimate weighs each adder bit by its class (:data:`LUT_PER_BIT`), fitted to yosys
``synth_xilinx`` (see docs/hardware.md and benchmarks/results/hardware_calibration.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.rounding import Exponents, exponents
from fewops.graph.widths import check_input_width, infer_ranges, modular_widths, signed_width

# LUTs per full-adder bit of each class, fitted by benchmarks/calibrate_luts.py against yosys
# synth_xilinx (xc7 LUT6 + CARRY4); benchmarks/results/hardware_calibration.md has the data, the
# fit's R^2 and its worst relative error. "full": an adder bit whose sum some reader keeps;
# "carry": a bit below what every reader keeps (only its carry matters); "const": a bit of an
# adder with a constant operand (the propagate signal is a wire, no LUT); "adds": per adder of two
# variables (not needed by the fit: 0). General multipliers (dense codes) are not calibrated:
# yosys maps constant multipliers far below their shift-add expansion.
LUT_PER_BIT = {"full": 0.927, "carry": 0.094, "const": 0.0, "adds": 0.0}
BIT_CLASSES = ("full", "carry", "const")
LUT_TERMS = tuple(LUT_PER_BIT)


def node_widths(graph: Graph, input_width: int) -> np.ndarray:
    """Width of every node for signed inputs of ``input_width`` bits, as the emitter builds it."""
    input_width = check_input_width(input_width, max_bits=64, min_bits=1)
    top = 1 << (input_width - 1)
    lo, hi = infer_ranges(graph, -top, top - 1)
    widths = np.asarray(signed_width(lo, hi), dtype=np.int64)
    widths[graph.input_nodes] = input_width
    return modular_widths(graph, widths)


def csd_weight(values: np.ndarray) -> np.ndarray:
    """Nonzero canonical-signed-digit count of each integer."""
    out = np.zeros(values.shape[0], dtype=np.int64)
    for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
        v = abs(int(v))
        while v:
            if v & 1:
                out[i] += 1
                v = v - 1 if (v & 3) == 1 else v + 1
            v >>= 1
    return out


def adder_bits(graph: Graph, input_width: int = 8) -> np.ndarray:
    """Full-adder bits of every node (0 for wiring: inputs, constants, shifts, truncations).

    A general multiplier by ``c`` is costed as the (CSD digits of c) - 1 adders it expands to, at
    its output width; a negation as an incrementer of its width.
    """
    widths = node_widths(graph, input_width)
    exp = exponents(graph)
    op = graph.op
    bits = np.zeros(graph.num_nodes, dtype=np.int64)
    node = exp.lsb_in  # exponent of the adder's result, before any later truncation
    a = np.maximum(graph.a, 0)
    b = np.maximum(graph.b, 0)
    za = _zero(exp)[a] + graph.sa - node
    zb = _zero(exp)[b] + graph.sb - node
    add = op == Op.ADD
    sub = op == Op.SUB
    free = np.where(sub & (zb < za), zb, np.maximum(za, zb))
    free = np.maximum(free, 0)
    bits = np.where(add | sub, np.maximum(widths - free, 0), bits)
    neg = op == Op.NEG
    bits = np.where(neg, np.maximum(widths - np.maximum(za, 0), 0), bits)
    muls = np.flatnonzero(op == Op.MUL)
    if muls.size:
        digits = csd_weight(graph.const[muls])
        negative = np.asarray(graph.const[muls], dtype=object) < 0
        extra = np.maximum(digits - 1, 0) + ((digits == 1) & negative)
        bits[muls] = extra * widths[muls]
    return bits


def carry_only_bits(graph: Graph, bits: np.ndarray, input_width: int = 8) -> np.ndarray:
    """Of each node's full-adder bits, those below the bits its readers keep.

    A node read only through TRUNC nodes that drop ``t`` bits needs no sum from its low ``t``
    bits, only their carry; synthesis maps such a carry-only run to fewer LUTs than bits.
    """
    op = graph.op
    n = graph.num_nodes
    keep_from = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    reads = graph.a >= 0
    drop = np.where(op == Op.TRUNC, np.asarray(graph.const, dtype=object), 0).astype(np.int64)
    np.minimum.at(keep_from, graph.a[reads], drop[reads])
    has_b = graph.b >= 0
    np.minimum.at(keep_from, graph.b[has_b], 0)
    keep_from[keep_from == np.iinfo(np.int64).max] = 0
    exp = exponents(graph)
    a = np.maximum(graph.a, 0)
    b = np.maximum(graph.b, 0)
    za = _zero(exp)[a] + graph.sa - exp.lsb_in
    zb = np.where(graph.b >= 0, _zero(exp)[b] + graph.sb - exp.lsb_in, za)
    free = np.maximum(np.where((op == Op.SUB) & (zb < za), zb, np.maximum(za, zb)), 0)
    return np.minimum(np.maximum(keep_from - free, 0), bits)


def _zero(exp: Exponents) -> np.ndarray:
    """Exponent of each node's lowest possibly-nonzero bit, after its own drop."""
    return np.maximum(exp.zero_in, exp.lsb)


def register_bits(graph: Graph, input_width: int = 8, pipeline_every: int | None = None) -> int:
    """Flip-flops of the emitted module: register banks every ``pipeline_every`` adder levels
    (see :mod:`fewops.hw.emit`), none for a combinational module."""
    if pipeline_every is None:
        return 0
    widths = node_widths(graph, input_width)
    depth = graph.adder_depth
    stage = np.where(depth > 0, (depth - 1) // int(pipeline_every), 0)
    outs = graph.output_nodes
    latency = int(stage[outs].max(initial=0)) + 1
    need = np.zeros(graph.num_nodes, dtype=np.int64)
    for operand in (graph.a, graph.b):
        has = operand >= 0
        delay = stage[has] - stage[operand[has]]
        np.maximum.at(need, operand[has], delay)
    np.maximum.at(need, outs, latency - stage[outs])
    return int((need * widths).sum())


@dataclass(frozen=True)
class BitCost:
    """Bit-level cost of one graph: adds, full-adder bits and the LUT / FF estimates."""

    adds: int
    adder_bits: int
    luts_est: int
    ffs_est: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def bit_classes(graph: Graph, input_width: int = 8) -> dict[str, int]:
    """Total full-adder bits of ``graph`` by class (:data:`BIT_CLASSES`), and ``adds``: the
    adders of two variables (the terms of :data:`LUT_PER_BIT`)."""
    bits = adder_bits(graph, input_width)
    const_operand = (graph.op == Op.CONST)[np.maximum(graph.b, 0)] & (graph.b >= 0)
    const_operand |= (graph.op == Op.CONST)[np.maximum(graph.a, 0)] & (graph.a >= 0)
    const_bits = np.where(const_operand, bits, 0)
    carry = np.where(const_operand, 0, carry_only_bits(graph, bits, input_width))
    binary = (graph.op == Op.ADD) | (graph.op == Op.SUB)
    return {
        "full": int(bits.sum() - const_bits.sum() - carry.sum()),
        "carry": int(carry.sum()),
        "const": int(const_bits.sum()),
        "adds": int(np.count_nonzero(binary & ~const_operand & (bits > 0))),
    }


def estimate_luts(classes: dict[str, int]) -> int:
    """LUTs of a combinational layer from its full-adder bits by class (the calibrated fit)."""
    return max(0, int(round(sum(LUT_PER_BIT[k] * classes[k] for k in LUT_TERMS))))


def bit_cost(graph: Graph, input_width: int = 8, pipeline_every: int | None = None) -> BitCost:
    """Adds, adder bits and the LUT and flip-flop estimates of ``graph``."""
    classes = bit_classes(graph, input_width)
    adds = int(np.count_nonzero((graph.op == Op.ADD) | (graph.op == Op.SUB)))
    return BitCost(
        adds=adds,
        adder_bits=sum(classes[k] for k in BIT_CLASSES),
        luts_est=estimate_luts(classes),
        ffs_est=register_bits(graph, input_width, pipeline_every),
    )
