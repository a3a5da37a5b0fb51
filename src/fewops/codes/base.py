"""What every weight code produces: a coded matrix with its shift-add graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fewops.codes.common import dyadic_value
from fewops.cost.count import count_graph, is_power_of_two
from fewops.cost.report import LayerCost
from fewops.graph.graph import Graph
from fewops.sim.evaluate import graph_matrix


@dataclass(frozen=True, eq=False)
class CodedMatrix:
    """A matrix W (out, in) coded as ``W_hat = graph matrix * scale_m * 2**scale_e``.

    The graph maps integer inputs to integers ``y`` whose real value is
    ``y * 2**-graph.output_scale``; the layer then applies the dyadic scale once per output
    (a multiplier when ``scale_m`` is not a power of two, or folded into requantization).
    """

    method: str
    graph: Graph
    scale_m: int = 1
    scale_e: int = 0
    weight_bits: int = 0
    params: int = 0
    table_reads: int = 0
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.graph.num_outputs, self.graph.num_inputs)

    @property
    def scale(self) -> float:
        return dyadic_value(self.scale_m, self.scale_e)

    @cached_property
    def matrix(self) -> np.ndarray:
        """The decoded float matrix W_hat (exact: every entry is a dyadic rational)."""
        return graph_matrix(self.graph) * self.scale

    def with_known_matrix(self, matrix: np.ndarray) -> CodedMatrix:
        """Give this code its decoded matrix when the encoder already holds W_hat exactly, so
        ``matrix`` need not evaluate the graph on every unit vector; returns ``self``."""
        self.__dict__["matrix"] = np.asarray(matrix)  # the cached_property's own slot
        return self

    def layer_cost(
        self, name: str, kind: str = "linear", positions: int = 1, bias=None
    ) -> LayerCost:
        out = self.shape[0]
        bias_adds = 0 if bias is None else int(np.count_nonzero(np.asarray(bias)))
        pow2 = bool(is_power_of_two(np.array([self.scale_m]))[0])
        return LayerCost(
            name=name,
            kind=kind,
            shape=self.shape,
            graph=count_graph(self.graph, bits=True),
            positions=positions,
            table_reads=self.table_reads,
            bias_adds=bias_adds,
            scale_mults=0 if pow2 else out,
            weight_bits=self.weight_bits,
            params=self.params,
            extra=dict(self.extra),
        )
