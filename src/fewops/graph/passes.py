"""Graph-to-graph passes: dead-end removal and folding negations into subtractions."""

from __future__ import annotations

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import level_groups


def live_nodes(graph: Graph) -> np.ndarray:
    """Boolean mask of nodes that some output depends on (inputs always count as live)."""
    live = np.zeros(graph.num_nodes, dtype=bool)
    live[graph.output_nodes] = True
    for nodes in reversed(level_groups(graph)):
        used = nodes[live[nodes]]
        live[graph.a[used][graph.a[used] >= 0]] = True
        live[graph.b[used][graph.b[used] >= 0]] = True
    live[graph.input_nodes] = True
    return live


def subgraph(graph: Graph, keep: np.ndarray) -> Graph:
    """The graph restricted to the nodes in boolean mask ``keep`` (operands must be kept too)."""
    new_index = np.cumsum(keep) - 1
    a, b = graph.a[keep], graph.b[keep]
    return Graph.from_arrays(
        graph.op[keep],
        np.where(a >= 0, new_index[np.maximum(a, 0)], -1),
        np.where(b >= 0, new_index[np.maximum(b, 0)], -1),
        graph.sa[keep],
        graph.sb[keep],
        graph.const[keep],
        meta=graph.meta,
    )


def remove_dead_ends(graph: Graph) -> Graph:
    """Drop every node whose value reaches no output (e.g. unused codewords of an LCC step)."""
    live = live_nodes(graph)
    return graph if live.all() else subgraph(graph, live)


def fold_negations(graph: Graph) -> Graph:
    """Rewrite ``x + (-y)`` as ``x - y`` and ``x - (-y)`` as ``x + y``, then drop unused NEGs.

    A NEG is folded only where every reader can absorb it, so no value changes; a NEG feeding an
    output, a multiplier or the first operand of a SUB stays (and is counted).
    """
    negs = np.flatnonzero(graph.op == Op.NEG)
    if negs.size == 0:
        return graph
    op, a, b = graph.op.copy(), graph.a.copy(), graph.b.copy()
    sa, sb = graph.sa.copy(), graph.sb.copy()
    is_neg = np.zeros(graph.num_nodes, dtype=bool)
    is_neg[negs] = True
    binary = (op == Op.ADD) | (op == Op.SUB)
    # A NEG can fold if it is read only as an ADD operand or as the second operand of a SUB.
    blocked = np.zeros(graph.num_nodes, dtype=bool)
    reads_a = np.flatnonzero((a >= 0) & is_neg[np.maximum(a, 0)])
    blocked[a[reads_a][~(op[reads_a] == Op.ADD)]] = True
    reads_b = np.flatnonzero((b >= 0) & is_neg[np.maximum(b, 0)])
    both = reads_b[(a[reads_b] == b[reads_b])]
    blocked[b[both]] = True  # x = (-y) + (-y) has no single-adder fold
    foldable = is_neg & ~blocked
    if not foldable.any():
        return graph
    # Second operand is a foldable NEG: flip the adder kind and read through the NEG.
    rb = np.flatnonzero(binary & (b >= 0) & foldable[np.maximum(b, 0)])
    rb = rb[~foldable[a[rb]]] if rb.size else rb
    inner = b[rb]
    op[rb] = np.where(op[rb] == Op.ADD, Op.SUB, Op.ADD)
    sb[rb] = sb[rb] + graph.sa[inner]
    b[rb] = graph.a[inner]
    # First operand of an ADD is a foldable NEG (and the second is not): swap into a SUB.
    ra = np.flatnonzero((op == Op.ADD) & (a >= 0) & foldable[np.maximum(a, 0)])
    ra = ra[~foldable[b[ra]]] if ra.size else ra
    inner = a[ra]
    new_a, new_sa = b[ra].copy(), sb[ra].copy()
    b[ra], sb[ra] = graph.a[inner], sa[ra] + graph.sa[inner]
    a[ra], sa[ra] = new_a, new_sa
    op[ra] = Op.SUB
    folded = Graph.from_arrays(op, a, b, sa, sb, graph.const, meta=graph.meta)
    return remove_dead_ends(folded)
