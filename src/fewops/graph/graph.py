"""The array-based shift-add graph that every weight code lowers to.

One node per row of a handful of numpy arrays: opcode, two operand indices, two operand shifts and
an integer constant. Counting (:mod:`fewops.cost`), simulation (:mod:`fewops.sim`) and Verilog
(:mod:`fewops.hw`) read nothing else, so what is counted is what is simulated is what is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from fewops.graph.ops import BINARY_OPS, LEAF_OPS, OP_NAMES, Op
from fewops.graph.validate import canonicalize
from fewops.graph.widths import infer_lsb


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated, topologically ordered shift-add graph.

    Arrays (all of length ``num_nodes``): ``op`` (uint8 :class:`Op` codes), ``a`` and ``b``
    (operand node indices, -1 where unused), ``sa`` and ``sb`` (left shifts applied to each operand,
    may be negative), ``const`` (input index for INPUT, value for CONST, multiplier for MUL).
    Build one with :class:`fewops.graph.GraphBuilder` or :meth:`from_arrays`; its matrix (for a
    linear graph) is :func:`fewops.sim.graph_matrix`.
    """

    op: np.ndarray
    a: np.ndarray
    b: np.ndarray
    sa: np.ndarray
    sb: np.ndarray
    const: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        op: ArrayLike,
        a: ArrayLike,
        b: ArrayLike,
        sa: ArrayLike,
        sb: ArrayLike,
        const: ArrayLike,
        meta: dict | None = None,
    ) -> Graph:
        """Validate raw arrays (reordering them topologically if needed) and make a graph."""
        arrays = canonicalize(op, a, b, sa, sb, const)
        return cls(*arrays, meta=dict(meta or {}))

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return int(self.op.shape[0])

    @cached_property
    def input_nodes(self) -> np.ndarray:
        """Node indices of the inputs, ordered by input port."""
        idx = np.flatnonzero(self.op == Op.INPUT)
        return idx[np.argsort(self.const[idx], kind="stable")]

    @cached_property
    def output_nodes(self) -> np.ndarray:
        """Node indices of the outputs, in port order (node order)."""
        return np.flatnonzero(self.op == Op.OUTPUT)

    @property
    def num_inputs(self) -> int:
        return int(self.input_nodes.shape[0])

    @property
    def num_outputs(self) -> int:
        return int(self.output_nodes.shape[0])

    # -- structure -----------------------------------------------------------------------------
    @cached_property
    def level(self) -> np.ndarray:
        """Topological depth of each node (leaves 0); nodes of one level evaluate together."""
        return _depth(self, counts=np.ones(self.num_nodes, dtype=np.int64))

    @cached_property
    def adder_depth(self) -> np.ndarray:
        """Number of adders on the longest path into each node."""
        is_add = np.isin(self.op, BINARY_OPS).astype(np.int64)
        return _depth(self, counts=is_add)

    @cached_property
    def lsb(self) -> np.ndarray:
        """Exponent of each node's integer: the node stands for ``int * 2**lsb``."""
        return infer_lsb(self)

    @property
    def output_scale(self) -> int:
        """Outputs are integers y with real value ``y * 2**-output_scale``."""
        if self.num_outputs == 0:
            return 0
        return int(-self.lsb[self.output_nodes[0]])

    def consumers_count(self) -> np.ndarray:
        """How many operand slots read each node."""
        counts = np.zeros(self.num_nodes, dtype=np.int64)
        for operand in (self.a, self.b):
            used = operand[operand >= 0]
            counts += np.bincount(used, minlength=self.num_nodes)
        return counts

    def op_counts(self) -> dict[str, int]:
        """Number of nodes of each kind, by name."""
        counts = np.bincount(self.op, minlength=len(OP_NAMES))
        return {OP_NAMES[i]: int(c) for i, c in enumerate(counts)}

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.op_counts().items() if v)
        return (
            f"Graph({self.num_inputs} in, {self.num_outputs} out, {self.num_nodes} nodes: {counts})"
        )

    __repr__ = summary


def _depth(graph: Graph, counts: np.ndarray) -> np.ndarray:
    """Longest-path weight into each node, where a node adds ``counts[node]``.

    Nodes are topologically ordered, but a Python loop over millions of nodes is slow; instead
    relax all nodes at once until nothing changes (as many passes as the graph is deep).
    """
    n = graph.num_nodes
    depth = np.zeros(n, dtype=np.int64)
    leaf = np.isin(graph.op, LEAF_OPS)
    inner = np.flatnonzero(~leaf)
    a, b = graph.a[inner], graph.b[inner]
    b_safe = np.where(b >= 0, b, a)
    step = counts[inner]
    for _ in range(n + 1):
        new = np.maximum(depth[a], depth[b_safe]) + step
        if np.array_equal(new, depth[inner]):
            return depth
        depth[inner] = new
    raise ValueError("The graph has a cycle: node depths never settle.")
