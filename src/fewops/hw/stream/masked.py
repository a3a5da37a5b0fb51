"""A window generator that never spends a cycle on padding: one shift per real pixel.

The walk generator of :mod:`fewops.hw.stream.window` visits every padded position, so an image
of H x W pixels with padding P costs (H+2P) x (W+2P) cycles and the walk of an image waits for
its first pixel (a padded layer in the middle of a network then stalls its producer). This one
shifts ONLY real pixels into its register chain and reads windows that reach outside the image
with those elements forced to zero (edge masks), so an image costs H x W cycles, the pixel rate
of the stream. Same ports as the walk generator (``m_axis_tlast`` on an image's last window;
the network's inner streams count their beats instead and leave it open); element ``e = c*K*K + kh*K + kw`` of a window at
``m_axis_tdata[e*B +: B]`` and windows in output-position order: torch ``unfold`` order.

How it works. The pixels of an image are numbered (slots) 0 .. H*W-1 in arrival order; window
(oy, ox) needs its bottom-right element, slot ``e = (oy*S + K-1-P)*W + ox*S + K-1-P``, and is
emitted when that slot is shifted in, read from fixed taps (element (kh, kw) has age
``(K-1-kh)*W + K-1-kw``). An element outside the image (row or column out of range; a column
past the right edge is the next row's first pixel in the chain) is masked to zero by a constant
comparison on the window's row and column counters. The windows of the bottom padding rows have
slots past H*W - 1: these "tail" slots are filled by the next image's first pixels when they are
already there (images overlap, no cycle lost), else by bubbles, one per cycle, until the next
image begins; once it has begun, its pixels must stay contiguous, so the tail then waits for
them. With ``2P <= K-1`` the tail ends before the next image's first window (checked).
``m_axis_tdata``/``tvalid`` are registers and the chain pauses while the output register holds a
window the sink has not taken, so back-pressure loses nothing; see
:func:`fewops.hw.stream.cycles.masked_window_times` for the cycle model.
"""

from __future__ import annotations

from dataclasses import dataclass

from fewops.hw.emit import check_name
from fewops.hw.stream.window import counter_bits


def zext(name: str, bits: int, to: int) -> str:
    """``name`` (``bits`` wide) zero-extended to ``to`` bits, as a Verilog expression."""
    return name if to <= bits else f"{{{to - bits}'d0, {name}}}"


MAX_KERNEL = 7
MAX_SIZE = 4096


def _int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"The {what} must be an integer; got {value!r}.")
    if value < low:
        raise ValueError(f"The {what} must be at least {low}; got {value}.")
    return value


@dataclass(frozen=True)
class MaskedSpec:
    """Geometry of a masked window generator: image H x W x C of ``bits``-bit values (their
    signedness does not matter here), square kernel K, stride S, zero padding P."""

    height: int
    width: int
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    bits: int = 8

    def __post_init__(self) -> None:
        for what in ("height", "width", "channels", "kernel", "stride", "bits"):
            value = _int(getattr(self, what), what, 1)
            if what in ("height", "width") and value > MAX_SIZE:
                raise ValueError(f"The {what} must be at most {MAX_SIZE}; got {value}.")
        _int(self.padding, "padding", 0)
        problem = masked_problem(self.kernel, self.stride, self.padding, self.height, self.width)
        if problem:
            raise ValueError(problem)

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def window_size(self) -> int:
        return self.channels * self.kernel * self.kernel

    @property
    def pixel_bits(self) -> int:
        return self.channels * self.bits

    @property
    def chain_pixels(self) -> int:
        """Pixels held in the register chain: ``(K-1)*W + K-1``."""
        return (self.kernel - 1) * self.width + self.kernel - 1

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def emit_slot(self, oy: int, ox: int) -> int:
        """Slot whose shift emits window (oy, ox)."""
        lead = self.kernel - 1 - self.padding
        return (oy * self.stride + lead) * self.width + ox * self.stride + lead

    def emit_slots(self) -> list[int]:
        return [
            self.emit_slot(oy, ox) for oy in range(self.out_height) for ox in range(self.out_width)
        ]

    @property
    def tail(self) -> int:
        """Slots after the image's last pixel that the last windows still need."""
        return max(0, self.emit_slot(self.out_height - 1, self.out_width - 1) - self.pixels + 1)

    def row_range(self, kh: int) -> tuple[int, int]:
        """Window rows oy whose element row kh lies inside the image (first, last)."""
        return _inside(kh, self.stride, self.padding, self.height, self.out_height)

    def col_range(self, kw: int) -> tuple[int, int]:
        return _inside(kw, self.stride, self.padding, self.width, self.out_width)


