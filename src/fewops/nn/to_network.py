"""From a coded torch model to a :class:`fewops.network.Network`: one tracer for every model.

The model is traced with :mod:`torch.fx` (coded layers kept as leaves; an ``nn.Sequential`` is
just a chain) and every node becomes a typed step. Rounding points are decided here, without
data, from what each value is known to be:

* every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``) and every ReLU-like clamp
  (``torch.clamp(x, 0, max)``, ReLU6) becomes a :class:`Requantize` to ``act_bits`` unsigned bits;
* the input of a coded layer that is not already ``act_bits`` wide (a coded layer's output, a
  residual sum, a pooled sum) gets one, signed unless the value cannot be negative.

Everything else is exact. :func:`compile_network` then calibrates the rounding points once on
sample inputs; the result is torch-free and is what the simulator, the Verilog and the saved
model use.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from fewops.network.network import Network
from fewops.network.simulate import calibrate
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
)
from fewops.nn.coded import CodedConv2d, CodedLinear

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
SUPPORTED_TEXT = (
    "coded Linear/Conv2d, ReLU (nn.ReLU, F.relu, torch.relu, x.relu()), ReLU6 and "
    "torch.clamp(x, 0, max), residual add, max pooling (nn.MaxPool2d, F.max_pool2d), global "
    "average pooling, flattening (nn.Flatten, torch.flatten, x.view(x.size(0), -1), reshape "
    "keeping the batch dimension), slicing, zero padding, Dropout and Identity (fold BatchNorm "
    "first, e.g. LCCConfig(fold_batchnorm=True))"
)
BATCH = 2  # the batch size of the shapes traced here; any size but 1 shows a batch-changing view


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, CodedLinear | CodedConv2d) or super().is_leaf_module(m, qualname)


@dataclass(frozen=True)
class _Sym:
    """A traced value: the step that makes it, its batch shape, and what is known of it."""

    step: str
    shape: tuple[int, ...]
    nonneg: bool
    narrow: bool  # already act_bits wide (a coded layer may read it as is)


def compile_network(model: nn.Module, calibration: np.ndarray, *, act_bits: int = 8) -> Network:
    """Trace a coded model into a :class:`Network` and calibrate it on ``calibration`` (float
    inputs in [0, 1], shape (batch, *input shape)): each rounding point's power-of-two scale is
    chosen so that the largest value seen fits ``act_bits`` bits."""
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.ndim < 2 or calibration.shape[0] == 0:
        raise ValueError(
            f"Calibration needs a batch of at least one input; got shape {calibration.shape}."
        )
    return calibrate(trace_network(model, calibration.shape[1:], act_bits=act_bits), calibration)


def trace_network(model: nn.Module, input_shape, *, act_bits: int = 8) -> Network:
    """The uncalibrated :class:`Network` of a coded model for inputs of ``input_shape``."""
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
    if not any(isinstance(m, CodedLinear | CodedConv2d) for m in model.modules()):
        raise ValueError("The model has no coded layer to simulate.")
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    missing = unsupported_nodes(graph, modules)
    if missing:
        raise ValueError(
            f"Integer simulation does not support {'; '.join(missing)}. Supported: "
            f"{SUPPORTED_TEXT}."
        )
    builder = _Builder(modules, int(act_bits))
    shape = tuple(int(d) for d in input_shape)
    return builder.build(graph, shape)


class _Builder:
    def __init__(self, modules: dict, act_bits: int):
        self.modules = modules
        self.act_bits = act_bits
        self.steps: list[Step] = []
        self.names: set[str] = set()

    def add(self, step: Step) -> str:
        self.steps.append(step)
        self.names.add(step.name)
        return step.name

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        return name

    def build(self, graph: fx.Graph, input_shape: tuple[int, ...]) -> Network:
        env: dict[str, object] = {}
        output = None
        for node in graph.nodes:
            if node.op == "placeholder":
                if self.steps:
                    raise ValueError(_unsupported(f"a second model input {node.name!r}"))
                bits = self.act_bits
                name = self.add(Input(self.fresh(node.name), input_shape, bits, bits))
                env[node.name] = _Sym(name, (BATCH, *input_shape), True, True)
            elif node.op == "output":
                output = env[node.args[0].name]
            else:
                env[node.name] = self.node(node, env)
        if not isinstance(output, _Sym):
            raise ValueError(_unsupported("a model whose output is not one tensor"))
        return Network(tuple(self.steps), self.act_bits, output.step)

    # -- nodes ---------------------------------------------------------------------------------
    def node(self, node: fx.Node, env: dict):
        args = list(fx.node.map_arg(node.args, lambda a: env[a.name]))
        kwargs = dict(fx.node.map_arg(node.kwargs, lambda a: env[a.name]))
        if node.op == "call_module":
            return self.module(node, self.modules[node.target], args)
        if node.op == "call_function":
            return self.function(node, node.target, args, kwargs)
        if node.op == "call_method":
            return self.method(node, node.target, args, kwargs)
        raise ValueError(_unsupported(describe(node, self.modules)))

    def module(self, node: fx.Node, module: nn.Module, args: list):
        x = args[0]
        if isinstance(module, CodedLinear | CodedConv2d):
            return self.coded(str(node.target), module, self.narrow(node.name, x))
        if isinstance(module, nn.ReLU):
            return self.rounding(node.name, x, relu=True)
        if isinstance(module, nn.ReLU6):
            return self.rounding(node.name, x, relu=True, cap=6.0)
        if isinstance(module, PASS_THROUGH):
            return x
        if isinstance(module, nn.Flatten):
            if module.end_dim != -1:
                raise ValueError(_unsupported(f"nn.Flatten {node.target!r} with end_dim"))
            return self.flatten(node.name, x, module.start_dim)
        if isinstance(module, nn.MaxPool2d):
            return self.maxpool(node.name, x, module)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self.global_sum(node.name, x, module.output_size)
        raise ValueError(_unsupported(describe(node, self.modules)))

    def function(self, node: fx.Node, target, args: list, kwargs: dict):
        name = node.name
        if target in (operator.add, operator.iadd, torch.add):
            return self.residual(name, args[0], args[1])
        if target in RELUS:
            return self.rounding(name, args[0], relu=True)
        if target is operator.getitem:
            if not isinstance(args[0], _Sym):  # a shape or a size: plain Python indexing
                return args[0][args[1]]
            return self.slice(name, args[0], args[1])
        if target is getattr:
            if isinstance(args[0], _Sym) and args[1] == "shape":
                return args[0].shape
            raise ValueError(_unsupported(f"reading attribute {args[1]!r} at node {name!r}"))
        if target is F.pad:
            return self.pad(name, args[0], node)
        if target is torch.flatten:
            return self.flatten(name, args[0], _arg(args, kwargs, 1, "start_dim", 0))
        if target is torch.reshape:
            return self.view(name, args[0], _arg(args, kwargs, 1, "shape", None))
        if target is F.max_pool2d:
            return self.maxpool(name, args[0], _max_pool_module(args, kwargs))
        if target is F.adaptive_avg_pool2d:
            return self.global_sum(name, args[0], _arg(args, kwargs, 1, "output_size", None))
        if target is F.dropout:
            return args[0]
        if target is F.relu6:
            return self.rounding(name, args[0], relu=True, cap=6.0)
        if target in CLAMPS:
            cap = _clamp_cap(target, args, kwargs, name)
            return self.rounding(name, args[0], relu=True, cap=cap)
        raise ValueError(_unsupported(describe(node, self.modules)))

    def method(self, node: fx.Node, name: str, args: list, kwargs: dict):
        x = args[0]
        if name == "flatten":
            return self.flatten(node.name, x, _arg(args, kwargs, 1, "start_dim", 0))
        if name == "relu":
            return self.rounding(node.name, x, relu=True)
        if name == "size":
            dim = _arg(args, kwargs, 1, "dim", None)
            return x.shape if dim is None else x.shape[dim]
        if name in RESHAPES:
            shape = args[1] if len(args) == 2 and isinstance(args[1], tuple | list) else args[1:]
            return self.view(node.name, x, shape)
        if name == "contiguous":
            return x
        if name in ("clamp", "clip", "clamp_min"):
            target = torch.clamp_min if name == "clamp_min" else torch.clamp
            cap = _clamp_cap(target, args, kwargs, node.name)
            return self.rounding(node.name, x, relu=True, cap=cap)
        raise ValueError(_unsupported(describe(node, self.modules)))

    # -- steps ---------------------------------------------------------------------------------
    def rounding(self, name: str, x: _Sym, *, relu: bool = False, cap=None) -> _Sym:
        signed = not (relu or x.nonneg)
        step = Requantize(self.fresh(name), x.step, self.act_bits, signed, relu, cap)
        return _Sym(self.add(step), x.shape, not signed, True)

    def narrow(self, name: str, x: _Sym) -> _Sym:
        """A coded layer's input, rounded to act_bits if it is not already."""
        return x if x.narrow else self.rounding(f"{name}_in", x)

    def coded(self, name: str, module, x: _Sym) -> _Sym:
        coded = module.coded
        bias = np.zeros(coded.shape[0]) if module.bias is None else module.bias.double().numpy()
        conv = None
        if isinstance(module, CodedConv2d):
            conv = ConvGeometry(
                tuple(module.kernel_size),
                tuple(module.stride),
                tuple(module.padding),
                tuple(module.dilation),
                int(module.in_channels),
            )
            if len(x.shape) != 4 or x.shape[1] != conv.in_channels:
                raise ValueError(
                    f"Layer {name!r} reads {conv.in_channels} channels; got shape {x.shape[1:]}."
                )
            oh, ow = conv.output_size(x.shape[2], x.shape[3])
            if oh < 1 or ow < 1:
                raise ValueError(f"Layer {name!r} has no output position on {x.shape[1:]}.")
            shape = (x.shape[0], coded.shape[0], oh, ow)
        else:
            features = int(np.prod(x.shape[1:]))
            if len(x.shape) != 2 or features != coded.shape[1]:
                raise ValueError(
                    f"Layer {name!r} reads {coded.shape[1]} features; got shape {x.shape[1:]}."
                )
            shape = (x.shape[0], coded.shape[0])
        step = Coded(
            self.fresh(name),
            x.step,
            coded.graph,
            int(coded.scale_m),
            int(coded.scale_e),
            np.asarray(bias, dtype=np.float64),
            conv,
        )
        return _Sym(self.add(step), shape, False, False)

    def residual(self, name: str, a, b) -> _Sym:
        if not isinstance(a, _Sym) or not isinstance(b, _Sym):
            raise ValueError(_unsupported(f"adding a constant at node {name!r}"))
        if a.shape != b.shape:
            raise ValueError(f"Node {name!r} adds shapes {a.shape[1:]} and {b.shape[1:]}.")
        step = Add(self.fresh(name), a.step, b.step)
        return _Sym(self.add(step), a.shape, a.nonneg and b.nonneg, False)

    def flatten(self, name: str, x: _Sym, start_dim: int) -> _Sym:
        if start_dim != 1:
            raise ValueError(_unsupported(f"flattening from dimension {start_dim}"))
        if len(x.shape) == 2:
            return x
        step = Flatten(self.fresh(name), x.step)
        return _Sym(self.add(step), (x.shape[0], int(np.prod(x.shape[1:]))), x.nonneg, x.narrow)

    def view(self, name: str, x: _Sym, shape) -> _Sym:
        """A reshape keeping the batch dimension (flattening, or any other per-sample shape)."""
        try:
            dims = tuple(int(d) for d in shape)
            out = np.empty(x.shape, dtype=np.int8).reshape(dims).shape
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Cannot reshape {x.shape} to {shape} at node {name!r} ({exc})."
            ) from None
        if len(out) < 1 or out[0] != x.shape[0]:
            raise ValueError(
                _unsupported(
                    f"a reshape to {tuple(shape)} at node {name!r} that changes the batch "
                    "dimension (write x.view(x.size(0), -1))"
                )
            )
        if out == x.shape:
            return x
        if len(out) == 2:
            return self.flatten(name, x, 1)
        step = Reshape(self.fresh(name), x.step, tuple(int(d) for d in out[1:]))
        return _Sym(self.add(step), tuple(out), x.nonneg, x.narrow)

    def maxpool(self, name: str, x: _Sym, module: nn.MaxPool2d) -> _Sym:
        if module.ceil_mode or module.return_indices:
            raise ValueError(_unsupported(f"max pooling {name!r} with ceil_mode or return_indices"))
        if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)):
            raise ValueError(_unsupported(f"MaxPool2d {name!r} with padding or dilation"))
        k = square_size(module.kernel_size)
        s = square_size(module.stride if module.stride is not None else module.kernel_size)
        n, c, h, w = x.shape
        shape = (n, c, (h - k) // s + 1, (w - k) // s + 1)
        return _Sym(self.add(MaxPool(self.fresh(name), x.step, k, s)), shape, x.nonneg, x.narrow)

    def global_sum(self, name: str, x: _Sym, output_size) -> _Sym:
        if output_size not in (1, (1, 1)):
            raise ValueError(_unsupported(f"AdaptiveAvgPool2d {name!r} to {output_size}"))
        shape = (*x.shape[:2], 1, 1)
        return _Sym(self.add(SumPool(self.fresh(name), x.step)), shape, x.nonneg, False)

    def slice(self, name: str, x: _Sym, index) -> _Sym:
        index = index if isinstance(index, tuple) else (index,)
        if not all(isinstance(i, slice) for i in index) or index[0] != slice(None):
            raise ValueError(_unsupported(f"indexing other than x[:, a:b:c, ...] at {name!r}"))
        index = index + (slice(None),) * (len(x.shape) - len(index))
        per_axis = tuple(i.indices(n) for i, n in zip(index[1:], x.shape[1:], strict=True))
        shape = np.empty(x.shape, dtype=np.int8)[index].shape
        step = Slice(self.fresh(name), x.step, per_axis)
        return _Sym(self.add(step), shape, x.nonneg, x.narrow)

    def pad(self, name: str, x: _Sym, node: fx.Node) -> _Sym:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        if mode != "constant" or value not in (None, 0, 0.0):
            raise ValueError(_unsupported(f"padding other than with zeros at node {name!r}"))
        widths = [(0, 0)] * len(x.shape)
        for axis, i in enumerate(range(0, len(pad), 2)):
            widths[len(x.shape) - 1 - axis] = (int(pad[i]), int(pad[i + 1]))
        if widths[0] != (0, 0) or any(a < 0 or b < 0 for a, b in widths):
            raise ValueError(_unsupported(f"padding the batch or cropping at node {name!r}"))
        shape = tuple(n + a + b for n, (a, b) in zip(x.shape, widths, strict=True))
        step = Pad(self.fresh(name), x.step, tuple(widths[1:]))
        return _Sym(self.add(step), shape, x.nonneg, x.narrow)


def square_size(value) -> int:
    """The side of a square pooling window or stride given as an int or an equal pair."""
    if isinstance(value, tuple | list):
        if len(set(value)) != 1:
            raise ValueError(f"Only square pooling windows are supported; got {value}.")
        return int(value[0])
    return int(value)


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
    """Every node of ``graph`` that no step represents, in words (empty when all are)."""
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


def _max_pool_module(args: list, kwargs: dict) -> nn.MaxPool2d:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    given = {n: _arg(args, kwargs, i + 1, n, None) for i, n in enumerate(names)}
    return nn.MaxPool2d(**{n: v for n, v in given.items() if v is not None})


def _clamp_cap(target, args: list, kwargs: dict, name: str):
    """The upper bound of a ReLU-like clamp(x, 0, max) (None for clamp_min(x, 0))."""
    low = _arg(args, kwargs, 1, "min", None)
    high = None if target is torch.clamp_min else _arg(args, kwargs, 2, "max", None)
    if isinstance(low, _Sym) or isinstance(high, _Sym) or low is None or float(low) != 0.0:
        raise ValueError(
            _unsupported(
                f"clamp with min={low!r} at node {name!r} (only min=0, the ReLU-like clamp "
                "torch.clamp(x, 0, max), is simulated)"
            )
        )
    if high is not None and float(high) <= 0:
        raise ValueError(_unsupported(f"clamp with max={high!r} <= 0 at node {name!r}"))
    return None if high is None else float(high)
