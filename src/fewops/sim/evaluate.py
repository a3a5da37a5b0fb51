"""Bit-exact integer evaluation of a shift-add graph, level by level.

Nodes are renumbered by (level, kind) so that each group of one level and one kind is a contiguous
slice; a whole graph then costs a few numpy calls per level, not one Python step per node. Integers
stay int64 while the inferred widths allow it and switch to Python ints (object arrays) beyond.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import infer_ranges, operand_shifts, signed_width

BLOCK_BYTES = 64 * 2**20  # node-value buffer of one block of vectors
MIN_BLOCK = 256  # below this many vectors per block, evaluate vector by vector


@dataclass(frozen=True)
class _Group:
    """Nodes of one level and one kind, contiguous in evaluation order.

    An operand is either an index array or, where its positions form an arithmetic progression
    (as adder trees built pairwise do), a slice: no gather at all.
    """

    kind: int
    start: int
    stop: int
    a: np.ndarray | slice
    b: np.ndarray | slice | None
    la: np.ndarray | None  # None when no operand needs a shift
    lb: np.ndarray | None
    const: np.ndarray | None


@dataclass(frozen=True)
class _Plan:
    order: np.ndarray  # order[p] = original node at position p
    inputs: np.ndarray  # positions of input ports, in port order
    outputs: np.ndarray  # positions of output ports, in port order
    consts: np.ndarray  # positions of constants
    const_values: np.ndarray
    groups: tuple[_Group, ...]
    largest_group: int


def _as_slice(index: np.ndarray) -> np.ndarray | slice:
    if index.shape[0] >= 2:
        step = int(index[1] - index[0])
        if step > 0 and np.all(np.diff(index) == step):
            return slice(int(index[0]), int(index[-1]) + 1, step)
    elif index.shape[0] == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    return index


def _make_plan(graph: Graph) -> _Plan:
    n = graph.num_nodes
    la_all, lb_all = operand_shifts(graph)
    a_all, b_all = graph.a.copy(), graph.b.copy()
    # Addition commutes: put the shifted operand second so most adders need one shift only.
    swap = (graph.op == Op.ADD) & (la_all > 0) & (lb_all == 0)
    a_all[swap], b_all[swap] = graph.b[swap], graph.a[swap]
    la_all[swap], lb_all[swap] = lb_all[swap], la_all[swap]
    order = np.lexsort((graph.op, graph.level))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    key = graph.level[order] * 16 + graph.op[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [n]])
    groups = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        nodes = order[start:stop]
        kind = int(graph.op[nodes[0]])
        if kind in (Op.INPUT, Op.CONST):
            continue
        binary = kind in (Op.ADD, Op.SUB)
        la = la_all[nodes]
        lb = lb_all[nodes] if binary else None
        groups.append(
            _Group(
                kind=kind,
                start=int(start),
                stop=int(stop),
                a=_as_slice(position[a_all[nodes]]),
                b=_as_slice(position[b_all[nodes]]) if binary else None,
                la=la if la.any() else None,
                lb=lb if binary and lb.any() else None,
                const=graph.const[nodes] if kind == Op.MUL else None,
            )
        )
    consts = np.flatnonzero(graph.op == Op.CONST)
    return _Plan(
        order=order,
        inputs=position[graph.input_nodes],
        outputs=position[graph.output_nodes],
        consts=position[consts],
        const_values=graph.const[consts],
        groups=tuple(groups),
        largest_group=max((g.stop - g.start for g in groups), default=0),
    )


def _plan_for(graph: Graph) -> _Plan:
    plan = graph.meta.get("_eval_plan")
    if plan is None:
        plan = _make_plan(graph)
        graph.meta["_eval_plan"] = plan
    return plan


def evaluate(graph: Graph, x, *, threads: int = 2) -> np.ndarray:
    """Outputs of ``graph`` for integer inputs ``x`` of shape (batch, inputs) or (inputs,).

    Returns int64 (or, beyond 63 bits, Python-int) outputs of shape (batch, outputs) whose real
    values are ``y * 2**-graph.output_scale`` relative to the input scale. Exact at any width.
    """
    x = np.asarray(x)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != graph.num_inputs:
        raise ValueError(
            f"Inputs must have shape (batch, {graph.num_inputs}) or ({graph.num_inputs},); "
            f"got {x.shape}."
        )
    if x.dtype != object and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(
            f"The integer simulator needs integer inputs; got dtype {x.dtype}. "
            "Quantize the inputs to integers first."
        )
    batch = x.shape[0]
    if batch == 0 or graph.num_outputs == 0:
        out = np.zeros((batch, graph.num_outputs), dtype=np.int64)
        return out[0] if single else out
    lo, hi = int(x.min()), int(x.max())
    node_lo, node_hi = infer_ranges(graph, lo, hi)
    lane_bits = _lane_bits(node_lo, node_hi)
    plan = _plan_for(graph)
    if lane_bits is None:
        dtype = object
        words = x.astype(object)
        consts = plan.const_values.astype(object)
    else:
        dtype = np.int64
        words = pack_lanes(x.astype(np.int64), lane_bits)
        # Every lane carries the constant, so the packed constant repeats it in each lane.
        lanes = 64 // lane_bits
        consts = pack_lanes(np.tile(plan.const_values.astype(np.int64), (lanes, 1)), lane_bits)[0]
    out = _run(plan, words, consts, dtype, max(1, int(threads)))
    if dtype is not object:
        out = unpack_lanes(out, lane_bits, batch)
    return out[0] if single else out


def _run(plan: _Plan, words: np.ndarray, consts: np.ndarray, dtype, threads: int) -> np.ndarray:
    """Evaluate packed word vectors: block layout for small graphs, vector by vector for big ones.

    Big graphs split their vectors over forked worker processes (the numpy gathers hold the GIL
    for much of their time, so threads do not scale); small ones over threads.
    """
    n_words = words.shape[0]
    block = BLOCK_BYTES // max(1, plan.order.shape[0] * 8)
    if block >= MIN_BLOCK:
        starts = np.arange(0, n_words, block)
        out = np.empty((n_words, plan.outputs.shape[0]), dtype=dtype)

        def run(block_starts: np.ndarray) -> None:
            for s in block_starts:
                out[s : s + block] = _evaluate_block(plan, words[s : s + block], consts, dtype).T

        shares = [starts[i::threads] for i in range(min(threads, starts.shape[0]))]
        if len(shares) > 1 and dtype is not object:
            with ThreadPoolExecutor(max_workers=len(shares)) as pool:
                list(pool.map(run, shares))
        else:
            for share in shares:
                run(share)
        return out
    shares = np.array_split(np.arange(n_words), min(threads, n_words))
    if len(shares) > 1 and dtype is not object and n_words >= 4 and _can_fork():
        global _FORKED
        _FORKED = (plan, words, consts, dtype)
        try:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=len(shares), mp_context=ctx) as pool:
                parts = list(pool.map(_run_forked_rows, shares))
        finally:
            _FORKED = None
        return np.concatenate(parts)
    return np.concatenate([_run_rows(plan, words, consts, dtype, rows) for rows in shares])


_FORKED: tuple | None = None  # state a forked worker inherits (never pickled)


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _run_forked_rows(rows: np.ndarray) -> np.ndarray:
    plan, words, consts, dtype = _FORKED
    return _run_rows(plan, words, consts, dtype, rows)


def _run_rows(plan: _Plan, words, consts, dtype, rows: np.ndarray) -> np.ndarray:
    out = np.empty((rows.shape[0], plan.outputs.shape[0]), dtype=dtype)
    vals = np.empty(plan.order.shape[0], dtype=dtype)
    spare = np.empty((2, plan.largest_group), dtype=dtype) if dtype is not object else None
    for i, r in enumerate(rows):
        out[i] = _evaluate_vector(plan, words[r], consts, vals, spare, dtype)
    return out


def _lane_bits(node_lo, node_hi) -> int | None:
    """Bits per lane when several vectors share one int64 word; None beyond 64 bits.

    Add, subtract, shift, negate and multiply by a constant are linear over the integers, so the
    word ``v0 + v1 * 2**L + ...`` carries every lane through the graph untouched, as long as each
    node's true value fits L signed bits (the inferred widths guarantee it). Two or four vectors
    then cost one numpy element, and the index arrays are read once for all of them.
    """
    if node_lo.dtype == object:
        return None
    width = int(signed_width(node_lo, node_hi).max(initial=1))
    for bits in (16, 32, 64):
        if width <= bits:
            return bits
    return None


def pack_lanes(x: np.ndarray, lane_bits: int) -> np.ndarray:
    """Pack rows of x (batch, k) into int64 words (ceil(batch / lanes), k), lane 0 lowest."""
    lanes = 64 // lane_bits
    if lanes == 1:
        return x
    words = -(-x.shape[0] // lanes)
    padded = np.zeros((words * lanes, x.shape[1]), dtype=np.int64)
    padded[: x.shape[0]] = x
    padded = padded.reshape(words, lanes, x.shape[1])
    packed = np.zeros((words, x.shape[1]), dtype=np.int64)
    for lane in range(lanes):
        packed += padded[:, lane] << np.int64(lane * lane_bits)  # wraps mod 2**64: intended
    return packed


def unpack_lanes(words: np.ndarray, lane_bits: int, batch: int) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: sign-extend each lane, then drop it from the word."""
    lanes = 64 // lane_bits
    if lanes == 1:
        return words.astype(np.int64)
    words = words.astype(np.int64)
    out = np.empty((words.shape[0], lanes, words.shape[1]), dtype=np.int64)
    mask = np.int64((1 << lane_bits) - 1)
    sign = np.int64(1 << (lane_bits - 1))
    for lane in range(lanes):
        low = ((words & mask) ^ sign) - sign
        out[:, lane] = low
        words = (words - low) >> np.int64(lane_bits)
    return out.reshape(-1, words.shape[1])[:batch]


