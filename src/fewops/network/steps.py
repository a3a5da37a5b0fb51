"""The typed steps of an integer network, and the one requantization rule.

A network is a list of named steps in execution order; each step reads earlier steps by name.
Every value is an integer array ``a`` (one sample: ``shape``; a batch adds a first axis) whose
real value is ``a * 2**e / divisor``. ``e`` and ``divisor`` are static (known without data, see
:func:`fewops.network.infer.infer_values`); the divisor is 1 except after a global sum pool, whose
1/P is not a power of two (the next coded layer reads the sum and its bias is scaled by P).

Values are rounded only at :class:`Requantize` steps (ReLU outputs, clamps, and the input of a
coded layer that is not already ``act_bits`` wide); everything else is exact. The simulator
(:mod:`fewops.network.simulate`), the Verilog generators (:mod:`fewops.hw.network`,
:mod:`fewops.hw.stream.network`) and the saved models (:mod:`fewops.network.store`) all read
these steps, and all requantize with :func:`requantize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewops.graph.graph import Graph


def requantize(a: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    """Round ``a * 2**-shift`` to the nearest integer (ties up) and clip it to [lo, hi].

    ``(a + 2**(shift-1)) >> shift`` with an arithmetic (floor) shift for ``shift > 0``;
    ``a << -shift`` (exact) otherwise. Works on int64 and Python-int (object) arrays alike.
    """
    a = exact_shift_ready(np.asarray(a), max(0, -shift) if shift <= 0 else 1)
    if shift > 0:
        if a.dtype != object and shift >= 62:
            a = a.astype(object)  # the rounding constant 2**(shift-1) needs Python ints
        q = (a + (1 << (shift - 1))) >> shift
    else:
        q = a << (-shift) if a.dtype != object else a * (1 << -shift)
    return np.clip(q, lo, hi)


def exact_shift_ready(a: np.ndarray, left: int) -> np.ndarray:
    """``a`` as Python ints (object) when shifting it left by ``left`` bits could leave int64
    (numpy would wrap around silently); else ``a`` itself."""
    if a.dtype == object or a.size == 0:
        return a
    peak = int(np.abs(a).max())
    if left >= 62 or (peak << left) >= 2**62:
        return a.astype(object)
    return a


def requantize_int(value: int, shift: int) -> int:
    """:func:`requantize` of one Python int, without clipping."""
    return (value + (1 << (shift - 1))) >> shift if shift > 0 else value << (-shift)


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """The range of a ``bits``-wide activation: signed two's complement or unsigned."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class ConvGeometry:
    """im2col geometry of a convolution: (height, width) pairs and the input channels."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    in_channels: int

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
        return (
            (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1,
        )


@dataclass(frozen=True)
class Input:
    """The network input: float x in [0, 1] becomes ``clip(floor(x * 2**frac + 0.5), 0,
    2**bits - 1)``, real value ``a * 2**-frac``."""

    name: str
    shape: tuple[int, ...]
    bits: int
    frac: int

    @property
    def sources(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, eq=False)
class Coded:
    """A coded Linear or Conv2d: ``t = graph(x) * scale_m + bias_int`` per output (per position
    for a convolution, whose inputs are its im2col windows in torch ``unfold`` order).

    ``bias`` is the float bias (zeros when the layer has none). ``bias_int`` is that bias on
    t's grid, exactly (Python ints), set by calibration because it depends on the input's
    exponent; real value of t: ``t * 2**e`` with ``e = scale_e - graph.output_scale + e_in``.
    """

    name: str
    src: str
    graph: Graph
    scale_m: int
    scale_e: int
    bias: np.ndarray
    conv: ConvGeometry | None = None
    bias_int: tuple[int, ...] | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)

    def exponent(self, e_in: int) -> int:
        return int(self.scale_e) - int(self.graph.output_scale) + int(e_in)

    def bias_array(self) -> np.ndarray:
        """``bias_int`` as int64 when it fits (it nearly always does), else Python ints."""
        if self.bias_int is None:
            raise ValueError(f"Layer {self.name!r} is not calibrated (no integer bias yet).")
        if all(-(2**62) < b < 2**62 for b in self.bias_int):
            return np.array(self.bias_int, dtype=np.int64)
        return np.array(self.bias_int, dtype=object)


@dataclass(frozen=True)
class Requantize:
    """Round to ``frac`` fraction bits and clip to [lo, hi] (the one rounding step).

    ``relu`` (lo = 0) marks a ReLU, ``cap`` a clamp's upper bound in real units (ReLU6: 6.0),
    already folded into ``hi``. ``frac`` is None until calibration picks it: the largest value
    seen on the calibration inputs must fit ``bits``.
    """

    name: str
    src: str
    bits: int
    signed: bool
    relu: bool = False
    cap: float | None = None
    frac: int | None = None
    lo: int | None = None
    hi: int | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class Add:
    """Residual sum: both sides shifted left to the finer exponent (exact)."""

    name: str
    a: str
    b: str

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.a, self.b)


@dataclass(frozen=True)
class MaxPool:
    """Max over k x k windows at stride s, no padding (exact)."""

    name: str
    src: str
    kernel: int
    stride: int

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class SumPool:
    """Global sum over all positions of each channel (a global average pool times P = H*W)."""

    name: str
    src: str

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C*H*W,) in C-major order, as torch.flatten(x, 1)."""

    name: str
    src: str

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class Reshape:
    """Any other reshape of one sample (same values, C order), e.g. (16,) -> (4, 4)."""

    name: str
    src: str
    shape: tuple[int, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class Pad:
    """Zero padding: (before, after) for each axis of one sample (exact)."""

    name: str
    src: str
    widths: tuple[tuple[int, int], ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True)
class Slice:
    """Strided slicing: (start, stop, step) for each axis of one sample (exact)."""

    name: str
    src: str
    index: tuple[tuple[int, int, int], ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.src,)


Step = Input | Coded | Requantize | Add | MaxPool | SumPool | Flatten | Reshape | Pad | Slice
STEP_TYPES = (Input, Coded, Requantize, Add, MaxPool, SumPool, Flatten, Reshape, Pad, Slice)
