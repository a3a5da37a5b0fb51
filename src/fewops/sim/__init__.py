"""Bit-exact integer simulation of graphs and coded networks."""

from fewops.sim.evaluate import evaluate

__all__ = ["evaluate"]
