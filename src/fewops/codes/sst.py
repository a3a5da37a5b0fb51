"""Structured sparse ternary (SST) (n, k) weight coding (Boo & Sung, 2017).

Weights are ternary, ``w in {-D, 0, +D}``. Each row of W (out, in) is cut into groups of ``n``
consecutive weights along the input dimension (a last partial group is padded with zeros), and a
group holds at most ``k`` nonzeros. The allowed patterns are numbered in one fixed canonical order
and a group is stored as its index, ``ceil(log2 N(n, k))`` bits.

Canonical order of the patterns (the enumerative index):

1. by the number of nonzeros ``j`` (index 0 is the all-zero group);
2. then by the colexicographic rank of the nonzero positions ``p_0 < ... < p_{j-1}``,
   ``rank = sum_i C(p_i, i + 1)`` (the combinatorial number system);
3. then by the sign bits: bit ``i`` is set when the ``i``-th nonzero (counting from the lowest
   position) is negative.

So ``index = offset[j] + rank * 2**j + signs`` with ``offset[j] = sum_{i<j} C(n, i) 2**i``.
Encoding and decoding are arithmetic (vectorised over groups), so they work for every n up to 16
and k up to n; :meth:`SSTCode.table` gives the decode table (one ROM read per group in hardware).

The step D is rounded to a dyadic value ``m * 2**e`` (``|m| < 2**16``) so the hardware scale is
exact; with per-row steps all rows share the exponent and differ in the integer ``m``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import check_matrix, dyadic, dyadic_value
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.passes import fold_negations

MAX_N = 16
STEP_BITS = 16  # mantissa bits of a dyadic step
STEP_EXPONENT_BITS = 8  # bits to store a step's exponent
MAX_TABLE_ENTRIES = 1 << 20  # decode tables beyond this are refused (use decode())


def _check_nk(n, k) -> tuple[int, int]:
    for name, value in (("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}.")
    n, k = int(n), int(k)
    if n < 1:
        raise ValueError(f"The group size n must be at least 1; got n={n}.")
    if n > MAX_N:
        raise ValueError(f"The group size n={n} is over the supported limit of {MAX_N}.")
    if k < 1:
        raise ValueError(f"The number of nonzeros per group k must be at least 1; got k={k}.")
    if k > n:
        raise ValueError(f"k={k} nonzeros per group cannot exceed the group size n={n}.")
    return n, k


def num_codewords(n: int, k: int) -> int:
    """N(n, k) = sum_{j=0..k} C(n, j) 2**j: ternary vectors of length n with at most k nonzeros."""
    n, k = _check_nk(n, k)
    return sum(math.comb(n, j) << j for j in range(k + 1))


def _table_entry_bits(n: int, k: int) -> int:
    """Bits of one decode-table entry: the cheaper of 2 bits per weight and a position list."""
    dense = 2 * n
    listed = k * ((n - 1).bit_length() + 1) + k.bit_length()
    return min(dense, listed)


class SSTCode:
    """The (n, k) structured sparse ternary code.

    ``per_row_step`` fits one step per output row instead of one per matrix (each row's step is
    then one multiplier per output in the graph).
    """

    def __init__(self, n: int, k: int, *, per_row_step: bool = False) -> None:
        self.n, self.k = _check_nk(n, k)
        self.per_row_step = bool(per_row_step)
        self.num_codewords = num_codewords(self.n, self.k)
        self.bits_per_group = max(1, (self.num_codewords - 1).bit_length())
        # binom[p, q] = C(p, q) for p in 0..n, q in 0..n+1
        self._binom = np.array(
            [[math.comb(p, q) for q in range(self.n + 2)] for p in range(self.n + 1)],
            dtype=np.int64,
        )
        self._offset = np.array(
            [sum(math.comb(self.n, i) << i for i in range(j)) for j in range(self.k + 2)],
            dtype=np.int64,
        )

    def __repr__(self) -> str:
        extra = ", per_row_step=True" if self.per_row_step else ""
        return f"SSTCode(n={self.n}, k={self.k}{extra})"

    @property
    def bits_per_weight(self) -> float:
        """Index bits per weight (without step and table overhead)."""
        return self.bits_per_group / self.n

    @property
    def table_bits(self) -> int:
        """Size of the decode table (ROM) in bits."""
        return self.num_codewords * _table_entry_bits(self.n, self.k)

    def num_groups(self, in_features: int) -> int:
        return -(-int(in_features) // self.n)

    # -- enumerative index ---------------------------------------------------------------------
    def _pad(self, t: np.ndarray) -> np.ndarray:
        width = self.num_groups(t.shape[-1]) * self.n
        if width == t.shape[-1]:
            return t
        pad = np.zeros(t.shape[:-1] + (width - t.shape[-1],), dtype=t.dtype)
        return np.concatenate([t, pad], axis=-1)

    def encode(self, t) -> np.ndarray:
        """Indices (..., groups) of a ternary integer matrix T (..., in) with entries in {-1,0,1}.

        The last partial group is padded with zeros. Raises ValueError for entries outside
        {-1, 0, 1} or a group with more than k nonzeros.
        """
        arr = np.asarray(t)
        if arr.ndim == 0 or arr.shape[-1] == 0:
            raise ValueError(f"T must have at least one column; got shape {arr.shape}.")
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(f"T must be a ternary integer matrix; got dtype {arr.dtype}.")
        bad = ~np.isin(arr, (-1, 0, 1))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"T must hold only -1, 0 and +1; found {arr[where].item()!r} at {list(where)}."
            )
        arr = self._pad(arr.astype(np.int8))
        shape = arr.shape[:-1] + (arr.shape[-1] // self.n,)
        g = arr.reshape(-1, self.n)
        nz = g != 0
        j = nz.sum(axis=1)
        over = j > self.k
        if over.any():
            first = int(np.flatnonzero(over)[0])
            where = list(np.unravel_index(first, shape)) if shape else [first]
            raise ValueError(
                f"A group of T has {int(j[first])} nonzeros, more than k={self.k} "
                f"(group at {[int(i) for i in where]}, columns "
                f"{(first % shape[-1]) * self.n}..{(first % shape[-1]) * self.n + self.n - 1})."
            )
        ordinal = np.cumsum(nz, axis=1) - 1  # rank of each nonzero within its group
        pos = np.broadcast_to(np.arange(self.n), g.shape)
        rank_terms = self._binom[pos, np.clip(ordinal + 1, 0, self.n + 1)]
        rank = np.where(nz, rank_terms, 0).sum(axis=1)
        signs = np.where(nz & (g < 0), np.left_shift(1, np.maximum(ordinal, 0)), 0).sum(axis=1)
        index = self._offset[j] + (rank << j) + signs
        return index.astype(np.int64).reshape(shape)

    def _check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim == 0:
            raise ValueError("Indices must have at least one dimension (groups).")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"Indices must be integers; got dtype {idx.dtype}.")
        idx = idx.astype(np.int64)
        bad = (idx < 0) | (idx >= self.num_codewords)
        if bad.any():
            where = [int(i) for i in np.argwhere(bad)[0]]
            raise ValueError(
                f"Index {int(idx[tuple(where)])} at {where} is outside 0..{self.num_codewords - 1}"
                f" (N({self.n},{self.k}) = {self.num_codewords} patterns)."
            )
        return idx

    def decode(self, indices) -> np.ndarray:
        """Ternary int8 matrix (..., groups * n) of indices (..., groups): padded to whole groups."""
        idx = self._check_indices(indices)
        flat = idx.reshape(-1)
        j = np.searchsorted(self._offset, flat, side="right") - 1
        r = flat - self._offset[j]
        comb = r >> j
        signs = r & ((np.int64(1) << j) - 1)
        out = np.zeros((flat.shape[0], self.n), dtype=np.int8)
        rows = np.arange(flat.shape[0])
        for i in range(self.k - 1, -1, -1):
            active = i < j
            if not active.any():
                continue
            col = self._binom[: self.n, i + 1]  # C(p, i+1) for p = 0..n-1, nondecreasing
            p = (col[None, :] <= comb[:, None]).sum(axis=1) - 1
            p = np.where(active, p, 0)
            comb = comb - np.where(active, col[p], 0)
            value = np.where((signs >> i) & 1, -1, 1).astype(np.int8)
            out[rows[active], p[active]] = value[active]
        return out.reshape(idx.shape[:-1] + (idx.shape[-1] * self.n,))

    def table(self) -> np.ndarray:
        """The decode table: pattern ``i`` is row ``i`` (shape (N, n), int8 in {-1, 0, 1})."""
        if self.num_codewords > MAX_TABLE_ENTRIES:
            raise ValueError(
                f"The decode table of ({self.n},{self.k}) has {self.num_codewords} entries, over "
                f"the limit of {MAX_TABLE_ENTRIES}; use decode() on the indices you need."
            )
        return self.decode(np.arange(self.num_codewords)[:, None])

    # -- bit packing ---------------------------------------------------------------------------
    def pack(self, indices) -> bytes:
        """Indices (any shape, C order) packed at ``bits_per_group`` bits each, LSB first."""
        idx = self._check_indices(indices).reshape(-1)
        b = self.bits_per_group
        bits = ((idx[:, None] >> np.arange(b)) & 1).astype(np.uint8)
        return np.packbits(bits.reshape(-1), bitorder="little").tobytes()

    def packed_size(self, count: int) -> int:
        """Bytes of a packed stream of ``count`` indices."""
        return -(-int(count) * self.bits_per_group // 8)

    def unpack(self, data, shape) -> np.ndarray:
        """Indices of ``shape`` from bytes written by :meth:`pack` (length and range checked)."""
        shape = tuple(int(s) for s in np.atleast_1d(shape))
        count = int(np.prod(shape))
        raw = np.frombuffer(bytes(data), dtype=np.uint8)
        need = self.packed_size(count)
        if raw.shape[0] != need:
            raise ValueError(
                f"A packed ({self.n},{self.k}) index stream of {count} groups at "
                f"{self.bits_per_group} bits needs {need} bytes; got {raw.shape[0]}."
            )
        b = self.bits_per_group
        bits = np.unpackbits(raw, bitorder="little")
        if bits[count * b :].any():
            raise ValueError("The padding bits after the last packed index must be zero.")
        bits = bits[: count * b].reshape(count, b).astype(np.int64)
        idx = (bits << np.arange(b)).sum(axis=1)
        return self._check_indices(idx).reshape(shape)

    def save_packed(self, path, indices) -> None:
        """Write the packed indices to ``path`` (raw bytes, no header)."""
        Path(path).write_bytes(self.pack(indices))

    def load_packed(self, path, shape) -> np.ndarray:
        """Read indices of ``shape`` from a file written by :meth:`save_packed`."""
        data = Path(path).read_bytes()
        try:
            return self.unpack(data, shape)
        except ValueError as exc:
            raise ValueError(f"The packed index file {path} is not valid: {exc}") from None

    # -- projection and step fit ---------------------------------------------------------------
    def _groups_abs(self, w: np.ndarray) -> np.ndarray:
        out = w.shape[0]
        return np.abs(self._pad(w)).reshape(out, -1, self.n)

    def _candidates(self, w: np.ndarray) -> np.ndarray:
        """The k largest |w| of every group, shape (out, groups * k)."""
        a = self._groups_abs(w)
        top = -np.partition(-a, self.k - 1, axis=-1)[..., : self.k] if self.k < self.n else a
        return top.reshape(w.shape[0], -1)

    def fit_step(self, w) -> float | np.ndarray:
        """The step D minimising ||W - project(W, D)||_F (per row with ``per_row_step``).

        Only the k largest |w| of a group can be nonzero, and for any D the best support is
        the candidates above D/2. For the top-m candidates the best D is their mean, leaving
        error ||W||^2 - S_m^2 / m (S_m their sum), so the optimum maximises S_m^2 / m over m.
        The result is exact before its rounding to a 16-bit dyadic value.
        """
        w = check_matrix(w)
        cand = self._candidates(w)
        if self.per_row_step:
            vals = -np.sort(-cand, axis=1)
            cs = np.cumsum(vals, axis=1)
            m = np.arange(1, vals.shape[1] + 1)
            best = np.argmax(cs**2 / m, axis=1)
            steps = cs[np.arange(cs.shape[0]), best] / (best + 1)
            return self._round_steps(steps)[0]
        vals = -np.sort(-cand.reshape(-1))
        cs = np.cumsum(vals)
        m = np.arange(1, vals.shape[0] + 1)
        best = int(np.argmax(cs**2 / m))
        return dyadic_value(*dyadic(float(cs[best] / (best + 1)), STEP_BITS))

    def _round_steps(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-row steps as 16-bit dyadic values: (steps, mantissas m, exponents e)."""
        steps = np.asarray(steps, dtype=np.float64)
        pairs = [dyadic(float(s), STEP_BITS) for s in steps]
        m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(steps.shape)
        e = np.array([p[1] for p in pairs], dtype=np.int64).reshape(steps.shape)
        return np.ldexp(m.astype(np.float64), e), m, e

    def _check_step(self, step, out: int):
        arr = np.asarray(step, dtype=np.float64)
        if arr.ndim == 0:
            if self.per_row_step:
                arr = np.full(out, float(arr))
        elif arr.shape != (out,):
            raise ValueError(f"A per-row step needs shape ({out},); got {arr.shape}.")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"A step must be positive and finite; got {step!r}.")
        if self.per_row_step:
            return self._round_steps(arr)[0]
        if arr.ndim:
            raise ValueError("One step per row needs SSTCode(..., per_row_step=True).")
        return dyadic_value(*dyadic(float(arr), STEP_BITS))

    def ternary(self, w, step=None) -> tuple[np.ndarray, float | np.ndarray]:
        """(T, step): T int8 of W's shape in {-1, 0, 1}, the best code for that step.

        Per group the k largest |w| are kept (ties go to the lower column); a kept weight
        becomes sign(w) if |w| > step/2, else 0. With ``step=None`` the step is fitted.
        """
        w = check_matrix(w)
        step = self.fit_step(w) if step is None else self._check_step(step, w.shape[0])
        out, inp = w.shape
        a = self._groups_abs(w)
        if self.k < self.n:
            order = np.argsort(-a, axis=-1, kind="stable")
            keep = np.zeros(a.shape, dtype=bool)
            np.put_along_axis(keep, order[..., : self.k], True, axis=-1)
        else:
            keep = np.ones(a.shape, dtype=bool)
        half = np.asarray(step, dtype=np.float64).reshape(-1, 1, 1) / 2
        nz = keep & (a > half)
        nz = nz.reshape(out, -1)[:, :inp]
        t = (np.sign(w) * nz).astype(np.int8)
        return t, step

    def project(self, w, step=None) -> tuple[np.ndarray, float | np.ndarray]:
        """(W_q, step): W_q = T * step (entries in {-step, 0, +step}), W of shape (out, in).

        ``step`` is a float, or an array of one step per row with ``per_row_step``.
        """
        t, step = self.ternary(w, step)
        scale = np.asarray(step, dtype=np.float64).reshape(-1, 1)
        return t * scale, step

    # -- lowering ------------------------------------------------------------------------------
    def code_matrix(self, w, step=None) -> CodedMatrix:
        """Project W onto the code and lower it to a shift-add graph (see :func:`to_graph`)."""
        w = check_matrix(w)
        t, step = self.ternary(w, step)
        out, inp = w.shape
        groups = self.num_groups(inp)
        if self.per_row_step:
            _, m, e = self._round_steps(np.asarray(step))
            e0 = int(e[m != 0].min()) if m.any() else 0
            graph = to_graph(
                t, row_scale=m, row_shift=np.where(m != 0, e - e0, 0), meta=self._meta()
            )
            scale_m, scale_e = (1, e0) if m.any() else (0, 0)
            step_bits = out * (STEP_BITS + STEP_EXPONENT_BITS)
            step_info = {"step_min": float(np.min(step)), "step_max": float(np.max(step))}
        else:
            graph = to_graph(t, meta=self._meta())
            scale_m, scale_e = dyadic(float(step), STEP_BITS)
            step_bits = STEP_BITS + STEP_EXPONENT_BITS
            step_info = {"step": float(step)}
        index_bits = out * groups * self.bits_per_group
        weight_bits = index_bits + step_bits + self.table_bits
        return CodedMatrix(
            method="sst",
            graph=graph,
            scale_m=int(scale_m),
            scale_e=int(scale_e),
            weight_bits=int(weight_bits),
            params=int(w.size),
            table_reads=int(out * groups),
            config={"n": self.n, "k": self.k, "per_row_step": self.per_row_step},
            extra={
                "index_bits": int(index_bits),
                "step_bits": int(step_bits),
                "table_bits": int(self.table_bits),
                "bits_per_weight": float(weight_bits / w.size),
                "nonzeros": int(np.count_nonzero(t)),
                "groups": int(out * groups),
                **step_info,
            },
        )

    def _meta(self) -> dict:
        return {"code": "sst", "n": self.n, "k": self.k, "per_row_step": self.per_row_step}


