"""Weight approximation with computation reuse (WACR): weights as polynomials of their position.

Along a chosen axis the weights of a layer are cut into intervals of ``interval`` positions
t = 0..L-1, and on every interval the weights are a polynomial of degree 1 or 2 in t:
``w(t) = c_0 + c_1 t (+ c_2 t^2)``. Only the coefficients are stored.

Axes of a weight tensor (F, C, KH, KW) for a convolution, (F, I) for a linear layer:

- ``kernel_row``: along a kernel row, i.e. over the kernel column index s (the KW dimension);
  the example of the paper, w[f,c,r,s] = a[f,c,r] + b[f,c,r] s.
- ``kernel_col``: along a kernel column, over the kernel row index r (the KH dimension).
- ``channels``: across the input channels c.
- ``fan_in``: runs of the flattened fan-in in im2col order (c, r, s); for a linear layer its
  inputs in order. The only input-side axis of a linear layer.
- ``filters``: across the output units f (filters of a convolution, rows of a linear layer).

Reuse. On an input-side axis every filter reads the same intervals of the input window, so the
moment sums ``S_k = sum_t t^k x_t`` of each interval are computed once (t^k in canonical signed
digits: shifts and adds) and an output is ``sum over intervals and k of c_k S_k``: one general
multiplier per nonzero coefficient. On the ``filters`` axis it is the other way round: the
products ``A_k = sum_i c_k[i] x_i`` are computed once per interval of filters and filter t of the
interval is ``sum_k t^k A_k`` (shifts and adds).

Coefficients are quantized to ``coef_bits``-bit signed integers with one power-of-two step per
degree (so combining degrees needs only shifts), and the fit is done in fixed point: per interval
the integers come from successive rounding against the QR factor of the scaled Vandermonde
matrix (Babai's nearest plane), kept only where it beats plain rounding of the float fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.codes.common import sqnr_db
from fewops.codes.csd import csd_digits
from fewops.graph.builder import GraphBuilder, emit_outputs, sum_terms
from fewops.graph.graph import Graph
from fewops.graph.passes import fold_negations

AXES = ("kernel_row", "kernel_col", "channels", "fan_in", "filters")
LINEAR_AXES = ("fan_in", "filters")
DEGREES = (1, 2)
MIN_COEF_BITS = 2
MAX_COEF_BITS = 24
# Dimension of the 4-D weight tensor (F, C, KH, KW) that each axis runs along.
_CONV_DIM = {"filters": 0, "channels": 1, "kernel_col": 2, "kernel_row": 3}


@dataclass(frozen=True)
class IntervalClass:
    """Intervals of one length: ``index[j, t]`` is the column at position t of interval j."""

    first_group: int
    index: np.ndarray  # (intervals, length) column indices of the matrix view
    degree: int  # min(requested degree, length - 1)

    @property
    def length(self) -> int:
        return int(self.index.shape[1])


@dataclass(frozen=True)
class PolyLayout:
    """Where every weight sits: interval (group) and position t, for one layer and one axis.

    The *matrix view* is W reshaped to (F, fan_in) for input-side axes and its transpose
    (fan_in, F) for the ``filters`` axis; intervals are sets of columns of that view, and the
    coefficients are an array (rows of the view, groups, degree + 1).
    """

    axis: str
    interval: int
    degree: int
    shape: tuple[int, ...]
    classes: tuple[IntervalClass, ...]

    @property
    def transposed(self) -> bool:
        return self.axis == "filters"

    @property
    def num_groups(self) -> int:
        return sum(c.index.shape[0] for c in self.classes)

    @property
    def view_shape(self) -> tuple[int, int]:
        out, fan_in = self.shape[0], int(np.prod(self.shape[1:]))
        return (fan_in, out) if self.transposed else (out, fan_in)

    @property
    def params(self) -> int:
        """Stored coefficients: per row of the view, (degree + 1) per interval."""
        per_row = sum(c.index.shape[0] * (c.degree + 1) for c in self.classes)
        return per_row * self.view_shape[0]

    def coef_shape(self) -> tuple[int, int, int]:
        return (self.view_shape[0], self.num_groups, self.degree + 1)


def check_degree(degree) -> int:
    if (
        isinstance(degree, bool)
        or not isinstance(degree, int | np.integer)
        or degree not in DEGREES
    ):
        raise ValueError(f"Polynomial degree must be 1 or 2; got {degree!r}.")
    return int(degree)


def check_coef_bits(bits) -> int:
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int | np.integer)
        or not MIN_COEF_BITS <= bits <= MAX_COEF_BITS
    ):
        raise ValueError(
            f"Coefficient width must be an integer from {MIN_COEF_BITS} to {MAX_COEF_BITS} bits; "
            f"got {bits!r}."
        )
    return int(bits)


def check_axis(axis) -> str:
    if axis not in AXES:
        raise ValueError(f"Unknown polynomial axis {axis!r}; choose one of {', '.join(AXES)}.")
    return axis


def make_layout(shape, axis: str, interval: int | None = None, degree: int = 1) -> PolyLayout:
    """The interval layout of a weight tensor of ``shape`` (F, C, KH, KW) or (F, I).

    ``interval`` None takes the whole axis as one interval. A last interval shorter than the
    others is allowed (its degree drops to length - 1 if it is shorter than degree + 1).
    """
    shape = tuple(int(s) for s in shape)
    axis = check_axis(axis)
    degree = check_degree(degree)
    if len(shape) not in (2, 4) or min(shape) < 1:
        raise ValueError(
            f"A weight tensor must have shape (F, I) or (F, C, KH, KW) with every size >= 1; "
            f"got {shape}."
        )
    if len(shape) == 2 and axis not in LINEAR_AXES:
        raise ValueError(
            f"A linear layer has no {axis!r} axis; its axes are {', '.join(map(repr, LINEAR_AXES))}."
        )
    out = shape[0]
    in_dims = shape[1:]
    if axis == "filters":
        dims, along = (out,), 0
    elif axis == "fan_in":
        dims, along = (int(np.prod(in_dims)),), 0
    else:
        dims, along = in_dims, _CONV_DIM[axis] - 1
    size = dims[along]
    if interval is None:
        interval = size
    if isinstance(interval, bool) or not isinstance(interval, int | np.integer):
        raise TypeError(f"Interval length must be an integer or None; got {interval!r}.")
    interval = int(interval)
    if interval > size:
        raise ValueError(
            f"Interval length {interval} is longer than the {axis!r} axis of this layer "
            f"({size} positions, weight shape {shape})."
        )
    if interval < degree + 1:
        raise ValueError(
            f"Interval length {interval} is too short for degree {degree}: a polynomial of "
            f"degree {degree} needs at least {degree + 1} positions per interval."
        )
    cols = np.moveaxis(np.arange(int(np.prod(dims))).reshape(dims), along, -1)
    cols = cols.reshape(-1, size)
    full = size // interval
    classes = []
    first = 0
    if full:
        index = cols[:, : full * interval].reshape(-1, interval)
        classes.append(IntervalClass(first, index, degree))
        first += index.shape[0]
    tail = size - full * interval
    if tail:
        classes.append(IntervalClass(first, cols[:, full * interval :], min(degree, tail - 1)))
    return PolyLayout(axis, interval, degree, shape, tuple(classes))


def vandermonde(length: int, degree: int) -> np.ndarray:
    """(length, degree + 1) matrix of t^k for t = 0..length-1 (integer positions)."""
    t = np.arange(length, dtype=np.float64)
    return t[:, None] ** np.arange(degree + 1)[None, :]


def _pinv(length: int, degree: int) -> np.ndarray:
    """Pseudo-inverse of the Vandermonde matrix, computed with its columns scaled to [0, 1]."""
    scale = float(max(length - 1, 1)) ** np.arange(degree + 1)
    return np.linalg.pinv(vandermonde(length, degree) / scale) / scale[:, None]


def matrix_view(w, layout: PolyLayout) -> np.ndarray:
    """W as the 2-D view the intervals index: (F, fan_in), or (fan_in, F) on the filters axis."""
    w = np.asarray(w, dtype=np.float64)
    if tuple(w.shape) not in (layout.shape, (layout.shape[0], int(np.prod(layout.shape[1:])))):
        raise ValueError(f"Weights of shape {w.shape} do not fit a layout for {layout.shape}.")
    m = w.reshape(layout.shape[0], -1)
    return m.T if layout.transposed else m


def from_view(view: np.ndarray, layout: PolyLayout) -> np.ndarray:
    m = view.T if layout.transposed else view
    return np.ascontiguousarray(m).reshape(layout.shape)


def fit(w, layout: PolyLayout) -> np.ndarray:
    """Exact least-squares coefficients (rows, groups, degree + 1) of W on the layout."""
    view = matrix_view(w, layout)
    coefs = np.zeros(layout.coef_shape())
    for c in layout.classes:
        seg = view[:, c.index]  # (rows, intervals, length)
        groups = slice(c.first_group, c.first_group + c.index.shape[0])
        coefs[:, groups, : c.degree + 1] = seg @ _pinv(c.length, c.degree).T
    return coefs


def evaluate(coefs: np.ndarray, layout: PolyLayout, exponents=None) -> np.ndarray:
    """The weight tensor of ``coefs`` (times 2**exponents[k] per degree when given)."""
    coefs = np.asarray(coefs, dtype=np.float64)
    if coefs.shape != layout.coef_shape():
        raise ValueError(
            f"Coefficients of shape {coefs.shape}; the layout needs {layout.coef_shape()}."
        )
    if exponents is not None:
        coefs = coefs * np.ldexp(1.0, np.asarray(exponents))[None, None, :]
    view = np.zeros(layout.view_shape)
    for c in layout.classes:
        groups = slice(c.first_group, c.first_group + c.index.shape[0])
        view[:, c.index] = coefs[:, groups, : c.degree + 1] @ vandermonde(c.length, c.degree).T
    return from_view(view, layout)


def project(w, axis: str, interval: int | None = None, degree: int = 1) -> np.ndarray:
    """The least-squares projection of W onto the polynomial family (same shape as W)."""
    w = np.asarray(w, dtype=np.float64)
    layout = make_layout(w.shape, axis, interval, degree)
    return evaluate(fit(w, layout), layout)


def quantize(w, layout: PolyLayout, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer coefficients q (rows, groups, degree + 1) and per-degree exponents e.

    W_hat = evaluate(q, layout, e). The step of degree k is 2**e[k], the smallest power of two
    at which the largest float coefficient of that degree fits in ``bits`` signed bits. Per
    interval the integers are fitted in fixed point (successive rounding against the QR factor of
    the step-scaled Vandermonde matrix) and kept where that beats rounding the float fit.
    """
    bits = check_coef_bits(bits)
    top = 2 ** (bits - 1) - 1
    view = matrix_view(w, layout)
    floats = fit(w, layout)
    peak = np.abs(floats).max(axis=(0, 1))
    exps = np.zeros(layout.degree + 1, dtype=np.int64)
    nz = peak > 0
    exps[nz] = np.ceil(np.log2(peak[nz] / top)).astype(np.int64)
    # Rounding noise in the fit can push log2 just past an integer: take the finer step where
    # the peak still rounds into range, and a coarser one where it rounds past the top code.
    exps[nz] -= np.round(peak[nz] / np.ldexp(1.0, exps[nz] - 1)) <= top
    exps[nz] += np.round(peak[nz] / np.ldexp(1.0, exps[nz])) > top
    q = np.zeros(layout.coef_shape(), dtype=np.int64)
    for c in layout.classes:
        d = c.degree
        groups = slice(c.first_group, c.first_group + c.index.shape[0])
        step = np.ldexp(1.0, exps[: d + 1])
        seg = view[:, c.index]
        basis = vandermonde(c.length, d) * step  # columns in units of one integer step
        naive = np.clip(np.round(floats[:, groups, : d + 1] / step), -top, top)
        qmat, rmat = np.linalg.qr(basis)
        z = seg @ qmat  # (rows, intervals, d + 1)
        babai = np.zeros_like(naive)
        for k in range(d, -1, -1):
            rest = z[..., k] - babai[..., k + 1 :] @ rmat[k, k + 1 :]
            babai[..., k] = np.clip(np.round(rest / rmat[k, k]), -top, top)
        err_naive = np.linalg.norm(naive @ basis.T - seg, axis=-1)
        err_babai = np.linalg.norm(babai @ basis.T - seg, axis=-1)
        best = np.where((err_babai < err_naive)[..., None], babai, naive)
        q[:, groups, : d + 1] = best.astype(np.int64)
    return q, exps


