"""Exact operation counts read off a shift-add graph (spec section 0)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from fewops.cost.bits import bit_cost
from fewops.graph.graph import Graph
from fewops.graph.ops import Op


@dataclass(frozen=True)
class GraphCost:
    """What one evaluation of a graph costs in hardware.

    ``adds`` counts two-input adders and subtractors (a - b is one add); ``negs`` negations that
    could not be folded; ``mults`` general multipliers by a constant that is not +-2^e; ``shifts``
    nonzero constant shifts (wiring, free, counted for information); ``adder_depth`` the longest
    chain of adders from an input to an output. With ``bits`` asked for (:func:`count_graph`),
    ``adder_bits`` is the full-adder bits of every adder and ``luts_est`` the calibrated LUT
    estimate for 8-bit signed inputs (see :mod:`fewops.cost.bits`); both are 0 otherwise.
    """

    adds: int
    subs: int
    negs: int
    mults: int
    shifts: int
    adder_depth: int
    nodes: int
    inputs: int
    outputs: int
    adder_bits: int = 0
    luts_est: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def is_power_of_two(values: ArrayLike) -> np.ndarray:
    v = np.abs(np.asarray(values, dtype=np.int64))
    return (v > 0) & ((v & (v - 1)) == 0)


def count_graph(graph: Graph, bits: bool = False, input_width: int = 8) -> GraphCost:
    """Count adders, negations, multipliers, shifts and adder depth of ``graph``.

    ``bits`` also counts full-adder bits and estimates LUTs for signed inputs of
    ``input_width`` bits (a pass over the graph's ranges: searches that only need adds skip it).
    """
    op = graph.op
    binary = (op == Op.ADD) | (op == Op.SUB)
    mul = op == Op.MUL
    mul_pow2 = mul & is_power_of_two(graph.const if graph.const.dtype != object else 0)
    mul_neg_pow2 = mul_pow2 & (np.asarray(graph.const, dtype=np.int64) < 0)
    general = mul & ~mul_pow2 & (np.asarray(graph.const, dtype=np.int64) != 0)
    uses_a = (graph.a >= 0) & (op != Op.OUTPUT)
    shifts = int(np.count_nonzero(uses_a & (graph.sa != 0)))
    shifts += int(np.count_nonzero(binary & (graph.sb != 0)))
    shifts += int(np.count_nonzero(mul_pow2 & (np.abs(np.asarray(graph.const, np.int64)) > 1)))
    depth = graph.adder_depth[graph.output_nodes].max(initial=0)
    bit = bit_cost(graph, input_width) if bits else None
    return GraphCost(
        adds=int(np.count_nonzero(binary)),
        subs=int(np.count_nonzero(op == Op.SUB)),
        negs=int(np.count_nonzero(op == Op.NEG)) + int(np.count_nonzero(mul_neg_pow2)),
        mults=int(np.count_nonzero(general)),
        shifts=shifts,
        adder_depth=int(depth),
        nodes=graph.num_nodes,
        inputs=graph.num_inputs,
        outputs=graph.num_outputs,
        adder_bits=bit.adder_bits if bit else 0,
        luts_est=bit.luts_est if bit else 0,
    )
