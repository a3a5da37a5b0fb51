"""Running a :class:`~fewops.network.network.Network` in numpy, and calibrating it.

One pass over the steps serves three purposes: bit-exact integer inference (``integer=True``),
the float64 reference from the decoded matrices (``integer=False``), and calibration (the float
pass, picking each :class:`Requantize` step's fraction bits and each :class:`Coded` step's
integer bias as it reaches them). Every handler works on integer and float arrays alike.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace

import numpy as np

from fewops.network.network import Network
from fewops.network.steps import (
    Add,
    Coded,
    ConvGeometry,
    Flatten,
    Input,
    MaxPool,
    Pad,
    Requantize,
    Reshape,
    Slice,
    Step,
    SumPool,
    act_range,
    exact_shift_ready,
    requantize,
    requantize_int,
)
from fewops.sim.evaluate import evaluate, graph_matrix

_W_HAT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class _Value:
    a: np.ndarray  # batch first; integers, or float64 reals in the reference
    e: int
    divisor: int


def forward(net: Network, x: np.ndarray, *, integer: bool) -> np.ndarray:
    """The output step's array for float inputs ``x`` (batch, *input shape)."""
    return _pass(net, np.asarray(x, dtype=np.float64), integer, None)[net.output].a


def calibrate(net: Network, x: np.ndarray) -> Network:
    """A copy of ``net`` with every rounding point's scale picked on the float inputs ``x``: the
    largest value seen fits the step's bits. Coded layers get their integer biases."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"Calibration needs a batch of at least one input; got shape {x.shape}.")
    steps: list[Step] = list(net.steps)
    _pass(net, x, False, steps)
    return Network(tuple(steps), net.act_bits, net.output)


def _pass(net: Network, x: np.ndarray, integer: bool, calibrating: list | None) -> dict:
    inp = net.input
    if tuple(x.shape[1:]) != tuple(inp.shape):
        raise ValueError(
            f"The network reads inputs of shape {tuple(inp.shape)}; got {tuple(x.shape[1:])}."
        )
    env: dict[str, _Value] = {}
    for i, step in enumerate(net.steps):
        if calibrating is not None:
            step = calibrating[i] = _calibrated(step, env)
        env[step.name] = _run_step(step, env, net, x, integer)
    return env


def _run_step(step: Step, env: dict, net: Network, x: np.ndarray, integer: bool) -> _Value:
    if isinstance(step, Input):
        q = net.quantize_input(x)
        return _Value(q.astype(np.int64) if integer else np.ldexp(q, -step.frac), -step.frac, 1)
    if isinstance(step, Add):
        a, b = env[step.a], env[step.b]
        if a.divisor != b.divisor:
            raise ValueError(f"Step {step.name!r} adds differently pooled values.")
        e = min(a.e, b.e)
        if integer:
            # each side below 2**62 after its shift, so an int64 sum cannot wrap
            return _Value(_shl(a.a, a.e - e) + _shl(b.a, b.e - e), e, a.divisor)
        return _Value(a.a + b.a, e, a.divisor)
    v = env[step.src]
    if isinstance(step, Coded):
        return _coded(step, v, integer)
    if isinstance(step, Requantize):
        if step.frac is None or step.lo is None or step.hi is None:
            raise ValueError(f"Requantize step {step.name!r} is not calibrated.")
        shift = -v.e - step.frac
        if integer:
            q = requantize(v.a, shift, step.lo, step.hi)
            return _Value(q.astype(np.int64), -step.frac, v.divisor)
        q = np.clip(np.floor(np.ldexp(v.a, step.frac) + 0.5), step.lo, step.hi)
        return _Value(np.ldexp(q, -step.frac), -step.frac, v.divisor)
    if isinstance(step, MaxPool):
        return _Value(maxpool(v.a, step.kernel, step.stride), v.e, v.divisor)
    if isinstance(step, SumPool):
        positions = v.a.shape[2] * v.a.shape[3]
        return _Value(v.a.sum(axis=(2, 3), keepdims=True), v.e, v.divisor * positions)
    if isinstance(step, Flatten):
        return _Value(v.a.reshape(v.a.shape[0], -1), v.e, v.divisor)
    if isinstance(step, Reshape):
        return _Value(v.a.reshape(v.a.shape[0], *step.shape), v.e, v.divisor)
    if isinstance(step, Pad):
        return _Value(np.pad(v.a, ((0, 0), *step.widths)), v.e, v.divisor)
    if isinstance(step, Slice):
        index = (slice(None), *(slice(*t) for t in step.index))
        return _Value(v.a[index], v.e, v.divisor)
    raise TypeError(f"Unknown step type {type(step).__name__}.")


def _shl(a: np.ndarray, shift: int) -> np.ndarray:
    a = exact_shift_ready(a, shift)
    return a << shift if a.dtype != object else a * (1 << shift)


def _coded(step: Coded, v: _Value, integer: bool) -> _Value:
    n = v.a.shape[0]
    if step.conv is not None:
        cols, (oh, ow) = im2col(v.a, step.conv)
    else:
        cols = v.a.reshape(n, -1)
    e = step.exponent(v.e)
    bias = step.bias_array()
    if integer:
        acc = evaluate(step.graph, cols)
        peak = int(np.abs(acc).max(initial=0)) * abs(int(step.scale_m)) + int(
            np.abs(bias).max(initial=0)
        )
        if peak >= 2**62 and acc.dtype != object:
            acc = acc.astype(object)  # t would overflow int64: continue in Python ints
        t = acc * int(step.scale_m) + bias[None, :]
    else:
        # float64: W_hat and activations are dyadic, so this reproduces t * 2**e exactly.
        t = cols @ _w_hat(step).T + np.ldexp(bias.astype(np.float64), e)
    if step.conv is not None:
        t = t.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    return _Value(t, e, v.divisor)


def _w_hat(step: Coded) -> np.ndarray:
    w = _W_HAT.get(step)
    if w is None:
        w = _W_HAT[step] = np.ldexp(graph_matrix(step.graph) * int(step.scale_m), step.scale_e)
    return w


# -- calibration --------------------------------------------------------------------------------


def _calibrated(step: Step, env: dict) -> Step:
    if isinstance(step, Coded) and step.bias_int is None:
        v = env[step.src]
        return replace(step, bias_int=exact_ints(step.bias * v.divisor, -step.exponent(v.e)))
    if isinstance(step, Requantize) and step.frac is None:
        return _calibrate_rounding(step, env[step.src])
    return step


def _calibrate_rounding(step: Requantize, v: _Value) -> Requantize:
    real = np.asarray(v.a, dtype=np.float64)
    cap_steps = None
    if step.relu:
        real = np.maximum(real, 0.0)
    if step.cap is not None:
        cap_steps = min(math.floor(math.ldexp(float(step.cap) * v.divisor, -v.e)), 2**62)
        real = np.minimum(real, math.ldexp(cap_steps, v.e))
    lo, hi = act_range(step.bits, step.signed)
    top = hi
    peak = float(np.abs(real).max(initial=0.0))
    frac = int(math.floor(math.log2(top / peak))) if peak > 0 else step.bits
    if cap_steps is not None:
        hi = min(hi, requantize_int(cap_steps, -v.e - frac))
    return replace(step, frac=frac, lo=lo, hi=hi)


def exact_ints(values: np.ndarray, exponent: int) -> tuple[int, ...]:
    """round(v * 2**exponent) for each float64 v, exactly (ties to even, as np.round), as
    Python ints."""
    scaled = np.round(np.ldexp(np.asarray(values, dtype=np.float64), exponent))
    if np.abs(scaled).max(initial=0.0) < 2.0**62:
        return tuple(int(b) for b in scaled.astype(np.int64))
    from fractions import Fraction  # only for biases beyond int64 (rare)

    return tuple(round(Fraction(float(b)) * Fraction(2) ** exponent) for b in values)


# -- geometry -----------------------------------------------------------------------------------


def im2col(h: np.ndarray, conv: ConvGeometry) -> tuple[np.ndarray, tuple[int, int]]:
    """(N*P, C*kh*kw) windows in torch's (c, r, s) order, and the output size."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    n, c = h.shape[:2]
    h = np.pad(h, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h = (h.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (h.shape[3] - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, out_h, out_w, c, kh, kw), dtype=h.dtype)
    for r in range(kh):
        for s in range(kw):
            patch = h[:, :, r * dh : r * dh + sh * out_h : sh, s * dw : s * dw + sw * out_w : sw]
            cols[..., r, s] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(n * out_h * out_w, c * kh * kw), (out_h, out_w)


def maxpool(h: np.ndarray, k: int, s: int) -> np.ndarray:
    """Max pooling of (N, C, H, W) values over k x k windows at stride s (no padding)."""
    n, c, hh, ww = h.shape
    oh, ow = (hh - k) // s + 1, (ww - k) // s + 1
    out = h[:, :, 0 : s * oh : s, 0 : s * ow : s].copy()
    for r in range(k):
        for q in range(k):
            np.maximum(out, h[:, :, r : r + s * oh : s, q : q + s * ow : s], out=out)
    return out
