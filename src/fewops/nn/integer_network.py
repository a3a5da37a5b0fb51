"""Bit-exact integer inference of a coded network, and its float64 reference.

A network is a sequence of steps compiled from an ``nn.Sequential`` of coded layers: coded
Linear/Conv2d (through their shift-add graphs), ReLU, Flatten, MaxPool2d. Activations are
unsigned (after ReLU) or signed fixed-point integers of ``act_bits`` bits with a power-of-two
scale per layer boundary, chosen by calibration. Requantization of a layer with graph output
``acc`` (exponent ``-graph.output_scale - f_in``):

    t = acc * scale_m + bias_int                     exponent E = scale_e - graph.output_scale - f_in
    next = clip((t + 2**(r-1)) >> r, lo, hi)         r = -E - f_out  (t << -r when r <= 0)

and the last layer returns ``t`` (the logits, exactly). :func:`reference_forward` computes the same
network in float64 from the decoded matrices W_hat; for the codes here every value is a dyadic
rational small enough for float64, so predictions agree sample by sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from torch import nn

from fewops.codes.base import CodedMatrix
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.sim.evaluate import evaluate

SKIPPED = (nn.Dropout, nn.Identity)


@dataclass
class IntLayer:
    """One coded layer of an integer network, with its requantization."""

    name: str
    coded: CodedMatrix
    bias: np.ndarray  # float bias (zeros when the layer has none)
    conv: dict | None  # kernel_size, stride, padding, dilation, in_channels for convolutions
    relu: bool = False
    f_in: int = 0  # fraction bits of the input activations
    f_out: int = 0  # fraction bits of the output activations (hidden layers)
    last: bool = False

    @property
    def exponent(self) -> int:
        """Exponent E of the integer t = acc * scale_m + bias_int."""
        return self.coded.scale_e - self.coded.graph.output_scale - self.f_in

    @property
    def bias_int(self) -> np.ndarray:
        """The bias on the grid of t, exactly: Python ints where int64 would overflow."""
        scaled = np.round(np.ldexp(self.bias, -self.exponent))
        if np.abs(scaled).max(initial=0.0) < 2.0**62:
            return scaled.astype(np.int64)
        return np.array([exact_int(b, -self.exponent) for b in self.bias], dtype=object)

    @property
    def requant_shift(self) -> int:
        return -self.exponent - self.f_out


def exact_int(value: float, exponent: int) -> int:
    """round(value * 2**exponent) exactly, for any exponent (float64 value is a dyadic rational)."""
    return round(Fraction(value) * Fraction(2) ** exponent)


@dataclass
class IntegerNetwork:
    """A compiled coded network: steps are IntLayer, "relu" (folded), "flatten" or ("maxpool", k, s)."""

    steps: list
    act_bits: int
    input_frac: int

    @property
    def layers(self) -> list[IntLayer]:
        return [s for s in self.steps if isinstance(s, IntLayer)]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        top = 2**self.act_bits - 1
        return np.clip(np.floor(np.ldexp(np.asarray(x, np.float64), self.input_frac) + 0.5), 0, top)

    def run(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Integer logits t of the last layer for float inputs x in [0, 1], shape (N, classes)."""
        outs = []
        for start in range(0, x.shape[0], batch_size):
            h = self.quantize_input(x[start : start + batch_size]).astype(np.int64)
            outs.append(self._forward(h, integer=True))
        return np.concatenate(outs)

    def reference(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """The same network in float64 from W_hat; returns t * 2**-E of the last layer."""
        outs = []
        for start in range(0, x.shape[0], batch_size):
            h = np.ldexp(self.quantize_input(x[start : start + batch_size]), -self.input_frac)
            outs.append(self._forward(h, integer=False))
        return np.concatenate(outs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.run(x).argmax(axis=1)

    def _forward(self, h: np.ndarray, *, integer: bool) -> np.ndarray:
        for step in self.steps:
            if isinstance(step, IntLayer):
                h = _layer(step, h, self.act_bits, integer)
            elif step == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif isinstance(step, tuple) and step[0] == "maxpool":
                h = maxpool(h, step[1], step[2])
        return h


def im2col(h: np.ndarray, conv: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """im2col: (N*P, C*kh*kw) windows in torch's (c, r, s) order, and the output size."""
    kh, kw = conv["kernel_size"]
    sh, sw = conv["stride"]
    ph, pw = conv["padding"]
    dh, dw = conv["dilation"]
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


def _layer(layer: IntLayer, h: np.ndarray, act_bits: int, integer: bool) -> np.ndarray:
    n = h.shape[0]
    if layer.conv is not None:
        cols, (oh, ow) = im2col(h, layer.conv)
    else:
        cols = h.reshape(n, -1)
    coded = layer.coded
    if integer:
        acc = evaluate(coded.graph, cols)
        bias = layer.bias_int
        peak = int(np.abs(acc).max(initial=0)) * abs(coded.scale_m) + int(
            np.abs(bias).max(initial=0)
        )
        if peak >= 2**62 and acc.dtype != object:
            acc = acc.astype(object)  # t would overflow int64: continue in Python ints
        t = acc * coded.scale_m + bias[None, :]
    else:
        # float64: W_hat and activations are dyadic, so this reproduces t * 2**E exactly.
        t = cols @ coded.matrix.T + np.ldexp(layer.bias_int.astype(np.float64), layer.exponent)
    if not layer.last:
        t = _requantize(t, layer, act_bits, integer)
    if layer.conv is not None:
        t = t.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    return t


def _requantize(t: np.ndarray, layer: IntLayer, act_bits: int, integer: bool) -> np.ndarray:
    lo, hi = (
        (0, 2**act_bits - 1) if layer.relu else (-(2 ** (act_bits - 1)), 2 ** (act_bits - 1) - 1)
    )
    if integer:
        r = layer.requant_shift
        q = (t + (1 << (r - 1))) >> r if r > 0 else t << (-r)
        return np.clip(q, lo, hi)
    q = np.clip(np.floor(np.ldexp(t, layer.f_out) + 0.5), lo, hi)
    return np.ldexp(q, -layer.f_out)


def maxpool(h: np.ndarray, k: int, s: int) -> np.ndarray:
    """Max pooling of (N, C, H, W) values over k x k windows at stride s (no padding)."""
    n, c, hh, ww = h.shape
    oh, ow = (hh - k) // s + 1, (ww - k) // s + 1
    out = np.full((n, c, oh, ow), -np.inf if h.dtype.kind == "f" else np.iinfo(np.int64).min)
    out = out.astype(h.dtype)
    for r in range(k):
        for q in range(k):
            np.maximum(out, h[:, :, r : r + s * oh : s, q : q + s * ow : s], out=out)
    return out


def square_size(value) -> int:
    """The side of a square pooling window or stride given as an int or an equal pair."""
    if isinstance(value, tuple | list):
        if len(set(value)) != 1:
            raise ValueError(f"Only square pooling windows are supported; got {value}.")
        return int(value[0])
    return int(value)


def compile_network(
    model: nn.Module, calibration: np.ndarray, *, act_bits: int = 8
) -> IntegerNetwork:
    """Compile a Sequential of coded layers into an :class:`IntegerNetwork` (any other model,
    e.g. a ResNet, into a :class:`fewops.nn.traced_network.TracedNetwork`).

    ``calibration`` (float inputs in [0, 1]) sets each activation's power-of-two scale so that the
    largest value seen fits ``act_bits`` bits.
    """
    if not 2 <= int(act_bits) <= 16:
        raise ValueError(f"Activation width must be between 2 and 16 bits; got {act_bits}.")
    if not isinstance(model, nn.Sequential):
        from fewops.nn.traced_network import compile_traced  # residual networks: traced graph

        return compile_traced(model, calibration, act_bits=act_bits)
    steps: list = []
    for name, module in _flat_modules(model):
        if isinstance(module, CodedLinear | CodedConv2d):
            bias = (
                np.zeros(module.coded.shape[0])
                if module.bias is None
                else module.bias.double().numpy()
            )
            conv = None
            if isinstance(module, CodedConv2d):
                conv = {
                    "kernel_size": module.kernel_size,
                    "stride": module.stride,
                    "padding": module.padding,
                    "dilation": module.dilation,
                    "in_channels": module.in_channels,
                }
            steps.append(IntLayer(name=name, coded=module.coded, bias=bias, conv=conv))
        elif isinstance(module, nn.ReLU):
            if not steps or not isinstance(steps[-1], IntLayer) or steps[-1].relu:
                raise ValueError(f"ReLU {name!r} must follow a coded layer directly.")
            steps[-1].relu = True
        elif isinstance(module, nn.Flatten):
            steps.append("flatten")
        elif isinstance(module, nn.MaxPool2d):
            if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)):
                raise ValueError(f"MaxPool2d {name!r} with padding or dilation is not supported.")
            k = square_size(module.kernel_size)
            s = square_size(module.stride if module.stride is not None else module.kernel_size)
            steps.append(("maxpool", k, s))
        elif isinstance(module, SKIPPED):
            continue
        elif isinstance(module, nn.Linear | nn.Conv2d):
            raise ValueError(
                f"Layer {name!r} ({type(module).__name__}) is not coded; code every Linear and "
                "Conv2d layer (fewops.compress_) before integer simulation."
            )
        else:
            raise ValueError(
                f"Layer {name!r} ({type(module).__name__}) cannot be simulated in integers; "
                "supported: coded Linear/Conv2d, ReLU, Flatten, MaxPool2d, Dropout."
            )
    layers = [s for s in steps if isinstance(s, IntLayer)]
    if not layers:
        raise ValueError("The model has no coded layer to simulate.")
    layers[-1].last = True
    net = IntegerNetwork(steps=steps, act_bits=int(act_bits), input_frac=int(act_bits))
    _calibrate(net, np.asarray(calibration, dtype=np.float64))
    return net


def _flat_modules(model: nn.Module):
    """Leaf modules of nested Sequentials, in execution order."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"Integer simulation needs an nn.Sequential model; got {type(model).__name__} "
            "(residual networks are counted but not simulated yet)."
        )
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            for sub, leaf in _flat_modules(module):
                yield f"{name}.{sub}", leaf
        else:
            yield name, module


def _calibrate(net: IntegerNetwork, x: np.ndarray) -> None:
    """Pick each hidden layer's output fraction bits from the float activations on ``x``."""
    h = np.ldexp(net.quantize_input(x), -net.input_frac)
    f_in = net.input_frac
    for step in net.steps:
        if isinstance(step, IntLayer):
            step.f_in = f_in
            if not step.last:
                step.f_out = 60  # provisional: calibrate on the unclipped float output
                probe = _layer_float_unclipped(step, h)
                peak = float(np.abs(probe).max(initial=0.0))
                top = 2**net.act_bits - 1 if step.relu else 2 ** (net.act_bits - 1) - 1
                step.f_out = int(math.floor(math.log2(top / peak))) if peak > 0 else net.act_bits
                h = _layer(step, h, net.act_bits, integer=False)
                f_in = step.f_out
        elif step == "flatten":
            h = h.reshape(h.shape[0], -1)
        else:
            h = maxpool(h, step[1], step[2])


def _layer_float_unclipped(layer: IntLayer, h: np.ndarray) -> np.ndarray:
    cols = im2col(h, layer.conv)[0] if layer.conv is not None else h.reshape(h.shape[0], -1)
    t = cols @ layer.coded.matrix.T + layer.bias[None, :]
    return np.maximum(t, 0) if layer.relu else t