def row_stationary_cost(shape) -> dict[str, int]:
    """Row Stationary (Eyeriss) cost of one output position of a conv with weights (F, C, R, S).

    Each 1-D row convolution of width S costs S mults and S - 1 adds per output; the R row
    partial sums of a (filter, channel) pair take R - 1 vertical adds, and the C channels of a
    filter C - 1 more.
    """
    f, c, r, s = (int(v) for v in shape)
    row_adds = f * c * r * (s - 1)
    vertical_adds = f * c * (r - 1)
    channel_adds = f * (c - 1)
    return {
        "mults": f * c * r * s,
        "adds": row_adds + vertical_adds + channel_adds,
        "row_adds": row_adds,
        "vertical_adds": vertical_adds,
        "channel_adds": channel_adds,
    }


def _pow2_log(values: np.ndarray) -> np.ndarray:
    """log2|v| where |v| is a power of two, else -1."""
    v = np.abs(values)
    is_pow2 = (v > 0) & ((v & (v - 1)) == 0)
    logs = np.full(v.shape, -1, dtype=np.int64)
    logs[is_pow2] = np.round(np.log2(v[is_pow2])).astype(np.int64)
    return logs


def scaled_terms(builder, node, shift, sign, value):
    """Terms ``value * (sign * node << shift)``: a shift for +-2^k, else one shared MUL per
    distinct (node, |value|) pair (computation reuse of identical products)."""
    value = value * sign
    logs = _pow2_log(value)
    out_node = node.copy()
    out_shift = shift + np.maximum(logs, 0)
    out_sign = np.sign(value).astype(np.int64)
    general = logs < 0
    if general.any():
        pairs = np.stack([node[general], np.abs(value[general])], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        products = builder.mul(uniq[:, 0], uniq[:, 1])
        out_node[general] = products[inverse.ravel()]
    return out_node, out_shift, out_sign


def _position_terms(c: IntervalClass, k: int):
    """CSD terms of t^k for t = 0..length-1: (t, digit position, digit sign)."""
    powers = np.arange(c.length, dtype=np.int64) ** k
    digits = csd_digits(powers)
    t, pos = np.nonzero(digits)
    return t, pos, digits[t, pos].astype(np.int64)


def _moment_terms(layout: PolyLayout, inputs: np.ndarray):
    """Terms of every moment sum S_k of every interval: group id = interval * (d + 1) + k."""
    parts = []
    width = layout.degree + 1
    for c in layout.classes:
        n = c.index.shape[0]
        for k in range(c.degree + 1):
            t, pos, sign = _position_terms(c, k)
            j = np.repeat(np.arange(n), t.shape[0])
            tt = np.tile(t, n)
            parts.append(
                (
                    inputs[c.index[j, tt]],
                    np.tile(pos, n),
                    np.tile(sign, n),
                    (c.first_group + j) * width + k,
                )
            )
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def to_graph(q: np.ndarray, exps: np.ndarray, layout: PolyLayout) -> Graph:
    """Lower integer coefficients to a shift-add graph of one output position, with reuse.

    Inputs are the fan-in values in im2col order (c, r, s); outputs the F filters. The graph's
    matrix times 2**min(exps) is the approximated weight matrix (F, fan_in).
    """
    q = np.asarray(q, dtype=np.int64)
    if q.shape != layout.coef_shape():
        raise ValueError(
            f"Coefficients of shape {q.shape}; the layout needs {layout.coef_shape()}."
        )
    exps = np.asarray(exps, dtype=np.int64)
    rel = exps - exps.min()
    width = layout.degree + 1
    num_groups = layout.num_groups * width
    out_units, fan_in = layout.shape[0], int(np.prod(layout.shape[1:]))
    builder = GraphBuilder()
    x = builder.inputs(fan_in)
    if not layout.transposed:
        # Stage 1 (shared by every filter): moment sums S_k of each interval, shifts and adds.
        node, shift, sign, group = _moment_terms(layout, x)
        m_node, m_shift, m_sign = sum_terms(builder, node, shift, sign, group, num_groups)
        # Stage 2: per filter, sum of coefficient * S_k: one multiplier per general coefficient.
        f, g, k = np.nonzero(q)
        m = g * width + k
        live = m_node[m] >= 0
        f, g, k, m = f[live], g[live], k[live], m[live]
        terms = scaled_terms(builder, m_node[m], m_shift[m] + rel[k], m_sign[m], q[f, g, k])
        sums = sum_terms(builder, *terms, f, out_units)
    else:
        # Stage 1: A_k of each interval of filters = sum_i q[i, g, k] x_i (multipliers).
        i, g, k = np.nonzero(q)
        ones = np.ones(i.shape[0], dtype=np.int64)
        terms = scaled_terms(builder, x[i], rel[k], ones, q[i, g, k])
        a_node, a_shift, a_sign = sum_terms(builder, *terms, g * width + k, num_groups)
        # Stage 2 (reuse): filter at position t of its interval = sum_k t^k A_k, shifts and adds.
        parts = []
        for c in layout.classes:
            n = c.index.shape[0]
            for kk in range(c.degree + 1):
                t, pos, dsign = _position_terms(c, kk)
                j = np.repeat(np.arange(n), t.shape[0])
                tt = np.tile(t, n)
                a = (c.first_group + j) * width + kk
                parts.append((a, np.tile(pos, n), np.tile(dsign, n), c.index[j, tt]))
        a, pos, dsign, f = (np.concatenate(p) for p in zip(*parts, strict=True))
        live = a_node[a] >= 0
        a, pos, dsign, f = a[live], pos[live], dsign[live], f[live]
        sums = sum_terms(builder, a_node[a], a_shift[a] + pos, a_sign[a] * dsign, f, out_units)
    emit_outputs(builder, *sums)
    meta = {
        "code": "wacr",
        "axis": layout.axis,
        "interval": layout.interval,
        "degree": layout.degree,
    }
    return fold_negations(builder.build(meta=meta))


def encode(
    w,
    axis: str = "fan_in",
    interval: int | None = None,
    degree: int = 1,
    coef_bits: int = 8,
) -> CodedMatrix:
    """Code a weight tensor (F, C, KH, KW) or (F, I) as quantized polynomial coefficients.

    The coded matrix is the im2col view (F, C*KH*KW); ``extra`` carries the Row Stationary cost
    of one output position (convolutions), the float and quantized SQNR and the exponents.
    """
    if hasattr(w, "detach"):
        w = w.detach().cpu().numpy()
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"The weights have {int((~np.isfinite(w)).sum())} non-finite entries.")
    coef_bits = check_coef_bits(coef_bits)
    layout = make_layout(w.shape, axis, interval, degree)
    q, exps = quantize(w, layout, coef_bits)
    graph = to_graph(q, exps, layout)
    w2d = w.reshape(w.shape[0], -1)
    w_float = evaluate(fit(w, layout), layout).reshape(w2d.shape)
    w_quant = evaluate(q, layout, exps).reshape(w2d.shape)
    extra = {
        "axis": layout.axis,
        "interval": layout.interval,
        "degree": layout.degree,
        "coef_bits": coef_bits,
        "exponents": [int(e) for e in exps],
        "scale_params": int(exps.size),  # one power-of-two step per degree: stored numbers
        "sqnr_db_poly": _finite(sqnr_db(w2d, w_float)),
        "sqnr_db": _finite(sqnr_db(w2d, w_quant)),
        "dense_weights": int(w.size),
    }
    if w.ndim == 4:
        extra["row_stationary"] = row_stationary_cost(w.shape)
    return CodedMatrix(
        method="wacr",
        graph=graph,
        scale_m=1,
        scale_e=int(exps.min()),
        weight_bits=layout.params * coef_bits,
        params=layout.params,
        config={
            "axis": layout.axis,
            "interval": layout.interval,
            "degree": layout.degree,
            "coef_bits": coef_bits,
        },
        extra=extra,
    )


def _finite(value: float) -> float | None:
    """JSON-friendly SQNR: None stands for an exact match (inf)."""
    return None if math.isinf(value) else round(float(value), 3)
