"""Vectorised construction of shift-add graphs.

Each call appends a whole batch of nodes and returns their indices, so a lowering builds a layer
with a few numpy calls per adder-tree level rather than one Python call per adder.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fewops.graph.graph import Graph
from fewops.graph.ops import Op


class GraphBuilder:
    """Append-only builder; :meth:`build` validates and returns an immutable :class:`Graph`."""

    def __init__(self) -> None:
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._size = 0
        self._num_inputs = 0

    @property
    def size(self) -> int:
        return self._size

    def _append(
        self,
        op: int,
        a: ArrayLike,
        b: ArrayLike = -1,
        sa: ArrayLike = 0,
        sb: ArrayLike = 0,
        const: ArrayLike = 0,
    ) -> np.ndarray:
        a = np.atleast_1d(np.asarray(a, dtype=np.int64))
        n = a.shape[0]
        cols = [np.full(n, int(op), dtype=np.uint8), a]
        for v in (b, sa, sb):
            cols.append(np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy())
        cols.append(np.broadcast_to(np.asarray(const), (n,)).copy())
        self._chunks.append(tuple(cols))
        idx = np.arange(self._size, self._size + n, dtype=np.int64)
        self._size += n
        return idx

    def inputs(self, count: int) -> np.ndarray:
        """Append ``count`` input ports (numbered after any earlier ones)."""
        ports = np.arange(self._num_inputs, self._num_inputs + count, dtype=np.int64)
        self._num_inputs += count
        return self._append(Op.INPUT, np.full(count, -1), const=ports)

    def const(self, values: ArrayLike) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(values, dtype=np.int64))
        return self._append(Op.CONST, np.full(arr.shape[0], -1), const=arr)

    def add(self, a: ArrayLike, b: ArrayLike, sa: ArrayLike = 0, sb: ArrayLike = 0) -> np.ndarray:
        return self._append(Op.ADD, a, b, sa, sb)

    def sub(self, a: ArrayLike, b: ArrayLike, sa: ArrayLike = 0, sb: ArrayLike = 0) -> np.ndarray:
        return self._append(Op.SUB, a, b, sa, sb)

    def neg(self, a: ArrayLike, sa: ArrayLike = 0) -> np.ndarray:
        return self._append(Op.NEG, a, -1, sa)

    def shift(self, a: ArrayLike, sa: ArrayLike) -> np.ndarray:
        return self._append(Op.SHIFT, a, -1, sa)

    def mul(self, a: ArrayLike, const: ArrayLike, sa: ArrayLike = 0) -> np.ndarray:
        return self._append(Op.MUL, a, -1, sa, 0, np.asarray(const, dtype=np.int64))

    def trunc(self, a: ArrayLike, drop: ArrayLike, sa: ArrayLike = 0) -> np.ndarray:
        """Nodes ``floor((a << sa) / 2**drop)`` at an exponent ``drop`` higher: rounding by wires."""
        return self._append(Op.TRUNC, a, -1, sa, 0, np.asarray(drop, dtype=np.int64))

    def outputs(self, a: ArrayLike, sa: ArrayLike = 0) -> np.ndarray:
        return self._append(Op.OUTPUT, a, -1, sa)

    def build(self, meta: dict | None = None) -> Graph:
        if not self._chunks:
            cols = [np.zeros(0, dtype=t) for t in (np.uint8,) + (np.int64,) * 5]
        else:
            cols = [np.concatenate(parts) for parts in zip(*self._chunks, strict=True)]
        op, a, b, sa, sb, const = cols
        return Graph.from_arrays(op, a, b, sa, sb, const, meta=meta)


def sum_terms(
    builder: GraphBuilder,
    node: ArrayLike,
    shift: ArrayLike,
    sign: ArrayLike,
    group: ArrayLike,
    num_groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum signed, shifted terms per group with balanced adder trees: (terms in group) - 1 adds.

    Term t stands for ``sign[t] * node[t] * 2**shift[t]`` and belongs to ``group[t]``. Returns per
    group ``(node, shift, sign)`` of its sum: node -1 for an empty group, sign -1 where every term
    was negative (the caller decides whether a NEG is needed or the sign folds downstream). A
    negative term is absorbed into a SUB, so signs cost nothing while a group has a positive term.
    Common shifts are factored out of each adder so that adders stay as narrow as possible.
    """
    node = np.asarray(node, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    sign = np.asarray(sign, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    if not (node.shape == shift.shape == sign.shape == group.shape):
        raise ValueError("sum_terms needs node, shift, sign and group arrays of one shape.")
    if group.size and (group.min() < 0 or group.max() >= num_groups):
        raise ValueError(f"Term groups must lie in 0..{num_groups - 1}.")
    if not np.all(np.abs(sign) == 1):
        raise ValueError("Term signs must be +1 or -1.")
    # Positive terms first within a group, so that pairs mix signs as little as possible.
    order = np.lexsort((-sign, group))
    node, shift, sign, group = node[order], shift[order], sign[order], group[order]
    while True:
        counts = np.bincount(group, minlength=num_groups)
        if counts.max(initial=0) <= 1:
            break
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(group.shape[0]) - starts[group]
        size = counts[group]
        first = (rank % 2 == 0) & (rank + 1 < size)
        i = np.flatnonzero(first)
        j = i + 1
        carried = np.flatnonzero((rank % 2 == 0) & (rank + 1 >= size))
        new_node, new_shift, new_sign = _pair(builder, node, shift, sign, i, j)
        keep_group = np.concatenate([group[i], group[carried]])
        keep = np.lexsort((np.concatenate([rank[i], rank[carried]]), keep_group))
        node = np.concatenate([new_node, node[carried]])[keep]
        shift = np.concatenate([new_shift, shift[carried]])[keep]
        sign = np.concatenate([new_sign, sign[carried]])[keep]
        group = keep_group[keep]
        # Re-sort positives first so later levels keep absorbing signs into SUBs.
        order = np.lexsort((-sign, group))
        node, shift, sign, group = node[order], shift[order], sign[order], group[order]
    out_node = np.full(num_groups, -1, dtype=np.int64)
    out_shift = np.zeros(num_groups, dtype=np.int64)
    out_sign = np.ones(num_groups, dtype=np.int64)
    out_node[group] = node
    out_shift[group] = shift
    out_sign[group] = sign
    return out_node, out_shift, out_sign


def _pair(
    builder: GraphBuilder,
    node: np.ndarray,
    shift: np.ndarray,
    sign: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One adder per pair (i, j); both-negative pairs stay negative (an ADD with sign -1)."""
    si, sj = sign[i], sign[j]
    # Put a positive operand first where there is one: + + -> add, + - -> sub, - - -> add (neg).
    swap = (si < 0) & (sj > 0)
    first = np.where(swap, j, i)
    second = np.where(swap, i, j)
    common = np.minimum(shift[first], shift[second])
    is_sub = sign[first] != sign[second]
    new_node = np.empty(i.shape[0], dtype=np.int64)
    for mask, make in ((is_sub, builder.sub), (~is_sub, builder.add)):
        if mask.any():
            f, s = first[mask], second[mask]
            new_node[mask] = make(
                node[f], node[s], shift[f] - common[mask], shift[s] - common[mask]
            )
    new_sign = np.where(is_sub, 1, sign[first])
    return new_node, common, new_sign


def emit_outputs(
    builder: GraphBuilder, node: ArrayLike, shift: ArrayLike, sign: ArrayLike
) -> np.ndarray:
    """Turn per-group sums from :func:`sum_terms` into output ports (NEG or zero where needed)."""
    nodes = np.array(node, dtype=np.int64)
    shifts = np.array(shift, dtype=np.int64)
    empty = nodes < 0
    if empty.any():
        zero = builder.const([0])[0]
        nodes[empty] = zero
        shifts[empty] = 0
    negative = (np.asarray(sign) < 0) & ~empty
    if negative.any():
        nodes[negative] = builder.neg(nodes[negative], shifts[negative])
        shifts[negative] = 0
    return builder.outputs(nodes, shifts)
