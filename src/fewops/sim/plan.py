"""The evaluation plan: a graph's nodes laid out so that each level costs a few numpy calls.

Nodes are renumbered by (level, kind), so each group of one level and one kind is a contiguous
slice of the value buffer. Within a group they follow the order of their consumers (top down), so
the operands of a level's adders mostly sit at evenly spaced positions of the level below: the
adder trees that codes build pairwise then read their operands as strided slices, not gathers.
Groups that read only input ports (level 1 of every adder tree) read a small table of shifted
inputs instead, which folds their operand shifts into the table.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import operand_shifts

# A shifted-input table with more entries than this is not worth building per vector.
MAX_TABLE = 1 << 16
# Groups shorter than this are not split into a strided part and a gathered tail.
MIN_SPLIT = 1024
# Nodes per cache chunk: 2**19 int64 values are 4 MiB, so both workers keep a chunk in L3
# (measured on the CSD 1024 x 1024 benchmark: 2**18 to 2**20 all beat no chunking).
CHUNK_NODES = 1 << 19


@dataclass(frozen=True)
class Group:
    """Nodes of one level and one kind, contiguous in evaluation order.

    An operand is an index array or, where its positions form an arithmetic progression, a
    slice (no gather at all). With ``table`` set, ``a`` and ``b`` index the shifted-input table
    and ``la``/``lb`` are None: the shifts are in the table.
    """

    kind: int
    start: int
    stop: int
    a: np.ndarray | slice
    b: np.ndarray | slice | None
    la: np.ndarray | None  # None when no operand needs a shift
    lb: np.ndarray | None
    const: np.ndarray | None
    table: bool = False


@dataclass(frozen=True)
class Plan:
    order: np.ndarray  # order[p] = original node at position p
    inputs: np.ndarray  # positions of input ports, in port order
    outputs: np.ndarray  # positions of output ports, in port order
    consts: np.ndarray  # positions of constants
    const_values: np.ndarray
    groups: tuple[Group, ...]
    largest_group: int
    table_shifts: np.ndarray | None  # shifts of the input table's rows; None: no table

    @property
    def num_nodes(self) -> int:
        return int(self.order.shape[0])


# Plans by graph, built once per graph. Graphs are immutable and hash by identity, so a weak
# mapping keeps each plan exactly as long as its graph lives and never touches ``graph.meta``.
_PLANS: weakref.WeakKeyDictionary[Graph, Plan] = weakref.WeakKeyDictionary()


def plan_for(graph: Graph) -> Plan:
    """The graph's plan, built once per graph and kept while the graph lives."""
    plan = _PLANS.get(graph)
    if plan is None:
        plan = make_plan(graph)
        _PLANS[graph] = plan
    return plan


