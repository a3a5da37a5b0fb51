"""Validation and topological ordering of raw graph arrays."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fewops.graph.ops import BINARY_OPS, LEAF_OPS, OP_NAMES, Op, op_name

MAX_SHIFT = 1024


Arrays6 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def canonicalize(
    op: ArrayLike, a: ArrayLike, b: ArrayLike, sa: ArrayLike, sb: ArrayLike, const: ArrayLike
) -> Arrays6:
    """Check raw arrays and return them as typed arrays in topological order.

    Raises ValueError with the offending node for unknown kinds, operands out of range, missing
    operands, absurd shifts and cycles; a graph that is acyclic but out of order is reordered.
    """
    op = np.asarray(op)
    n = op.shape[0]
    arrays = [np.asarray(x) for x in (a, b, sa, sb, const)]
    for name, arr in zip(("a", "b", "sa", "sb", "const"), arrays, strict=True):
        if arr.shape != (n,):
            raise ValueError(
                f"Graph array {name!r} has shape {arr.shape}; expected ({n},) like 'op'."
            )
    if n and (op.min() < 0 or op.max() >= len(OP_NAMES)):
        bad = int(np.flatnonzero((op < 0) | (op >= len(OP_NAMES)))[0])
        op_name(op[bad])  # raises the unknown-kind error
    op = op.astype(np.uint8)
    a, b, sa, sb = (x.astype(np.int64) for x in arrays[:4])
    const = arrays[4]
    if const.dtype != object:
        const = const.astype(np.int64)

    leaf = np.isin(op, LEAF_OPS)
    binary = np.isin(op, BINARY_OPS)
    _check_operand(op, a, ~leaf, "first", n)
    _check_operand(op, b, binary, "second", n)
    too_far = (np.abs(sa) > MAX_SHIFT) | (np.abs(sb) > MAX_SHIFT)
    if too_far.any():
        i = int(np.flatnonzero(too_far)[0])
        raise ValueError(
            f"Node {i} ({op_name(op[i])}) shifts by {int(sa[i])}/{int(sb[i])}; "
            f"shifts must stay within +-{MAX_SHIFT}."
        )
    trunc = np.flatnonzero(op == Op.TRUNC)
    if trunc.size:
        drops = np.asarray(const[trunc], dtype=object)
        wrong = [
            node
            for node, t in zip(trunc.tolist(), drops.tolist(), strict=True)
            if not 0 <= t <= MAX_SHIFT
        ]
        if wrong:
            node = wrong[0]
            raise ValueError(
                f"Node {node} (trunc) drops {int(const[node])} low bits; a trunc node drops "
                f"0..{MAX_SHIFT} bits."
            )
    a = np.where(leaf, -1, a)
    b = np.where(binary, b, -1)
    inputs = np.flatnonzero(op == Op.INPUT)
    ports = np.sort(np.asarray(const[inputs], dtype=np.int64))
    if not np.array_equal(ports, np.arange(inputs.shape[0])):
        raise ValueError(
            f"Input nodes must number their ports 0..{inputs.shape[0] - 1} once each; "
            f"got ports {ports[:10].tolist()}{'...' if ports.shape[0] > 10 else ''}."
        )

    idx = np.arange(n)
    forward = ((a >= idx) & ~leaf) | ((b >= idx) & binary)
    if forward.any():
        order = _topological_order(op, a, b, leaf, binary)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = idx
        op, sa, sb, const = op[order], sa[order], sb[order], const[order]
        a = np.where(a[order] >= 0, rank[np.maximum(a[order], 0)], -1)
        b = np.where(b[order] >= 0, rank[np.maximum(b[order], 0)], -1)
    return np.asarray(op), a, b, np.asarray(sa), np.asarray(sb), np.asarray(const)


def _check_operand(
    op: np.ndarray, operand: np.ndarray, needed: np.ndarray, which: str, n: int
) -> None:
    bad = needed & ((operand < 0) | (operand >= n))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Node {i} ({op_name(op[i])}) has its {which} operand {int(operand[i])} out of "
            f"range: a graph of {n} nodes needs operands in 0..{n - 1}."
        )


def _topological_order(
    op: np.ndarray, a: np.ndarray, b: np.ndarray, leaf: np.ndarray, binary: np.ndarray
) -> np.ndarray:
    """Nodes ordered by longest path from the leaves (stable); raises on a cycle, naming nodes
    on or behind it.

    A few vectorised relaxation passes settle the depths of ordinary graphs; a long chain of
    forward references would need one pass per link (quadratic: 9 s for 40k reversed nodes), so
    past ``FAST_PASSES`` the depths come from Kahn's algorithm, linear in the edges."""
    n = op.shape[0]
    depth = np.zeros(n, dtype=np.int64)
    inner = np.flatnonzero(~leaf)
    ia = a[inner]
    ib = np.where(binary[inner], b[inner], ia)
    for _ in range(min(n + 1, FAST_PASSES)):
        new = np.maximum(depth[ia], depth[ib]) + 1
        if np.array_equal(new, depth[inner]):
            return np.argsort(depth, kind="stable")
        depth[inner] = new
    return np.argsort(_kahn_depths(inner, ia, ib, n), kind="stable")


# Relaxation passes tried before Kahn's algorithm (ordinary graphs settle in a few).
FAST_PASSES = 64


def _kahn_depths(inner: np.ndarray, ia: np.ndarray, ib: np.ndarray, n: int) -> np.ndarray:
    """Longest-path depth of every node by Kahn's algorithm over the operand edges."""
    src = np.concatenate([ia, ib])
    dst = np.concatenate([inner, inner])
    indegree = np.bincount(dst, minlength=n)
    by_src = np.argsort(src, kind="stable")
    starts = np.searchsorted(src[by_src], np.arange(n + 1)).tolist()
    readers = dst[by_src].tolist()
    pending = indegree.tolist()
    depth = [0] * n
    ready = np.flatnonzero(indegree == 0).tolist()
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for reader in readers[starts[node] : starts[node + 1]]:
            depth[reader] = max(depth[reader], depth[node] + 1)
            pending[reader] -= 1
            if pending[reader] == 0:
                ready.append(reader)
    if done < n:
        stuck = [i for i in range(n) if pending[i] > 0][:5]
        raise ValueError(f"The graph has a cycle; nodes on or behind it include {stuck}.")
    return np.asarray(depth, dtype=np.int64)