def _evaluate_vector(plan: _Plan, x, consts, vals, spare, dtype) -> np.ndarray:
    """Outputs for one (packed) input vector; ``vals`` holds one value per node.

    One vector at a time keeps every operation a flat 1-D numpy call (gathers of 1-D arrays are
    several times faster than row gathers of 2-D blocks), and the buffers are reused.
    """
    vals[plan.inputs] = x
    if plan.consts.size:
        vals[plan.consts] = consts
    for g in plan.groups:
        res = vals[g.start : g.stop]
        va = _gather(vals, g.a, spare, 0, g.stop - g.start)
        if g.la is not None:
            va = _shl(va, g.la, dtype)
        if g.kind == Op.ADD or g.kind == Op.SUB:
            vb = _gather(vals, g.b, spare, 1, g.stop - g.start)
            if g.lb is not None:
                vb = _shl(vb, g.lb, dtype, out=vb if spare is not None else None)
            (np.add if g.kind == Op.ADD else np.subtract)(va, vb, out=res)
        elif g.kind == Op.NEG:
            np.negative(va, out=res)
        elif g.kind == Op.MUL:
            np.multiply(va, g.const.astype(dtype, copy=False), out=res)
        else:  # SHIFT and OUTPUT: the alignment shift is all they do
            res[...] = va
    return vals[plan.outputs]


