"""The shift-add graph: the one representation every code lowers to."""

from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.passes import fold_negations, remove_dead_ends
from fewops.graph.widths import infer_ranges, infer_widths

__all__ = [
    "Graph",
    "GraphBuilder",
    "Op",
    "emit_outputs",
    "fold_negations",
    "infer_ranges",
    "infer_widths",
    "remove_dead_ends",
    "sum_terms",
]
