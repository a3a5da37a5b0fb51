"""An integer network: its steps, what each value is (statically), and running it.

:class:`Network` is torch-free: built once from a model (:func:`fewops.nn.to_network.build_network`),
calibrated once, saved as is (:mod:`fewops.network.store`), and read by the simulator here, the
Verilog generators and the counts. ``run`` is bit-exact integer inference; ``reference`` the same
network in float64 from the decoded matrices (every value is a dyadic rational small enough for
float64, so the two agree logit for logit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewops.graph.widths import infer_ranges
from fewops.network.steps import (
    Add,
    Coded,
    Flatten,
    Input,
    MaxPool,
    Pad,
    Requantize,
    Reshape,
    Slice,
    Step,
    SumPool,
    requantize_int,
)


@dataclass(frozen=True)
class ValueInfo:
    """One value, known without data: per-sample ``shape``, real value ``a * 2**e / divisor``,
    and the integer range [lo, hi] that ``a`` can take (Python ints, exact)."""

    shape: tuple[int, ...]
    e: int
    divisor: int
    lo: int
    hi: int

    @property
    def nonneg(self) -> bool:
        return self.lo >= 0

    @property
    def bits(self) -> int:
        """Two's complement width that holds [lo, hi] (unsigned width when lo >= 0)."""
        if self.lo >= 0:
            return max(1, int(self.hi).bit_length())
        return max(int(self.hi).bit_length(), (-int(self.lo) - 1).bit_length()) + 1


