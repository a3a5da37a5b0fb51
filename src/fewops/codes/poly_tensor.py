"""WACR tensor-product families: weights as polynomials of several positions at once.

:mod:`fewops.codes.poly` runs one polynomial along one axis. Here a layer's weight matrix
W (F, fan_in) is, on every block, a product of polynomials along several axes at once: along the
output units (``out_factor``) and along each dimension of the fan-in (``in_factors``; for a conv
(C, KH, KW), for a dense layer after ``Flatten`` the shape it flattens, e.g. (64, 12, 12)). A
factor is ``(interval, degree)`` (interval None = the whole dimension, degree 1 or 2) or None:
free along that dimension (every position its own coefficients).

Per dimension the positions are cut into intervals and P_d is the block-diagonal integer
Vandermonde matrix (n_d, m_d) of t^k on each interval (the identity when free), with *centred*
integer positions t = -(L-1)//2 .. L//2: the same polynomials as t = 0..L-1, but the basis is
far better conditioned, so 8-bit coefficients lose much less (on the MNIST CNN's dense layer
14.5 dB SQNR with positions from 0, more when centred) and the t^k weights stay small. With
P_in = kron(P_1, P_2, ...) (fan_in, M) and P_out (F, K)::

    W = P_out @ C @ P_in.T        C: (K, M), the stored coefficients; params = K * M

Both 1-D families are special cases (``fan_in``: P_out = I; ``filters``: P_in = I). A 2-D
family (say filters x fan-in) costs (d_f + 1)(d_i + 1) coefficients per (filter interval, fan-in
interval) pair: the hidden units of a dense layer read K learned features of M moment sums, and
K * M is the size knob. Why the fan-in may be split into (channel, row, column): a dense layer on
a flattened (C, H, W) map is a conv with an H x W kernel, so the conv axes (``channels``,
``kernel_col``, ``kernel_row``) apply to it too and polynomials across channels keep the spatial
layout that long runs of the flattened index average away.

Reuse (``to_graph``): the moments m = P_in.T x are computed once (integer weights t^k in
canonical signed digits: shifts and adds), u = C m needs one multiplier per nonzero coefficient
(identical products built once), and y = P_out u is shifts and adds again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import sqnr_db
from fewops.codes.csd import csd_digits
from fewops.codes.poly import (
    check_coef_bits,
    check_degree,
    row_stationary_cost,
    scaled_terms,
)
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.passes import fold_negations


@dataclass(frozen=True)
class Factor:
    """One dimension's basis: ``matrix`` (n, m) integer, ``pinv`` (m, n) its pseudo-inverse,
    ``degree_of`` (m,) the power of t of each column (0 for a free dimension)."""

    size: int
    interval: int | None  # None: free (identity basis)
    degree: int
    matrix: np.ndarray
    pinv: np.ndarray
    degree_of: np.ndarray


def make_factor(size: int, spec, what: str) -> Factor:
    """The basis of one dimension of ``size`` positions for ``spec`` (interval, degree) or None."""
    if spec is None:
        eye = np.eye(size)
        return Factor(size, None, 0, eye.astype(np.int64), eye, np.zeros(size, dtype=np.int64))
    if not isinstance(spec, tuple | list) or len(spec) != 2:
        raise ValueError(f"A factor must be (interval, degree) or None; got {spec!r} for {what}.")
    interval, degree = spec
    degree = check_degree(degree)
    if interval is None:
        interval = size
    if isinstance(interval, bool) or not isinstance(interval, int | np.integer):
        raise ValueError(
            f"Interval length must be an integer or None; got {interval!r} for {what}."
        )
    interval = int(interval)
    if interval > size:
        raise ValueError(f"Interval length {interval} is longer than {what} ({size} positions).")
    if interval < degree + 1:
        raise ValueError(
            f"Interval length {interval} is too short for degree {degree} on {what}: a "
            f"polynomial of degree {degree} needs at least {degree + 1} positions per interval."
        )
    blocks, inverses, degs = [], [], []
    for start in range(0, size, interval):
        length = min(interval, size - start)
        d = min(degree, length - 1)  # a short last interval drops its degree
        v = centred_vandermonde(length, d)
        scale = float(max(np.abs(v[:, 1]).max(), 1.0)) ** np.arange(d + 1)
        blocks.append(v)
        inverses.append(np.linalg.pinv(v / scale) / scale[:, None])  # columns scaled to [-1, 1]
        degs.append(np.arange(d + 1))
    matrix = _block_diag(blocks)
    return Factor(
        size,
        interval,
        degree,
        np.round(matrix).astype(np.int64),
        _block_diag(inverses),
        np.concatenate(degs).astype(np.int64),
    )


def centred_vandermonde(length: int, degree: int) -> np.ndarray:
    """(length, degree + 1) matrix of t^k for the centred integer positions of an interval."""
    t = np.arange(length, dtype=np.float64) - (length - 1) // 2
    return t[:, None] ** np.arange(degree + 1)[None, :]


def _block_diag(blocks) -> np.ndarray:
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


@dataclass(frozen=True)
class TensorLayout:
    """A weight of ``shape`` (F, ...) seen as (F, fan_in) with fan_in split into ``in_shape``."""

    shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    out: Factor
    ins: tuple[Factor, ...]

    @property
    def p_in(self) -> np.ndarray:
        """(fan_in, M) integer moment weights: the Kronecker product of the input factors."""
        m = np.ones((1, 1), dtype=np.int64)
        for f in self.ins:
            m = np.kron(m, f.matrix)
        return m

    @property
    def pinv_in(self) -> np.ndarray:
        m = np.ones((1, 1))
        for f in self.ins:
            m = np.kron(m, f.pinv)
        return m

    @property
    def in_degrees(self) -> np.ndarray:
        """(M, number of input factors) the power of each position in each moment."""
        grids = np.meshgrid(*[f.degree_of for f in self.ins], indexing="ij")
        return np.stack([g.ravel() for g in grids], axis=1)

    @property
    def coef_shape(self) -> tuple[int, int]:
        m = int(np.prod([f.matrix.shape[1] for f in self.ins]))
        return (self.out.matrix.shape[1], m)

    @property
    def params(self) -> int:
        k, m = self.coef_shape
        return k * m

    def config(self) -> dict:
        return {
            "axis": "tensor",
            "in_shape": list(self.in_shape),
            "in_factors": [_spec(f) for f in self.ins],
            "out_factor": _spec(self.out),
        }


def _spec(f: Factor):
    return None if f.interval is None else [f.interval, f.degree]


def make_tensor_layout(shape, in_factors, out_factor=None, in_shape=None) -> TensorLayout:
    """The layout of a weight tensor of ``shape`` (F, I) or (F, C, KH, KW).

    ``in_shape`` splits the fan-in (default: a conv's (C, KH, KW), a dense layer's (I,));
    ``in_factors`` has one (interval, degree) or None per dimension of it.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 4) or min(shape) < 1:
        raise ValueError(
            f"A weight tensor must have shape (F, I) or (F, C, KH, KW) with every size >= 1; "
            f"got {shape}."
        )
    fan_in = int(np.prod(shape[1:]))
    in_shape = tuple(shape[1:]) if in_shape is None else tuple(int(s) for s in in_shape)
    if int(np.prod(in_shape)) != fan_in:
        raise ValueError(
            f"The input shape {in_shape} has {int(np.prod(in_shape))} positions; the layer's "
            f"fan-in is {fan_in} (weight shape {shape})."
        )
    in_factors = tuple(in_factors)
    if len(in_factors) != len(in_shape):
        raise ValueError(
            f"Give one factor per input dimension: {len(in_shape)} for input shape {in_shape}; "
            f"got {len(in_factors)}."
        )
    ins = tuple(
        make_factor(n, spec, f"input dimension {d} of {in_shape}")
        for d, (n, spec) in enumerate(zip(in_shape, in_factors, strict=True))
    )
    out = make_factor(shape[0], out_factor, f"the {shape[0]} output units")
    if out.interval is None and all(f.interval is None for f in ins):
        raise ValueError(
            "At least one factor must be a polynomial (interval, degree); all are free."
        )
    return TensorLayout(shape, in_shape, out, ins)


