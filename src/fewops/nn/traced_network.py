"""Bit-exact integer inference of coded networks that are not a plain chain (ResNets).

:mod:`fewops.nn.integer_network` runs an ``nn.Sequential``. Here the model is traced with
:mod:`torch.fx` (coded layers kept as leaves) and every node of the traced graph gets an integer
handler. A value is an integer array ``a`` with real value ``a * 2**e`` (``e`` the exponent);
after a global average pool it also carries a divisor P (real value ``a * 2**e / P``), because
1/P is not a power of two: the pool sums, and the next coded layer reads the sum (its bias is
scaled by P), so the logits come out P times larger, exactly.

Where values are rounded (the only places):

* the network input, to ``act_bits`` unsigned bits (as in :mod:`fewops.nn.integer_network`);
* every ReLU output (a stored activation), to ``act_bits`` unsigned bits;
* the input of a coded layer that is not already ``act_bits`` wide (e.g. a pooled sum), to
  ``act_bits`` bits, signed unless it cannot be negative.

Each rounding point has a power-of-two scale picked on calibration images so that the largest
value seen fits. Everything else is exact: a coded layer (its shift-add graph, then
``acc * scale_m + bias``), residual sums (both sides shifted to the finer exponent), max pooling,
slicing, zero padding, flattening. :meth:`TracedNetwork.reference` runs the same network in
float64 from the decoded matrices; all values are dyadic, so it agrees with :meth:`run` bit for
bit (tests check logits, not only predictions).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.nn.integer_network import exact_int, im2col, maxpool, square_size
from fewops.sim.evaluate import evaluate

PASS_THROUGH = (nn.Identity, nn.Dropout)
SUPPORTED_MODULES = (
    CodedLinear,
    CodedConv2d,
    nn.ReLU,
    nn.ReLU6,
    nn.Flatten,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    *PASS_THROUGH,
)
RELUS = (F.relu, torch.relu)
CLAMPS = (torch.clamp, torch.clip, torch.clamp_min)
RESHAPES = ("view", "reshape")
SUPPORTED_FUNCTIONS = (
    operator.add,
    operator.iadd,
    torch.add,
    operator.getitem,
    getattr,
    F.pad,
    F.relu6,
    F.max_pool2d,
    F.adaptive_avg_pool2d,
    F.dropout,
    torch.flatten,
    torch.reshape,
    *RELUS,
    *CLAMPS,
)
SUPPORTED_METHODS = ("flatten", "relu", "size", "view", "reshape", "clamp", "clip", "clamp_min")
SUPPORTED_METHODS += ("contiguous",)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, CodedLinear | CodedConv2d) or super().is_leaf_module(m, qualname)


@dataclass
class Value:
    """An integer (or, in the reference, float64 real) array ``a``: real value a * 2**e / divisor."""

    a: np.ndarray
    e: int
    nonneg: bool
    narrow: bool  # already rounded to act_bits at exponent e
    divisor: int = 1


@dataclass
class TracedNetwork:
    """A traced coded network: ``scales`` maps each rounding point (node name) to its fraction
    bits; the logits of :meth:`run` are integers t with real value t * 2**exponent / divisor."""

    graph: fx.Graph
    modules: dict
    act_bits: int
    input_frac: int
    scales: dict = field(default_factory=dict)
    exponent: int = 0
    divisor: int = 1

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        top = 2**self.act_bits - 1
        return np.clip(np.floor(np.ldexp(np.asarray(x, np.float64), self.input_frac) + 0.5), 0, top)

    def run(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Integer logits for float inputs x in [0, 1]."""
        return self._batched(x, batch_size, integer=True)

    def reference(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """The same network in float64 from the decoded matrices: t * 2**exponent."""
        return self._batched(x, batch_size, integer=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.run(x).argmax(axis=1)

    def _batched(self, x, batch_size: int, integer: bool) -> np.ndarray:
        outs = []
        for start in range(0, len(x), batch_size):
            out = self._forward(np.asarray(x[start : start + batch_size]), integer, None)
            self.exponent, self.divisor = out.e, out.divisor
            outs.append(out.a)
        return np.concatenate(outs)

    def logits(self, t: np.ndarray) -> np.ndarray:
        """Real logits of :meth:`run`'s integers (the pooled divisor applied)."""
        return np.ldexp(np.asarray(t, dtype=np.float64), self.exponent) / self.divisor

    # -- one pass over the graph -------------------------------------------------------------

    def _forward(self, x: np.ndarray, integer: bool, calibrate: dict | None) -> Value:
        q = self.quantize_input(x)
        env: dict[str, Value] = {}
        result = None
        for node in self.graph.nodes:
            if node.op == "placeholder":
                a = q.astype(np.int64) if integer else np.ldexp(q, -self.input_frac)
                env[node.name] = Value(a, -self.input_frac, True, True)
            elif node.op == "output":
                result = env[node.args[0].name]
            else:
                env[node.name] = self._node(node, env, integer, calibrate)
        return result

    def _node(self, node: fx.Node, env: dict, integer: bool, calibrate: dict | None):
        args = list(fx.node.map_arg(node.args, lambda a: env[a.name]))
        kwargs = dict(fx.node.map_arg(node.kwargs, lambda a: env[a.name]))
        if node.op == "call_module":
            module = self.modules[node.target]
            if isinstance(module, CodedLinear | CodedConv2d):
                x = self._narrow(node.args[0].name, args[0], integer, calibrate)
                return _coded(module, x, integer)
            if isinstance(module, nn.ReLU):
                return self._round(node.name, _relu(args[0]), integer, calibrate)
            if isinstance(module, nn.ReLU6):
                return self._clamp(node.name, args[0], 0.0, 6.0, integer, calibrate)
            if isinstance(module, PASS_THROUGH):
                return args[0]
            if isinstance(module, nn.Flatten):
                return _reshape(args[0], module.start_dim)
            if isinstance(module, nn.MaxPool2d):
                return _pool_max(args[0], module, node.target)
            if isinstance(module, nn.AdaptiveAvgPool2d):
                return _global_sum(args[0], module, node.target)
            raise ValueError(_unsupported(f"module {node.target!r} ({type(module).__name__})"))
        if node.op == "call_function":
            target = node.target
            if target in (operator.add, operator.iadd, torch.add):
                return _add(args[0], args[1], node.name)
            if target in RELUS:
                return self._round(node.name, _relu(args[0]), integer, calibrate)
            if target is operator.getitem:
                if not isinstance(args[0], Value):  # a shape or a size: plain Python indexing
                    return args[0][args[1]]
                return _slice(args[0], args[1], node.name)
            if target is getattr:
                return _attribute(args[0], args[1], node.name)
            if target is F.pad:
                return _pad(args[0], node, node.name)
            if target is torch.flatten:
                return _reshape(args[0], _arg(args, kwargs, 1, "start_dim", 0))
            if target is torch.reshape:
                return _view(args[0], _arg(args, kwargs, 1, "shape", None), node.name)
            if target is F.max_pool2d:
                return _pool_max(args[0], _max_pool_module(args, kwargs), node.name)
            if target is F.adaptive_avg_pool2d:
                pool = nn.AdaptiveAvgPool2d(_arg(args, kwargs, 1, "output_size", None))
                return _global_sum(args[0], pool, node.name)
            if target is F.dropout:
                return args[0]
            if target is F.relu6:
                return self._clamp(node.name, args[0], 0.0, 6.0, integer, calibrate)
            if target in CLAMPS:
                low, high = _clamp_bounds(target, args, kwargs, node.name)
                return self._clamp(node.name, args[0], low, high, integer, calibrate)
        if node.op == "call_method":
            name = node.target
            if name == "flatten":
                return _reshape(args[0], _arg(args, kwargs, 1, "start_dim", 0))
            if name == "relu":
                return self._round(node.name, _relu(args[0]), integer, calibrate)
            if name == "size":
                shape = tuple(args[0].a.shape)
                dim = _arg(args, kwargs, 1, "dim", None)
                return shape if dim is None else shape[dim]
            if name in RESHAPES:
                shape = (
                    args[1] if len(args) == 2 and isinstance(args[1], tuple | list) else args[1:]
                )
                return _view(args[0], shape, node.name)
            if name == "contiguous":
                return args[0]
            if name in ("clamp", "clip", "clamp_min"):
                target = torch.clamp_min if name == "clamp_min" else torch.clamp
                low, high = _clamp_bounds(target, args, kwargs, node.name)
                return self._clamp(node.name, args[0], low, high, integer, calibrate)
        raise ValueError(_unsupported(describe(node, self.modules)))

    def _clamp(self, key: str, v: Value, low, high, integer: bool, calibrate: dict | None):
        """clamp(v, 0, high): a ReLU whose output is capped at ``high`` before rounding (the cap
        is taken on v's own grid, so the integer run and the reference agree exactly)."""
        relu = _relu(v)
        if high is not None:
            steps = math.floor(math.ldexp(float(high) * v.divisor, -v.e))
            cap = min(steps, 2**62)
            top = cap if integer else math.ldexp(cap, v.e)
            relu = Value(np.minimum(relu.a, top), v.e, True, False, v.divisor)
        return self._round(key, relu, integer, calibrate)

    def _narrow(self, name: str, v: Value, integer: bool, calibrate: dict | None) -> Value:
        """A coded layer's input, rounded to act_bits if it is not already."""
        if v.narrow:
            return v
        return self._round(name + ":in", v, integer, calibrate)

    def _round(self, key: str, v: Value, integer: bool, calibrate: dict | None) -> Value:
        top = 2**self.act_bits - 1 if v.nonneg else 2 ** (self.act_bits - 1) - 1
        lo = 0 if v.nonneg else -(2 ** (self.act_bits - 1))
        if calibrate is not None:
            peak = float(np.abs(np.ldexp(v.a, v.e) if integer else v.a).max(initial=0.0))
            frac = int(math.floor(math.log2(top / peak))) if peak > 0 else self.act_bits
            self.scales[key] = frac
        frac = self.scales[key]
        if integer:
            r = -v.e - frac
            q = (v.a + (1 << (r - 1))) >> r if r > 0 else v.a << (-r)
            return Value(np.clip(q, lo, top).astype(np.int64), -frac, v.nonneg, True, v.divisor)
        q = np.clip(np.floor(np.ldexp(v.a, frac) + 0.5), lo, top)
        return Value(np.ldexp(q, -frac), -frac, v.nonneg, True, v.divisor)


SUPPORTED_TEXT = (
    "coded Linear/Conv2d, ReLU (nn.ReLU, F.relu, torch.relu, x.relu()), ReLU6 and "
    "torch.clamp(x, 0, max), residual add, max pooling (nn.MaxPool2d, F.max_pool2d), global "
    "average pooling, flattening (nn.Flatten, torch.flatten, x.view(x.size(0), -1), reshape "
    "keeping the batch dimension), slicing, zero padding, Dropout and Identity (fold BatchNorm "
    "first, e.g. LCCConfig(fold_batchnorm=True))"
)


def _unsupported(what: str) -> str:
    return f"Integer simulation does not support {what}; supported: {SUPPORTED_TEXT}."


def _name_of(target) -> str:
    """torch.nn.functional.max_pool2d, not boolean_dispatch.<locals>.fn."""
    for prefix, namespace in (("F.", F), ("torch.", torch), ("operator.", operator)):
        for name in dir(namespace):
            if not name.startswith("_") and getattr(namespace, name, None) is target:
                return prefix + name
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")


def describe(node: fx.Node, modules: dict) -> str:
    """One node in words, for error messages."""
    if node.op == "call_module":
        return f"module {node.target!r} ({type(modules[node.target]).__name__})"
    if node.op == "call_function":
        return f"function {_name_of(node.target)} at node {node.name!r}"
    return f"operation {node.op} {node.target!r} at node {node.name!r}"


def unsupported_nodes(graph: fx.Graph, modules: dict) -> list[str]:
    """Every node of ``graph`` that no handler runs, in words (empty when all are supported)."""
    found = []
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module" and isinstance(modules[node.target], SUPPORTED_MODULES):
            continue
        if node.op == "call_function" and node.target in SUPPORTED_FUNCTIONS:
            continue
        if node.op == "call_method" and node.target in SUPPORTED_METHODS:
            continue
        found.append(describe(node, modules))
    return found


def _arg(args: list, kwargs: dict, index: int, name: str, default):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _attribute(value, name: str, node_name: str):
    if isinstance(value, Value) and name == "shape":
        return tuple(value.a.shape)
    raise ValueError(_unsupported(f"reading attribute {name!r} at node {node_name!r}"))


def _view(v: Value, shape, name: str) -> Value:
    """A reshape that keeps the batch dimension first (x.view(x.size(0), -1) and the like)."""
    try:
        out = v.a.reshape(tuple(int(d) for d in shape))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Cannot reshape {v.a.shape} to {shape} at node {name!r} ({exc})."
        ) from None
    if out.ndim < 1 or out.shape[0] != v.a.shape[0]:
        raise ValueError(
            _unsupported(
                f"a reshape to {tuple(shape)} at node {name!r} that changes the batch "
                "dimension (write x.view(x.size(0), -1))"
            )
        )
    return Value(out, v.e, v.nonneg, v.narrow, v.divisor)


def _max_pool_module(args: list, kwargs: dict) -> nn.MaxPool2d:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    given = {n: _arg(args, kwargs, i + 1, n, None) for i, n in enumerate(names)}
    return nn.MaxPool2d(**{n: v for n, v in given.items() if v is not None})


def _clamp_bounds(target, args: list, kwargs: dict, name: str):
    low = _arg(args, kwargs, 1, "min", None)
    high = None if target is torch.clamp_min else _arg(args, kwargs, 2, "max", None)
    if isinstance(low, Value) or isinstance(high, Value) or low is None or float(low) != 0.0:
        raise ValueError(
            _unsupported(
                f"clamp with min={low!r} at node {name!r} (only min=0, the ReLU-like clamp "
                "torch.clamp(x, 0, max), is simulated)"
            )
        )
    if high is not None and float(high) <= 0:
        raise ValueError(_unsupported(f"clamp with max={high!r} <= 0 at node {name!r}"))
    return 0.0, high


# -- handlers (each works on integer arrays and on float64 reals alike) --------------------------


def _coded(module, x: Value, integer: bool) -> Value:
    coded = module.coded
    n = x.a.shape[0]
    conv = isinstance(module, CodedConv2d)
    if conv:
        spec = {
            "kernel_size": module.kernel_size,
            "stride": module.stride,
            "padding": module.padding,
            "dilation": module.dilation,
        }
        cols, (oh, ow) = im2col(x.a, spec)
    else:
        cols = x.a.reshape(n, -1)
    exponent = coded.scale_e - coded.graph.output_scale + x.e
    bias = np.zeros(coded.shape[0]) if module.bias is None else module.bias.double().numpy()
    bias = bias * x.divisor  # the layer reads a sum of P values instead of their mean
    bias_int = _bias_int(bias, exponent)
    if integer:
        acc = evaluate(coded.graph, cols)
        peak = int(np.abs(acc).max(initial=0)) * abs(coded.scale_m) + int(
            np.abs(bias_int).max(initial=0)
        )
        if peak >= 2**62 and acc.dtype != object:
            acc = acc.astype(object)
        t = acc * coded.scale_m + bias_int[None, :]
    else:
        t = cols @ coded.matrix.T + np.ldexp(bias_int.astype(np.float64), exponent)
    if conv:
        t = t.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    return Value(t, exponent, False, False, x.divisor)


def _bias_int(bias: np.ndarray, exponent: int) -> np.ndarray:
    scaled = np.round(np.ldexp(bias, -exponent))
    if np.abs(scaled).max(initial=0.0) < 2.0**62:
        return scaled.astype(np.int64)
    return np.array([exact_int(b, -exponent) for b in bias], dtype=object)


def _relu(v: Value) -> Value:
    return Value(np.maximum(v.a, 0), v.e, True, False, v.divisor)


def _add(a: Value, b: Value, name: str) -> Value:
    if not isinstance(a, Value) or not isinstance(b, Value):
        raise ValueError(_unsupported(f"adding a constant at node {name!r}"))
    if a.divisor != b.divisor:
        raise ValueError(_unsupported(f"a sum of differently pooled values at node {name!r}"))
    e = min(a.e, b.e)
    return Value(_shift_up(a, e) + _shift_up(b, e), e, a.nonneg and b.nonneg, False, a.divisor)


def _shift_up(v: Value, e: int) -> np.ndarray:
    """The array at the finer exponent e <= v.e (exact: a left shift, or an exact float)."""
    if v.a.dtype.kind == "f":
        return v.a  # reals: the exponent is bookkeeping only
    return v.a << (v.e - e)


def _slice(v: Value, index, name: str) -> Value:
    return Value(v.a[index], v.e, v.nonneg, v.narrow, v.divisor)


def _pad(v: Value, node: fx.Node, name: str) -> Value:
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    if mode != "constant" or value not in (None, 0, 0.0):
        raise ValueError(_unsupported(f"padding other than with zeros at node {name!r}"))
    widths = [(0, 0)] * v.a.ndim
    for axis, i in enumerate(range(0, len(pad), 2)):
        widths[v.a.ndim - 1 - axis] = (pad[i], pad[i + 1])
    return Value(np.pad(v.a, widths), v.e, v.nonneg, v.narrow, v.divisor)


def _reshape(v: Value, start_dim: int) -> Value:
    if start_dim != 1:
        raise ValueError(_unsupported(f"flattening from dimension {start_dim}"))
    return Value(v.a.reshape(v.a.shape[0], -1), v.e, v.nonneg, v.narrow, v.divisor)


def _pool_max(v: Value, module: nn.MaxPool2d, name: str) -> Value:
    if module.ceil_mode or module.return_indices:
        raise ValueError(_unsupported(f"max pooling {name!r} with ceil_mode or return_indices"))
    if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)):
        raise ValueError(_unsupported(f"MaxPool2d {name!r} with padding or dilation"))
    k = square_size(module.kernel_size)
    s = square_size(module.stride if module.stride is not None else module.kernel_size)
    return Value(maxpool(v.a, k, s), v.e, v.nonneg, v.narrow, v.divisor)


