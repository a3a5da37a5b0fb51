"""Bit-exact integer simulation of graphs and coded networks."""

from fewops.sim.evaluate import evaluate, graph_matrix

__all__ = ["evaluate", "graph_matrix"]
