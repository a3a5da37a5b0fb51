"""Counting a :class:`~fewops.network.network.Network`: adds, adder bits and LUT estimates of
every coded step times its output positions, read from the same steps the simulator runs and the
Verilog is built from (positions from the static shapes, biases from the calibrated integers)."""

from __future__ import annotations

import numpy as np

from fewops.cost.count import count_graph, is_power_of_two
from fewops.cost.report import LayerCost, NetworkCost
from fewops.network.network import Network
from fewops.network.steps import Coded


def count_network(net: Network) -> NetworkCost:
    """Per-layer and total cost of ``net``'s coded steps (per inference).

    Weight bits and parameter counts belong to the code, not the network, and are 0 here;
    the report's :func:`fewops.report.pipeline.network_cost` adds them from the coded modules.
    """
    values = net.values()
    layers = []
    for step in net.steps:
        if not isinstance(step, Coded):
            continue
        shape = values[step.name].shape
        positions = int(np.prod(shape[1:])) if step.conv is not None else 1
        out = step.graph.num_outputs
        pow2 = bool(is_power_of_two(np.array([int(step.scale_m)]))[0])
        layers.append(
            LayerCost(
                name=step.name,
                kind="conv" if step.conv is not None else "linear",
                shape=(out, step.graph.num_inputs),
                graph=count_graph(step.graph, bits=True),
                positions=positions,
                bias_adds=int(np.count_nonzero(step.bias)),
                scale_mults=0 if pow2 else out,
            )
        )
    return NetworkCost(tuple(layers))