def _inside(k: int, stride: int, padding: int, size: int, count: int) -> tuple[int, int]:
    first = max(0, -((k - padding) // stride))  # ceil((P - k) / S)
    last = min(count - 1, (size - 1 + padding - k) // stride)
    return first, last


def masked_problem(kernel: int, stride: int, padding: int, height: int, width: int) -> str:
    """Why this geometry cannot be streamed by the masked generator ('' when it can)."""
    if kernel > MAX_KERNEL:
        return f"kernel {kernel} is larger than {MAX_KERNEL}"
    if 2 * padding > kernel - 1:
        return (
            f"padding {padding} is more than (K-1)/2 for kernel {kernel} (the masked window "
            "generator needs 2P <= K-1)"
        )
    if (height + 2 * padding - kernel) < 0 or (width + 2 * padding - kernel) < 0:
        return (
            f"a {kernel}x{kernel} kernel with padding {padding} has no output position on a "
            f"{height}x{width} image"
        )
    return ""


def emit_masked_window(spec: MaskedSpec, name: str = "window") -> str:
    """Verilog text of the masked window generator ``name`` (ports: the module docstring)."""
    check_name(name)
    k, s, w = spec.kernel, spec.stride, spec.width
    hw, tail = spec.pixels, spec.tail
    frame = hw + tail
    oh, ow = spec.out_height, spec.out_width
    pw, b, chain = spec.pixel_bits, spec.bits, spec.chain_pixels
    ww = spec.window_size * b
    fb, yb, xb = counter_bits(frame), counter_bits(oh), counter_bits(ow)
    first = spec.emit_slot(0, 0)
    assert first >= tail, "2P <= K-1 keeps an image's tail before the next image's first window"
    row_step = s * w - (ow - 1) * s
    lines = [
        "`timescale 1ns/1ps",
        f"// Generated by fewops.hw.stream: masked {k}x{k} windows, stride {s}, zero padding "
        f"{spec.padding}, of a {spec.height}x{w}x{spec.channels} image of {b}-bit values; "
        f"{oh}x{ow} windows per image, {hw} cycles per image, tail {tail}.",
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
        f"  reg [{fb - 1}:0] slot;  // slot of the next shift in the frame of the image emitting",
        f"  reg [{fb - 1}:0] nxt;  // slot that emits window (oy, ox)",
        f"  reg [{yb - 1}:0] oy;",
        f"  reg [{xb - 1}:0] ox;",
    ]
    if chain:
        lines.append(f"  reg [{chain * pw - 1}:0] chain;  // pixel of age a+1 at [a*{pw} +: {pw}]")
    if tail:
        lb = counter_bits(tail + 1)
        lines += [
            f"  reg [{lb - 1}:0] lead;  // next image's pixels shifted during this tail",
            f"  wire in_tail = slot >= {fb}'d{hw};",
            f"  wire bubble_ok = in_tail && lead == {lb}'d0;",
        ]
    else:
        lines.append("  wire bubble_ok = 1'b0;")
    lines += [
        "  wire emit = slot == nxt;",
        "  wire out_free = !m_axis_tvalid || m_axis_tready;",
        "  wire adv = !emit || out_free;",
        "  assign s_axis_tready = adv;",
        "  wire take = s_axis_tvalid && adv;",
        "  wire go = adv && (s_axis_tvalid || bubble_ok);",
        f"  wire [{pw - 1}:0] pix = s_axis_tdata;  // a bubble shifts don't-care bits: masked",
    ]
    lines += _mask_lines(spec, yb, xb)
    lines.append(f"  wire [{ww - 1}:0] win = {{{', '.join(reversed(_taps(spec)))}}};")
    end_frame = f"slot == {fb}'d{frame - 1}"
    lines += [
        "  always @(posedge clk) begin",
        "    if (!rst_n) begin",
        f"      slot <= {fb}'d0;",
        f"      nxt <= {fb}'d{first};",
        f"      oy <= {yb}'d0;",
        f"      ox <= {xb}'d0;",
        "      m_axis_tvalid <= 1'b0;",
        "      m_axis_tlast <= 1'b0;",
    ]
    if tail:
        lines.append(f"      lead <= {counter_bits(tail + 1)}'d0;")
    lines += [
        "    end else begin",
        "      if (out_free) m_axis_tvalid <= 1'b0;",
        "      if (go) begin",
    ]
    if chain == 1:
        lines.append("        chain <= pix;")
    elif chain > 1:
        lines.append(f"        chain <= {{chain[{(chain - 1) * pw - 1}:0], pix}};")
    lines += [
        "        if (emit) begin",
        "          m_axis_tvalid <= 1'b1;",
        "          m_axis_tdata <= win;",
        f"          m_axis_tlast <= oy == {yb}'d{oh - 1} && ox == {xb}'d{ow - 1};",
        f"          if (ox == {xb}'d{ow - 1}) begin",
        f"            ox <= {xb}'d0;",
        f"            if (oy == {yb}'d{oh - 1}) begin",
        f"              oy <= {yb}'d0;",
        f"              nxt <= {fb}'d{first};",
        "            end else begin",
        f"              oy <= oy + {yb}'d1;",
        f"              nxt <= nxt + {fb}'d{row_step};",
        "            end",
        "          end else begin",
        f"            ox <= ox + {xb}'d1;",
        f"            nxt <= nxt + {fb}'d{s};",
        "          end",
        "        end",
    ]
    if tail:
        lb = counter_bits(tail + 1)
        lines += [
            f"        if ({end_frame}) begin",
            "          // The next image's pixels shifted in this tail are its first slots.",
            f"          slot <= {zext('lead', lb, fb)} + {zext('take', 1, fb)};",
            f"          lead <= {lb}'d0;",
            "        end else begin",
            f"          slot <= slot + {fb}'d1;",
            f"          if (in_tail && take) lead <= lead + {lb}'d1;",
            "        end",
        ]
    else:
        lines.append(f"        slot <= {end_frame} ? {fb}'d0 : slot + {fb}'d1;")
    lines += ["      end", "    end", "  end", "endmodule", ""]
    return "\n".join(lines)


def _mask_lines(spec: MaskedSpec, yb: int, xb: int) -> list[str]:
    """One wire per kernel row/column that can fall outside the image: 1 when inside."""
    lines = []
    for axis, count, var, bits, rng in (
        ("r", spec.out_height, "oy", yb, spec.row_range),
        ("c", spec.out_width, "ox", xb, spec.col_range),
    ):
        for k in range(spec.kernel):
            first, last = rng(k)
            terms = []
            if first > last:
                terms = ["1'b0"]
            else:
                if first > 0:
                    terms.append(f"{var} >= {bits}'d{first}")
                if last < count - 1:
                    terms.append(f"{var} <= {bits}'d{last}")
            if terms:
                lines.append(f"  wire {axis}ok{k} = {' && '.join(terms)};")
    return lines


def _masked(spec: MaskedSpec, kh: int, kw: int) -> list[str]:
    names = []
    for axis, k, count, rng in (
        ("r", kh, spec.out_height, spec.row_range),
        ("c", kw, spec.out_width, spec.col_range),
    ):
        first, last = rng(k)
        if first > 0 or last < count - 1 or first > last:
            names.append(f"{axis}ok{k}")
    return names


def _taps(spec: MaskedSpec) -> list[str]:
    """Verilog expression of every window element, element 0 first, masked at the edges."""
    k, b, pw, w = spec.kernel, spec.bits, spec.pixel_bits, spec.width
    taps = []
    for c in range(spec.channels):
        for kh in range(k):
            for kw in range(k):
                age = (k - 1 - kh) * w + (k - 1 - kw)
                src = (
                    f"pix[{c * b} +: {b}]"
                    if age == 0
                    else f"chain[{(age - 1) * pw + c * b} +: {b}]"
                )
                masks = _masked(spec, kh, kw)
                if masks:
                    cond = " && ".join(masks)
                    src = f"({src} & {{{b}{{{cond}}}}})"
                taps.append(src)
    return taps