@dataclass(frozen=True, eq=False)
class Network:
    """Steps in execution order (the first is the :class:`Input`), the activation width, and
    the name of the step whose value is the output (the logits)."""

    steps: tuple[Step, ...]
    act_bits: int
    output: str

    def __post_init__(self) -> None:
        if not self.steps or not isinstance(self.steps[0], Input):
            raise ValueError("A network starts with its Input step.")
        seen: set[str] = set()
        for step in self.steps:
            missing = [s for s in step.sources if s not in seen]
            if missing:
                raise ValueError(
                    f"Step {step.name!r} reads {missing}, which no earlier step makes."
                )
            if step.name in seen:
                raise ValueError(f"Two steps are named {step.name!r}.")
            seen.add(step.name)
        if self.output not in seen:
            raise ValueError(f"The output {self.output!r} is not a step of the network.")

    # -- structure -----------------------------------------------------------------------------
    @property
    def input(self) -> Input:
        return self.steps[0]  # type: ignore[return-value]

    @property
    def coded(self) -> list[Coded]:
        """The coded layers in execution order."""
        return [s for s in self.steps if isinstance(s, Coded)]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"No step named {name!r}.")

    @property
    def calibrated(self) -> bool:
        return all(
            (s.frac is not None if isinstance(s, Requantize) else True)
            and (s.bias_int is not None if isinstance(s, Coded) else True)
            for s in self.steps
        )

    def values(self) -> dict[str, ValueInfo]:
        """:class:`ValueInfo` of every step (needs a calibrated network)."""
        return infer_values(self)

    @property
    def output_info(self) -> ValueInfo:
        return self.values()[self.output]

    # -- running -------------------------------------------------------------------------------
    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        inp = self.input
        top = 2**inp.bits - 1
        return np.clip(np.floor(np.ldexp(np.asarray(x, np.float64), inp.frac) + 0.5), 0, top)

    def run(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Integer logits t for float inputs x in [0, 1]; real logits: :meth:`logits`."""
        from fewops.network.simulate import forward  # simulate imports this module

        return _batched(lambda b: forward(self, b, integer=True), x, batch_size)

    def reference(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """The same network in float64 from the decoded matrices: t * 2**e exactly."""
        from fewops.network.simulate import forward  # simulate imports this module

        return _batched(lambda b: forward(self, b, integer=False), x, batch_size)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.run(x).argmax(axis=1)

    @property
    def exponent(self) -> int:
        return self.output_info.e

    @property
    def divisor(self) -> int:
        return self.output_info.divisor

    def logits(self, t: np.ndarray) -> np.ndarray:
        """Real logits of :meth:`run`'s integers."""
        info = self.output_info
        return np.ldexp(np.asarray(t, dtype=np.float64), info.e) / info.divisor


def _batched(fn, x, batch_size: int) -> np.ndarray:
    x = np.asarray(x)
    outs = [fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    if not outs:
        raise ValueError("No inputs to run (an empty batch).")
    return np.concatenate(outs)


def infer_values(net: Network) -> dict[str, ValueInfo]:
    """Shape, exponent, divisor and integer range of every step's value, from the steps alone."""
    info: dict[str, ValueInfo] = {}
    for step in net.steps:
        info[step.name] = _infer(step, info)
    return info


def _infer(step: Step, info: dict[str, ValueInfo]) -> ValueInfo:
    if isinstance(step, Input):
        return ValueInfo(tuple(step.shape), -step.frac, 1, 0, 2**step.bits - 1)
    if isinstance(step, Add):
        a, b = info[step.a], info[step.b]
        if a.shape != b.shape or a.divisor != b.divisor:
            raise ValueError(
                f"Step {step.name!r} adds values of shapes {a.shape} and {b.shape} (divisors "
                f"{a.divisor} and {b.divisor})."
            )
        e = min(a.e, b.e)
        lo = (a.lo << (a.e - e)) + (b.lo << (b.e - e))
        hi = (a.hi << (a.e - e)) + (b.hi << (b.e - e))
        return ValueInfo(a.shape, e, a.divisor, lo, hi)
    v = info[step.src]
    if isinstance(step, Coded):
        return _infer_coded(step, v)
    if isinstance(step, Requantize):
        if step.frac is None or step.lo is None or step.hi is None:
            raise ValueError(f"Requantize step {step.name!r} is not calibrated.")
        shift = -v.e - step.frac
        lo = max(step.lo, requantize_int(v.lo, shift))
        hi = min(step.hi, requantize_int(v.hi, shift))
        return ValueInfo(v.shape, -step.frac, v.divisor, min(lo, hi), hi)
    if isinstance(step, MaxPool | SumPool) and len(v.shape) != 3:
        raise ValueError(f"Pooling step {step.name!r} needs a (C, H, W) input; got {v.shape}.")
    if isinstance(step, MaxPool):
        c, h, w = v.shape
        if not 1 <= step.kernel <= min(h, w) or step.stride < 1:
            raise ValueError(
                f"Max pooling {step.name!r} has kernel {step.kernel} and stride {step.stride} "
                f"on an input of shape {v.shape}."
            )
        oh, ow = (h - step.kernel) // step.stride + 1, (w - step.kernel) // step.stride + 1
        return ValueInfo((c, oh, ow), v.e, v.divisor, v.lo, v.hi)
    if isinstance(step, SumPool):
        c, h, w = v.shape
        return ValueInfo((c, 1, 1), v.e, v.divisor * h * w, v.lo * h * w, v.hi * h * w)
    if isinstance(step, Flatten):
        return ValueInfo((int(np.prod(v.shape)),), v.e, v.divisor, v.lo, v.hi)
    if isinstance(step, Reshape):
        if int(np.prod(step.shape)) != int(np.prod(v.shape)) or min(step.shape, default=0) < 1:
            raise ValueError(f"Step {step.name!r} reshapes {v.shape} to {step.shape}.")
        return ValueInfo(tuple(step.shape), v.e, v.divisor, v.lo, v.hi)
    if isinstance(step, Pad | Slice):
        given = step.widths if isinstance(step, Pad) else step.index
        if len(given) != len(v.shape):
            raise ValueError(
                f"Step {step.name!r} gives {len(given)} axes for an input of shape {v.shape}."
            )
    if isinstance(step, Pad):
        shape = tuple(n + a + b for n, (a, b) in zip(v.shape, step.widths, strict=True))
        return ValueInfo(shape, v.e, v.divisor, min(v.lo, 0), max(v.hi, 0))
    if isinstance(step, Slice):
        shape = tuple(
            len(range(*slice(*t).indices(n))) for n, t in zip(v.shape, step.index, strict=True)
        )
        return ValueInfo(shape, v.e, v.divisor, v.lo, v.hi)
    raise TypeError(f"Unknown step type {type(step).__name__}.")


def _infer_coded(step: Coded, v: ValueInfo) -> ValueInfo:
    graph = step.graph
    if step.conv is not None:
        conv = step.conv
        window = conv.in_channels * conv.kernel[0] * conv.kernel[1]
        if len(v.shape) != 3 or v.shape[0] != conv.in_channels or graph.num_inputs != window:
            raise ValueError(
                f"Convolution {step.name!r} reads {conv.in_channels} channels through a graph of "
                f"{graph.num_inputs} inputs; its input has shape {v.shape}."
            )
        _, h, w = v.shape
        oh, ow = conv.output_size(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"Convolution {step.name!r} has no output position on {v.shape}.")
        shape: tuple[int, ...] = (graph.num_outputs, oh, ow)
        lo_in, hi_in = min(v.lo, 0), max(v.hi, 0)  # zero padding enters the windows
    else:
        if int(np.prod(v.shape)) != graph.num_inputs:
            raise ValueError(
                f"Layer {step.name!r} reads {graph.num_inputs} features; its input has shape "
                f"{v.shape}."
            )
        shape = (graph.num_outputs,)
        lo_in, hi_in = v.lo, v.hi
    lo, hi = infer_ranges(graph, lo_in, hi_in)
    outs = graph.output_nodes
    m = int(step.scale_m)
    ends = [int(x) * m for x in (*lo[outs].tolist(), *hi[outs].tolist())]
    bias = step.bias_array() if step.bias_int is not None else np.zeros(1, dtype=np.int64)
    return ValueInfo(
        shape,
        step.exponent(v.e),
        v.divisor,
        min(ends) + int(min(bias.tolist())),
        max(ends) + int(max(bias.tolist())),
    )
