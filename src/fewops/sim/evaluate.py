"""Bit-exact integer evaluation of a shift-add graph, level by level.

The plan (:mod:`fewops.sim.plan`) lays nodes out so that each group of one level and one kind is a
contiguous slice; a whole graph then costs a few numpy calls per level, not one Python step per
node. Integers stay int64 while the inferred widths allow it and switch to Python ints (object
arrays) beyond.
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import infer_ranges, signed_width
from fewops.parallel import pmap
from fewops.sim.plan import Plan, plan_for

BLOCK_BYTES = 64 * 2**20  # node-value buffer of one block of vectors
MIN_BLOCK = 256  # below this many vectors per block, evaluate vector by vector

# Lane widths by graph and input range (see _lane_bits); weak, so it dies with the graph.
_LANE_BITS: weakref.WeakKeyDictionary[Graph, dict[tuple[int, int], int | None]] = (
    weakref.WeakKeyDictionary()
)


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
    lane_bits = _lane_bits(graph, int(x.min()), int(x.max()))
    plan = plan_for(graph)
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
    if lane_bits is not None:
        out = unpack_lanes(out, lane_bits, batch)
    return out[0] if single else out


def graph_matrix(graph: Graph) -> np.ndarray:
    """The real matrix M (outputs x inputs) with y = M x, for a linear graph (no CONST).

    Evaluates the graph on the identity, so the entries are exactly the graph's (float64 rounds
    only shifts beyond its range).
    """
    if np.any((graph.op == Op.CONST) & (graph.const != 0)):
        raise ValueError("graph_matrix() needs a linear graph; this one has nonzero constants.")
    eye = np.eye(graph.num_inputs, dtype=np.int64)
    y = evaluate(graph, eye)  # (num_inputs, num_outputs)
    return np.ldexp(np.asarray(y, dtype=np.float64).T, -graph.output_scale)


def _run(plan: Plan, words: np.ndarray, consts: np.ndarray, dtype, threads: int) -> np.ndarray:
    """Evaluate packed word vectors: block layout for small graphs, vector by vector for big ones.

    Big graphs split their vectors over worker processes (:func:`fewops.parallel.pmap`, local
    loky workers; the numpy gathers hold the GIL for much of their time, so threads do not
    scale); small ones over threads.
    """
    n_words = words.shape[0]
    block = BLOCK_BYTES // max(1, plan.num_nodes * 8)
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
    if len(shares) > 1 and dtype is not object and n_words >= 4:
        common = {"plan": plan, "words": words, "consts": consts, "dtype": dtype}
        parts = pmap(run_rows, shares, workers=len(shares), common=common, local=True)
        return np.concatenate(parts)
    return np.concatenate([run_rows(rows, plan, words, consts, dtype) for rows in shares])


def run_rows(rows: np.ndarray, plan: Plan, words, consts, dtype) -> np.ndarray:
    """Evaluate the packed vectors ``words[rows]`` one by one (a task of ``_run``)."""
    out = np.empty((rows.shape[0], plan.outputs.shape[0]), dtype=dtype)
    vals = np.empty(plan.num_nodes, dtype=dtype)
    spare = np.empty((2, plan.largest_group), dtype=dtype) if dtype is not object else None
    for i, r in enumerate(rows):
        out[i] = _evaluate_vector(plan, words[r], consts, vals, spare, dtype)
    return out


def _lane_bits(graph: Graph, lo: int, hi: int) -> int | None:
    """Bits per lane when several vectors share one int64 word; None beyond 64 bits.

    Add, subtract, shift, negate and multiply by a constant are linear over the integers, so the
    word ``v0 + v1 * 2**L + ...`` carries every lane through the graph untouched, as long as each
    node's true value fits L signed bits (the inferred widths guarantee it). Two or four vectors
    then cost one numpy element, and the index arrays are read once for all of them. The answer
    depends only on the graph and the input range, so it is kept per graph and range.
    """
    known = _LANE_BITS.setdefault(graph, {})
    if (lo, hi) not in known:
        known[(lo, hi)] = _widest_lane(graph, lo, hi)
    return known[(lo, hi)]


def _widest_lane(graph: Graph, lo: int, hi: int) -> int | None:
    node_lo, node_hi = infer_ranges(graph, lo, hi)
    if node_lo.dtype == object:
        return None
    # The widest node is the one with the most negative low or the largest high bound.
    width = int(signed_width(node_lo.min(initial=0), node_hi.max(initial=0)))
    if np.any(graph.op == Op.TRUNC):
        # Dropping low bits is not linear: a packed word would carry one lane's bits into
        # the next, so a graph that rounds gets one vector per int64 word.
        return 64 if width <= 64 else None
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


def _evaluate_vector(plan: Plan, x, consts, vals, spare, dtype) -> np.ndarray:
    """Outputs for one (packed) input vector; ``vals`` holds one value per node.

    One vector at a time keeps every operation a flat 1-D numpy call (gathers of 1-D arrays are
    several times faster than row gathers of 2-D blocks), and the buffers are reused.
    """
    vals[plan.inputs] = x
    if plan.consts.size:
        vals[plan.consts] = consts
    table = _input_table(plan, x, dtype)
    for g in plan.groups:
        res = vals[g.start : g.stop]
        src = table if g.table else vals
        n = g.stop - g.start
        va = _gather(src, g.a, spare, 0, n)
        # Shifts go to the spare buffers: a sliced operand is a view of node values that other
        # nodes still read, so it must never be shifted in place.
        if g.la is not None:
            va = _shl(va, g.la, dtype, out=spare[0, :n] if spare is not None else None)
        if g.kind == Op.ADD or g.kind == Op.SUB:
            vb = _gather(src, g.b, spare, 1, n)
            if g.lb is not None:
                vb = _shl(vb, g.lb, dtype, out=spare[1, :n] if spare is not None else None)
            (np.add if g.kind == Op.ADD else np.subtract)(va, vb, out=res)
        elif g.kind == Op.NEG:
            np.negative(va, out=res)
        elif g.kind == Op.MUL:
            assert g.const is not None  # the plan gives every MUL group its constants
            np.multiply(va, g.const.astype(dtype, copy=False), out=res)
        elif g.kind == Op.TRUNC:
            assert g.const is not None  # the plan gives every TRUNC group its drops
            res[...] = _shr(va, g.const, dtype)
        else:  # SHIFT and OUTPUT: the alignment shift is all they do
            res[...] = va
    return vals[plan.outputs]


def _input_table(plan: Plan, x, dtype):
    """The inputs shifted by each of the plan's table shifts, rows stacked: entry r*K + port.

    ``x`` is one vector (K,) or a block laid out (K, block); the table keeps that trailing shape.
    """
    if plan.table_shifts is None:
        return None
    shifts = plan.table_shifts.reshape((-1,) + (1,) * x.ndim)
    if dtype is object:
        factors = np.array([1 << int(s) for s in plan.table_shifts], dtype=object)
        table = x[None] * factors.reshape(shifts.shape)
    else:
        table = np.left_shift(x[None], shifts)
    return table.reshape((-1,) + x.shape[1:])


def _gather(vals, index, spare, slot: int, n: int):
    if isinstance(index, slice) or spare is None:
        return vals[index]
    # mode="clip" skips the bounds check (indices come from a validated plan) and is faster.
    return np.take(vals, index, out=spare[slot, :n], mode="clip")


def _evaluate_block(plan: Plan, x: np.ndarray, consts, dtype) -> np.ndarray:
    """Outputs for a block of vectors, shape (outputs, block); rows of ``vals`` are nodes."""
    vals = np.empty((plan.num_nodes, x.shape[0]), dtype=dtype)
    vals[plan.inputs] = x.T
    if plan.consts.size:
        vals[plan.consts] = consts[:, None]
    table = _input_table(plan, x.T, dtype)
    for g in plan.groups:
        res = vals[g.start : g.stop]
        src = table if g.table else vals
        va = src[g.a]
        if g.la is not None:
            va = _shl(va, g.la[:, None], dtype)
        if g.kind == Op.ADD or g.kind == Op.SUB:
            vb = src[g.b]
            if g.lb is not None:
                vb = _shl(vb, g.lb[:, None], dtype)
            (np.add if g.kind == Op.ADD else np.subtract)(va, vb, out=res)
        elif g.kind == Op.NEG:
            np.negative(va, out=res)
        elif g.kind == Op.MUL:
            assert g.const is not None  # the plan gives every MUL group its constants
            np.multiply(va, g.const.astype(dtype, copy=False)[:, None], out=res)
        elif g.kind == Op.TRUNC:
            assert g.const is not None  # the plan gives every TRUNC group its drops
            res[...] = _shr(va, g.const[:, None], dtype)
        else:
            res[...] = va
    return vals[plan.outputs]


def _shr(values: np.ndarray, shifts: np.ndarray, dtype) -> np.ndarray:
    """floor(values / 2**shifts): an arithmetic right shift (exact for Python ints too)."""
    if dtype is object:
        drops = np.broadcast_to(shifts, values.shape)
        flat = [int(v) >> int(t) for v, t in zip(values.ravel(), drops.ravel(), strict=True)]
        return np.array(flat, dtype=object).reshape(values.shape)
    return np.right_shift(values, shifts.astype(np.int64))


def _shl(values: np.ndarray, shifts: np.ndarray, dtype, out=None) -> np.ndarray:
    if dtype is object:
        factors = np.vectorize(lambda s: 1 << int(s), otypes=[object])(shifts)
        return values * factors
    return np.left_shift(values, shifts, out=out)
