"""Cost counting over shift-add graphs, per layer and per network."""

from fewops.cost.count import GraphCost, count_graph
from fewops.cost.report import LayerCost, NetworkCost

__all__ = ["GraphCost", "LayerCost", "NetworkCost", "count_graph"]