def fit(w, layout: TensorLayout) -> np.ndarray:
    """Exact least-squares coefficients C (K, M): the basis is a Kronecker product of full
    column-rank factors, so the pseudo-inverse factors too."""
    w2d = np.asarray(w, dtype=np.float64).reshape(layout.shape[0], -1)
    return layout.out.pinv @ w2d @ layout.pinv_in.T


def evaluate(coefs, layout: TensorLayout, exponents=None) -> np.ndarray:
    """The weight matrix (F, fan_in) of ``coefs`` (times 2**exponents when given)."""
    coefs = np.asarray(coefs, dtype=np.float64)
    if coefs.shape != layout.coef_shape:
        raise ValueError(
            f"Coefficients of shape {coefs.shape}; the layout needs {layout.coef_shape}."
        )
    if exponents is not None:
        coefs = coefs * np.ldexp(1.0, np.asarray(exponents))
    return layout.out.matrix @ coefs @ layout.p_in.T


def project(w, layout: TensorLayout) -> np.ndarray:
    """Least-squares projection of W onto the family, in W's shape."""
    w = np.asarray(w, dtype=np.float64)
    return evaluate(fit(w, layout), layout).reshape(w.shape)


def _classes(layout: TensorLayout) -> np.ndarray:
    """(K, M) id of each coefficient's degree pattern: one power-of-two step per pattern, so
    coefficients of one pattern combine without multipliers."""
    pattern = np.concatenate(
        [
            np.broadcast_to(layout.out.degree_of[:, None, None], (*layout.coef_shape, 1)),
            np.broadcast_to(layout.in_degrees[None], (*layout.coef_shape, len(layout.ins))),
        ],
        axis=-1,
    )
    _, ids = np.unique(pattern.reshape(-1, pattern.shape[-1]), axis=0, return_inverse=True)
    return ids.reshape(layout.coef_shape)