def _gather(vals, index, spare, slot: int, n: int):
    if isinstance(index, slice) or spare is None:
        return vals[index]
    # mode="clip" skips the bounds check (indices come from a validated plan) and is faster.
    return np.take(vals, index, out=spare[slot, :n], mode="clip")


def _evaluate_block(plan: _Plan, x: np.ndarray, consts, dtype) -> np.ndarray:
    """Outputs for a block of vectors, shape (outputs, block); rows of ``vals`` are nodes."""
    vals = np.empty((plan.order.shape[0], x.shape[0]), dtype=dtype)
    vals[plan.inputs] = x.T
    if plan.consts.size:
        vals[plan.consts] = consts[:, None]
    for g in plan.groups:
        res = vals[g.start : g.stop]
        va = vals[g.a]
        if g.la is not None:
            va = _shl(va, g.la[:, None], dtype)
        if g.kind == Op.ADD or g.kind == Op.SUB:
            vb = vals[g.b]
            if g.lb is not None:
                vb = _shl(vb, g.lb[:, None], dtype)
            (np.add if g.kind == Op.ADD else np.subtract)(va, vb, out=res)
        elif g.kind == Op.NEG:
            np.negative(va, out=res)
        elif g.kind == Op.MUL:
            np.multiply(va, g.const.astype(dtype, copy=False)[:, None], out=res)
        else:
            res[...] = va
    return vals[plan.outputs]


def _shl(values: np.ndarray, shifts: np.ndarray, dtype, out=None) -> np.ndarray:
    if dtype is object:
        factors = np.vectorize(lambda s: 1 << int(s), otypes=[object])(shifts)
        return values * factors
    return np.left_shift(values, shifts, out=out)