def _global_sum(v: Value, module: nn.AdaptiveAvgPool2d, name: str) -> Value:
    if module.output_size not in (1, (1, 1)):
        raise ValueError(_unsupported(f"AdaptiveAvgPool2d {name!r} to {module.output_size}"))
    if v.divisor != 1:
        raise ValueError(_unsupported(f"pooling a pooled value at {name!r}"))
    positions = v.a.shape[2] * v.a.shape[3]
    total = v.a.sum(axis=(2, 3), keepdims=True)
    return Value(total, v.e, v.nonneg, False, positions)


def compile_traced(
    model: nn.Module, calibration: np.ndarray, *, act_bits: int = 8
) -> TracedNetwork:
    """Trace a coded model (any graph of the supported operations) and calibrate its rounding
    points on ``calibration`` (float inputs in [0, 1])."""
    if not 2 <= int(act_bits) <= 16:
        raise ValueError(f"Activation width must be between 2 and 16 bits; got {act_bits}.")
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            raise ValueError(
                f"Layer {name!r} ({type(module).__name__}) is not coded; code every Linear and "
                "Conv2d layer (fewops.compress_) before integer simulation."
            )
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            raise ValueError(_unsupported(f"module {name!r} (BatchNorm)"))
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    missing = unsupported_nodes(graph, modules)
    if missing:
        raise ValueError(
            f"Integer simulation does not support {'; '.join(missing)}. Supported: "
            f"{SUPPORTED_TEXT}."
        )
    if not any(isinstance(m, CodedLinear | CodedConv2d) for m in model.modules()):
        raise ValueError("The model has no coded layer to simulate.")
    net = TracedNetwork(graph, modules, int(act_bits), int(act_bits))
    net._forward(np.asarray(calibration, dtype=np.float64), False, calibrate={})
    return net