def quantize(w, layout: TensorLayout, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer coefficients q (K, M) and exponents e (K, M): W_hat = evaluate(q, layout, e).

    One power-of-two step per degree pattern (coefficients of a pattern then combine without
    multipliers; the distinct steps are stored numbers, see :func:`scale_count`). Per pattern
    the step is the one, from the finest at which the largest coefficient fits down to three
    binades finer (clipping the few largest), with the least weight error: coefficient errors
    weighted by the norms of their basis columns. Why clip: in a tensor family the
    coefficients of one pattern span rows of very different activity (image rows near the
    border are nearly empty), so the peak alone leaves most coefficients a few levels.
    """
    bits = check_coef_bits(bits)
    top = 2 ** (bits - 1) - 1
    floats = fit(w, layout)
    ids = _classes(layout)
    weight = (
        np.outer(np.linalg.norm(layout.out.matrix, axis=0), np.linalg.norm(layout.p_in, axis=0))
        ** 2
    )
    exps = np.zeros(layout.coef_shape, dtype=np.int64)
    for c in np.unique(ids):
        sel = ids == c
        vals, wts = floats[sel], weight[sel]
        peak = np.abs(vals).max()
        if peak == 0:
            continue
        e_peak = int(np.ceil(np.log2(peak / top)))
        e_peak -= int(np.round(peak / math.ldexp(1.0, e_peak - 1)) <= top)  # log2 noise
        e_peak += int(np.round(peak / math.ldexp(1.0, e_peak)) > top)
        errors = []
        for e in range(e_peak - 3, e_peak + 1):
            step = math.ldexp(1.0, e)
            err = np.clip(np.round(vals / step), -top, top) * step - vals
            errors.append((float(np.sum(wts * err**2)), -e))
        exps[sel] = -min(errors)[1]
    q = np.clip(np.round(floats / np.ldexp(1.0, exps)), -top, top).astype(np.int64)
    return q, exps


def scale_count(layout: TensorLayout) -> int:
    """Stored step exponents: one per degree pattern of the coefficients."""
    return int(np.unique(_classes(layout)).size)


def _integer_terms(matrix: np.ndarray):
    """CSD terms of an integer matrix (rows, cols): (row, col, digit position, digit sign)."""
    rows, cols = np.nonzero(matrix)
    digits = csd_digits(matrix[rows, cols])
    t, pos = np.nonzero(digits)
    return rows[t], cols[t], pos, digits[t, pos].astype(np.int64)


def to_graph(q, exps, layout: TensorLayout) -> Graph:
    """Lower integer coefficients to a shift-add graph of one output position, with reuse.

    Inputs: the fan-in in (C, KH, KW) / flatten order; outputs: the F units. The graph's matrix
    times 2**min(exps) is ``evaluate(q, layout, exps)``.
    """
    q = np.asarray(q, dtype=np.int64)
    exps = np.asarray(exps, dtype=np.int64)
    if q.shape != layout.coef_shape or exps.shape != layout.coef_shape:
        raise ValueError(
            f"Coefficients {q.shape} and exponents {exps.shape}; the layout needs "
            f"{layout.coef_shape}."
        )
    k_units, m_moments = layout.coef_shape
    rel = exps - exps.min()
    builder = GraphBuilder()
    x = builder.inputs(int(np.prod(layout.in_shape)))
    # Stage 1 (shared by every unit): moments m_j = sum_i P_in[i, j] x_i, shifts and adds.
    i, j, pos, sign = _integer_terms(layout.p_in)
    m_node, m_shift, m_sign = sum_terms(builder, x[i], pos, sign, j, m_moments)
    # Stage 2: u_k = sum_j q[k, j] 2^rel m_j: one multiplier per distinct general product.
    k, j = np.nonzero(q)
    live = m_node[j] >= 0
    k, j = k[live], j[live]
    terms = scaled_terms(builder, m_node[j], m_shift[j] + rel[k, j], m_sign[j], q[k, j])
    u_node, u_shift, u_sign = sum_terms(builder, *terms, k, k_units)
    # Stage 3 (reuse across units): y_f = sum_k P_out[f, k] u_k, shifts and adds.
    f, k, pos, sign = _integer_terms(layout.out.matrix)
    live = u_node[k] >= 0
    f, k, pos, sign = f[live], k[live], pos[live], sign[live]
    sums = sum_terms(builder, u_node[k], u_shift[k] + pos, u_sign[k] * sign, f, layout.shape[0])
    emit_outputs(builder, *sums)
    return fold_negations(builder.build(meta={"code": "wacr", **layout.config()}))


def encode(w, layout: TensorLayout, coef_bits: int = 8) -> CodedMatrix:
    """Code a weight tensor on a tensor-product layout (as :func:`fewops.codes.poly.encode`)."""
    if hasattr(w, "detach"):
        w = w.detach().cpu().numpy()
    w = np.asarray(w, dtype=np.float64)
    if tuple(w.shape) != layout.shape:
        raise ValueError(f"Weights of shape {w.shape} do not fit a layout for {layout.shape}.")
    if not np.isfinite(w).all():
        raise ValueError(f"The weights have {int((~np.isfinite(w)).sum())} non-finite entries.")
    coef_bits = check_coef_bits(coef_bits)
    q, exps = quantize(w, layout, coef_bits)
    w2d = w.reshape(w.shape[0], -1)
    extra = {
        **layout.config(),
        "interval": None,
        "degree": None,
        "coef_bits": coef_bits,
        "exponents_range": [int(exps.min()), int(exps.max())],
        "scale_params": scale_count(layout),
        "sqnr_db_poly": _finite(sqnr_db(w2d, evaluate(fit(w, layout), layout))),
        "sqnr_db": _finite(sqnr_db(w2d, evaluate(q, layout, exps))),
        "dense_weights": int(w.size),
    }
    if w.ndim == 4:
        extra["row_stationary"] = row_stationary_cost(w.shape)
    return CodedMatrix(
        method="wacr",
        graph=to_graph(q, exps, layout),
        scale_m=1,
        scale_e=int(exps.min()),
        weight_bits=layout.params * coef_bits,
        params=layout.params,
        config={**layout.config(), "coef_bits": coef_bits},
        extra=extra,
    )


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(float(value), 3)
