"""Per-layer and per-network cost reports (the ``totals`` and ``layers`` of report.json).

Counts come from the layer's shift-add graph (per output position) plus what the code stores
(weight bits, table reads). A convolution's per-inference cost is its per-position cost times the
number of output positions; both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fewops.cost.count import GraphCost

PER_POSITION_KEYS = (
    "adds",
    "adder_bits",
    "luts_est",
    "mults",
    "negs",
    "shifts",
    "table_reads",
    "bias_adds",
    "scale_mults",
)
TOTAL_KEYS = PER_POSITION_KEYS + ("weight_bits", "params")


@dataclass(frozen=True)
class LayerCost:
    """Cost of one coded layer.

    ``graph`` holds the counts of one output position; ``table_reads``, ``bias_adds`` and
    ``scale_mults`` are per position too, and so are ``adder_bits`` (full-adder bits) and
    ``luts_est`` (the calibrated LUT estimate, :mod:`fewops.cost.bits`). ``weight_bits`` and ``params`` are stored once.
    """

    name: str
    kind: str  # "linear" or "conv"
    shape: tuple[int, int]  # (out, in) of the coded matrix (im2col view for a conv)
    graph: GraphCost
    positions: int = 1
    table_reads: int = 0
    bias_adds: int = 0
    scale_mults: int = 0
    weight_bits: int = 0
    params: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.positions < 1:
            raise ValueError(f"A layer has at least one output position; got {self.positions}.")

    def per_position(self) -> dict[str, int]:
        return {
            "adds": self.graph.adds,
            "adder_bits": self.graph.adder_bits,
            "luts_est": self.graph.luts_est,
            "mults": self.graph.mults,
            "negs": self.graph.negs,
            "shifts": self.graph.shifts,
            "table_reads": self.table_reads,
            "bias_adds": self.bias_adds,
            "scale_mults": self.scale_mults,
        }

    def per_inference(self) -> dict[str, int]:
        per_pos = self.per_position()
        out = {k: v * self.positions for k, v in per_pos.items()}
        out["weight_bits"] = self.weight_bits
        out["params"] = self.params
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "positions": self.positions,
            **self.per_inference(),
            "adder_depth": self.graph.adder_depth,
            "per_position": self.per_position(),
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclass(frozen=True)
class NetworkCost:
    layers: tuple[LayerCost, ...]

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(TOTAL_KEYS, 0)
        for layer in self.layers:
            for key, value in layer.per_inference().items():
                totals[key] += value
        return totals

    def to_dict(self) -> dict:
        return {"totals": self.totals(), "layers": [layer.to_dict() for layer in self.layers]}