def make_plan(graph: Graph) -> Plan:
    n = graph.num_nodes
    a_all, b_all, la_all, lb_all = _commuted_operands(graph)
    chunks = max(1, min(graph.num_outputs, -(-n // CHUNK_NODES)))
    order, chunk = _consumer_order(graph, a_all, b_all, chunks)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    table_shifts = _table_shifts(graph, a_all, b_all, la_all, lb_all)
    port = np.full(n, -1, dtype=np.int64)
    port[graph.input_nodes] = np.arange(graph.num_inputs)
    levels = int(graph.level.max(initial=0)) + 1
    key = (chunk[order] * levels + graph.level[order]) * 16 + graph.op[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [n]])
    groups = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        nodes = order[start:stop]
        kind = int(graph.op[nodes[0]])
        if kind in (Op.INPUT, Op.CONST):
            continue
        binary = kind in (Op.ADD, Op.SUB)
        operands = [a_all[nodes]] + ([b_all[nodes]] if binary else [])
        shifts = [la_all[nodes]] + ([lb_all[nodes]] if binary else [])
        if (
            table_shifts is not None
            and kind != Op.OUTPUT
            and all((port[o] >= 0).all() for o in operands)
        ):
            # Table row r holds the inputs shifted by table_shifts[r]; entry r*K + port.
            k = graph.num_inputs
            idx = [
                np.searchsorted(table_shifts, sh) * k + port[o]
                for o, sh in zip(operands, shifts, strict=True)
            ]
            groups.append(_group(kind, start, stop, idx, [None] * len(idx), graph, nodes, True))
            continue
        idx = [position[o] for o in operands]
        cut = _regular_prefix(idx)
        for lo, hi in ((0, cut), (cut, stop - start)):
            if hi > lo:
                part = [i[lo:hi] for i in idx]
                lsh = [s[lo:hi] if s[lo:hi].any() else None for s in shifts]
                groups.append(
                    _group(kind, start + lo, start + hi, part, lsh, graph, nodes[lo:hi], False)
                )
    consts = np.flatnonzero(graph.op == Op.CONST)
    return Plan(
        order=order,
        inputs=position[graph.input_nodes],
        outputs=position[graph.output_nodes],
        consts=position[consts],
        const_values=graph.const[consts],
        groups=tuple(groups),
        largest_group=max((g.stop - g.start for g in groups), default=0),
        table_shifts=table_shifts,
    )


def _group(kind, start, stop, idx, lsh, graph, nodes, table) -> Group:
    return Group(
        kind=kind,
        start=int(start),
        stop=int(stop),
        a=_as_slice(idx[0]),
        b=_as_slice(idx[1]) if len(idx) > 1 else None,
        la=lsh[0],
        lb=lsh[1] if len(lsh) > 1 else None,
        const=graph.const[nodes] if kind in (Op.MUL, Op.TRUNC) else None,
        table=table,
    )


def _commuted_operands(graph: Graph):
    """Operands and their alignment shifts, the shifted one second where addition allows it."""
    la, lb = operand_shifts(graph)
    a, b = graph.a.copy(), graph.b.copy()
    # Addition commutes: put the shifted operand second so most adders need one shift only.
    swap = (graph.op == Op.ADD) & (la > 0) & (lb == 0)
    a[swap], b[swap] = graph.b[swap], graph.a[swap]
    la[swap], lb[swap] = lb[swap], la[swap]
    return a, b, la, lb


def _consumer_order(graph: Graph, a: np.ndarray, b: np.ndarray, chunks: int):
    """Nodes sorted by (chunk, level, kind, first consumer's position, port), assigned top down.

    Chunks keep the values a vector's evaluation touches in cache: the outputs are cut into
    ``chunks`` runs of ports, and each node belongs to the first chunk whose outputs need it. Every
    operand then belongs to the same or an earlier chunk, so evaluating chunk by chunk, level by
    level, is a valid order; each chunk's values stay cache-sized instead of streaming the whole
    graph through memory at every level.

    Working from the deepest level down, each node's key is the smallest rank*2 + port among the
    nodes that read it; sorting a level by that key puts the operands of consecutive adders at
    consecutive positions. Nodes nobody reads (the outputs) keep their index order.
    Returns the order and each node's chunk.
    """
    n = graph.num_nodes
    level = graph.level
    op = graph.op.astype(np.int64)
    big = np.int64(4) * n + 4
    key = np.full(n, big, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    chunk = np.full(n, chunks - 1, dtype=np.int64)
    outs = graph.output_nodes
    chunk[outs] = np.arange(outs.shape[0]) * chunks // max(1, outs.shape[0])
    by_level = np.argsort(level, kind="stable")
    bounds = np.flatnonzero(np.diff(level[by_level])) + 1
    next_rank = n
    for nodes in reversed(np.split(by_level, bounds)):
        local = np.lexsort((nodes, key[nodes], op[nodes], chunk[nodes]))
        nodes = nodes[local]
        next_rank -= nodes.shape[0]
        rank[nodes] = next_rank + np.arange(nodes.shape[0])
        for operand, port in ((a, 0), (b, 1)):
            used = operand[nodes] >= 0
            readers = nodes[used]
            np.minimum.at(key, operand[readers], rank[readers] * 2 + port)
            np.minimum.at(chunk, operand[readers], chunk[readers])
    return np.lexsort((rank, level, chunk)), chunk


def _table_shifts(graph: Graph, a, b, la, lb) -> np.ndarray | None:
    """Distinct shifts applied to input ports by nodes that read inputs only; None if too many."""
    if graph.num_inputs == 0:
        return None
    is_input = graph.op == Op.INPUT
    binary = (graph.op == Op.ADD) | (graph.op == Op.SUB)
    reads_a = (a >= 0) & is_input[np.maximum(a, 0)]
    reads_b = binary & (b >= 0) & is_input[np.maximum(b, 0)]
    readers = reads_a & (reads_b | ~binary) & (graph.op != Op.OUTPUT)
    if not readers.any():
        return None
    shifts = np.unique(np.concatenate([la[readers], lb[readers & binary]]))
    if shifts.shape[0] * graph.num_inputs > MAX_TABLE or shifts.max() > 62:
        return None
    return shifts.astype(np.int64)


def _regular_prefix(idx: list[np.ndarray]) -> int:
    """Length of the longest prefix over which every operand is an arithmetic progression.

    Consumer ordering makes most of a level's operands evenly spaced, with the irregular nodes
    (operands from other levels) sorted to the end; evaluating the regular part through slices
    and only the tail through gathers saves most of the gather work. 0 when not worth a split.
    """
    n = idx[0].shape[0]
    if n < MIN_SPLIT:
        return 0
    cut = n
    for index in idx:
        steps = np.diff(index)
        breaks = np.flatnonzero((steps != steps[0]) | (steps <= 0))
        if breaks.size:
            cut = min(cut, int(breaks[0]) + 1)
    return cut if cut >= MIN_SPLIT else 0


def _as_slice(index: np.ndarray) -> np.ndarray | slice:
    if index.shape[0] >= 2:
        step = int(index[1] - index[0])
        if step > 0 and np.all(np.diff(index) == step):
            return slice(int(index[0]), int(index[-1]) + 1, step)
    elif index.shape[0] == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    return index
