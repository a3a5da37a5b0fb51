"""A line-buffer window generator in Verilog: pixels in, one K x K x C window per beat out.

Input: an AXI-Stream-style port of one pixel per beat, row-major over an H x W image, the C
channels packed (channel c signed at ``s_axis_tdata[c*B +: B]`` for ``B = input_bits``). Output: one
window per beat, element ``e = c*K*K + kh*K + kw`` (channel slowest, then kernel row, then kernel
column: the row order of ``torch.nn.functional.unfold``) signed at ``m_axis_tdata[e*B +: B]``;
windows come in row-major order of the output positions, as unfold's columns, and ``m_axis_tlast``
marks the last window of an image. ``rst_n`` is an active-low synchronous reset.

How it works: two counters walk the *padded* image, (H + 2P) x (W + 2P), one position per cycle.
A position inside the image takes one input beat (so ``s_axis_tready`` is high there); a padding
position takes none and shifts a zero in, except that the walk of an image starts only once the
source offers its first pixel (tvalid high; it is taken at position (P, P)), so nothing of an
image that has not begun is emitted. Every pixel, real or zero, is shifted into one register
chain of ``(K-1)*(W+2P) + K - 1`` pixels (the K-1 line buffers and the window registers of
hls4ml's LineBuffer, as one shift register); the window for the position just reached is read
from fixed taps of that chain plus the incoming pixel. A window is emitted at a position whose
row and column are both at least K-1 and on the stride grid; it goes into the output register
(``m_axis_tdata``/``tvalid``/``tlast`` are registers), and the walk pauses while that register holds
a window the sink has not taken. So nothing is lost or duplicated under any pattern of tvalid
gaps and tready back-pressure, and with no stalls the generator takes exactly one cycle per
padded position: see :mod:`fewops.hw.stream.cycles`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewops.hw.emit import check_input_width, check_name

KERNELS = (1, 3, 5)
MAX_SIZE = 4096
MAX_PADDING = 2


def _positive_int(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"The {what} must be an integer; got {value!r}.")
    if int(value) < low:
        raise ValueError(f"The {what} must be at least {low}; got {int(value)}.")
    return int(value)


@dataclass(frozen=True)
class WindowSpec:
    """Geometry of a window generator: image H x W x C, kernel K, stride S, zero padding P.

    ``input_bits`` is the width B of one signed channel value. The output positions are those of
    ``torch.nn.functional.unfold(x, K, padding=P, stride=S)``: ``out_h = (H + 2P - K) // S + 1``.
    """

    height: int
    width: int
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    input_bits: int = 8

    def __post_init__(self) -> None:
        for what in ("height", "width", "channels", "kernel", "stride"):
            value = _positive_int(getattr(self, what), what)
            if value > MAX_SIZE:
                raise ValueError(f"The {what} must be at most {MAX_SIZE}; got {value}.")
        _positive_int(self.padding, "padding", low=0)
        check_input_width(self.input_bits)
        if self.kernel not in KERNELS:
            raise ValueError(
                f"The window generator supports kernels {KERNELS}; got kernel {self.kernel}."
            )
        if self.padding > MAX_PADDING:
            raise ValueError(f"The padding must be at most {MAX_PADDING}; got {self.padding}.")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(
                f"A {self.kernel}x{self.kernel} kernel with stride {self.stride} and padding "
                f"{self.padding} has no output position on a {self.height}x{self.width} image."
            )

    @property
    def padded_height(self) -> int:
        return self.height + 2 * self.padding

    @property
    def padded_width(self) -> int:
        return self.width + 2 * self.padding

    @property
    def out_height(self) -> int:
        return (self.padded_height - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.padded_width - self.kernel) // self.stride + 1

    @property
    def window_size(self) -> int:
        """Values per window: ``C * K * K``."""
        return self.channels * self.kernel * self.kernel

    @property
    def pixel_bits(self) -> int:
        return self.channels * self.input_bits

    @property
    def window_bits(self) -> int:
        return self.window_size * self.input_bits

    @property
    def buffer_pixels(self) -> int:
        """Pixels held in the register chain: ``(K-1)*(W+2P) + K - 1``."""
        return (self.kernel - 1) * self.padded_width + self.kernel - 1

    @property
    def buffer_bits(self) -> int:
        return self.buffer_pixels * self.pixel_bits

    def window_positions(self) -> list[tuple[int, int]]:
        """(row, column) of the padded grid at which each window is emitted, in output order."""
        k, s = self.kernel, self.stride
        return [
            (k - 1 + oy * s, k - 1 + ox * s)
            for oy in range(self.out_height)
            for ox in range(self.out_width)
        ]


def counter_bits(n: int) -> int:
    """Bits of an unsigned counter that holds 0 .. n-1 (at least 1)."""
    return max(1, (max(n, 1) - 1).bit_length())


def _taps(spec: WindowSpec) -> list[str]:
    """Verilog expression of every window element, element 0 first."""
    k, b, pw = spec.kernel, spec.input_bits, spec.pixel_bits
    taps = []
    for c in range(spec.channels):
        for kh in range(k):
            for kw in range(k):
                age = (k - 1 - kh) * spec.padded_width + (k - 1 - kw)
                if age == 0:
                    taps.append(f"pix[{c * b} +: {b}]")
                else:
                    taps.append(f"chain[{(age - 1) * pw + c * b} +: {b}]")
    return taps


def emit_window(spec: WindowSpec, name: str = "window") -> str:
    """Verilog text of the window generator ``name`` for ``spec`` (ports: module docstring)."""
    check_name(name)
    k, s, p = spec.kernel, spec.stride, spec.padding
    hp, wp = spec.padded_height, spec.padded_width
    rb, cb, sb = counter_bits(hp), counter_bits(wp), counter_bits(s)
    pw, ww, chain = spec.pixel_bits, spec.window_bits, spec.buffer_pixels
    last_row, last_col = spec.window_positions()[-1]
    # Stride phase of row/column r: (r - (K-1)) mod S, zero on the stride grid.
    phase0 = (-(k - 1)) % s
    pad_terms = []
    if p:
        pad_terms = [
            f"row < {rb}'d{p}",
            f"row >= {rb}'d{spec.height + p}",
            f"col < {cb}'d{p}",
            f"col >= {cb}'d{spec.width + p}",
        ]
    emit_terms = []
    if k > 1:
        emit_terms += [f"row >= {rb}'d{k - 1}", f"col >= {cb}'d{k - 1}"]
    if s > 1:
        emit_terms += [f"prow == {sb}'d0", f"pcol == {sb}'d0"]
    pad_expr = " || ".join(pad_terms) if pad_terms else "1'b0"
    emit_expr = " && ".join(emit_terms) if emit_terms else "1'b1"
    taps = _taps(spec)
    lines = [
        "`timescale 1ns/1ps",
        f"// Generated by fewops.hw.stream: {k}x{k} windows, stride {s}, zero padding {p}, of a "
        f"{spec.height}x{spec.width}x{spec.channels} image, {spec.input_bits}-bit signed values.",
        f"// Window element e = c*{k * k} + kh*{k} + kw at m_axis_tdata[e*{spec.input_bits} +: "
        f"{spec.input_bits}] (torch unfold order); {spec.out_height}x{spec.out_width} windows "
        "per image.",
        f"module {name} (",
        "  input wire clk,",
        "  input wire rst_n,",
        f"  input wire [{pw - 1}:0] s_axis_tdata,",
        "  input wire s_axis_tvalid,",
        "  output wire s_axis_tready,",
        f"  output reg [{ww - 1}:0] m_axis_tdata,",
        "  output reg m_axis_tvalid,",
        "  input wire m_axis_tready,",
        "  output reg m_axis_tlast",
        ");",
        f"  reg [{rb - 1}:0] row;",
        f"  reg [{cb - 1}:0] col;",
        f"  reg [{sb - 1}:0] prow, pcol;",
    ]
    if chain:
        lines.append(f"  reg [{chain * pw - 1}:0] chain;  // pixel of age a+1 at [a*{pw} +: {pw}]")
    lines += [
        f"  wire pad = {pad_expr};",
        f"  wire emit = {emit_expr};",
        f"  wire last = row == {rb}'d{last_row} && col == {cb}'d{last_col};",
        "  wire out_free = !m_axis_tvalid || m_axis_tready;",
        f"  wire start = row == {rb}'d0 && col == {cb}'d0;  // an image begins with its first beat",
        "  wire go = (pad && !start || s_axis_tvalid) && (!emit || out_free);",
        "  assign s_axis_tready = !pad && (!emit || out_free);",
        f"  wire [{pw - 1}:0] pix = pad ? {pw}'d0 : s_axis_tdata;",
        f"  wire [{ww - 1}:0] win = {{{', '.join(reversed(taps))}}};",
        "  always @(posedge clk) begin",
        "    if (!rst_n) begin",
        f"      row <= {rb}'d0;",
        f"      col <= {cb}'d0;",
        f"      prow <= {sb}'d{phase0};",
        f"      pcol <= {sb}'d{phase0};",
        "      m_axis_tvalid <= 1'b0;",
        "      m_axis_tlast <= 1'b0;",
        "    end else begin",
        "      if (out_free) m_axis_tvalid <= 1'b0;",
        "      if (go) begin",
        "        if (emit) begin",
        "          m_axis_tvalid <= 1'b1;",
        "          m_axis_tdata <= win;",
        "          m_axis_tlast <= last;",
        "        end",
    ]
    if chain == 1:
        lines.append("        chain <= pix;")
    elif chain > 1:
        lines.append(f"        chain <= {{chain[{(chain - 1) * pw - 1}:0], pix}};")
    lines += [
        f"        if (col == {cb}'d{wp - 1}) begin",
        f"          col <= {cb}'d0;",
        f"          pcol <= {sb}'d{phase0};",
        f"          if (row == {rb}'d{hp - 1}) begin",
        f"            row <= {rb}'d0;",
        f"            prow <= {sb}'d{phase0};",
        "          end else begin",
        f"            row <= row + {rb}'d1;",
        f"            prow <= prow == {sb}'d{s - 1} ? {sb}'d0 : prow + {sb}'d1;",
        "          end",
        "        end else begin",
        f"          col <= col + {cb}'d1;",
        f"          pcol <= pcol == {sb}'d{s - 1} ? {sb}'d0 : pcol + {sb}'d1;",
        "        end",
        "      end",
        "    end",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)