def to_graph(t, row_scale=None, row_shift=None, meta: dict | None = None) -> Graph:
    """Shift-add graph of y = T x (T ternary, (out, in)): per row, the signed sum of its inputs.

    A row with m nonzeros costs m - 1 adds (signs fold into subtractions). With ``row_scale``
    (one integer per row) each row's sum is multiplied by it, after a left shift by
    ``row_shift`` (wiring): one MUL per output, counted as a mult unless the integer is a power
    of two; a row whose scale is 0 outputs 0.
    """
    t = np.asarray(t)
    if t.ndim != 2:
        raise ValueError(f"T must be a 2-D matrix (out, in); got shape {t.shape}.")
    out, inp = t.shape
    row, col = np.nonzero(t)
    sign = t[row, col].astype(np.int64)
    builder = GraphBuilder()
    x = builder.inputs(inp)
    node, shift, sgn = sum_terms(builder, x[col], np.zeros_like(row), sign, row, out)
    if row_scale is None:
        emit_outputs(builder, node, shift, sgn)
    else:
        c = np.asarray(row_scale, dtype=np.int64)
        if c.shape != (out,):
            raise ValueError(f"row_scale needs one integer per row, shape ({out},); got {c.shape}.")
        extra = np.zeros(out, np.int64) if row_shift is None else np.asarray(row_shift, np.int64)
        if extra.shape != (out,) or np.any(extra < 0):
            raise ValueError(f"row_shift needs one non-negative integer per row, shape ({out},).")
        live = (node >= 0) & (c != 0)
        result = np.empty(out, dtype=np.int64)
        if (~live).any():
            result[~live] = builder.const([0])[0]
        if live.any():
            result[live] = builder.mul(
                node[live], sgn[live] * c[live], sa=shift[live] + extra[live]
            )
        builder.outputs(result)
    return fold_negations(builder.build(meta=meta))


def encode_matrix(w, n: int = 8, k: int = 2, *, per_row_step: bool = False, step=None):
    """Code W with the (n, k) SST code: a :class:`CodedMatrix` (like ``csd.encode``)."""
    return SSTCode(n, k, per_row_step=per_row_step).code_matrix(w, step)
