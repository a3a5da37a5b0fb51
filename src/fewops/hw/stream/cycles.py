"""Exact cycle model of the streaming blocks when the source never pauses and the sink never stalls.

Cycle 0 is the first clock cycle with ``rst_n`` high; a beat "at cycle t" is a handshake
(tvalid and tready both high) sampled at the rising edge that ends cycle t. The window generator
walks the padded image one position per cycle, so padded position ``q = r*(W+2P) + c`` of image n
is processed at cycle ``n*II + q`` with ``II = (H+2P)*(W+2P)``: a real pixel is accepted at that
cycle, and the window emitted there leaves the output register one cycle later. The conv layer
adds its kernel's latency L (0 when combinational) and one output register (its FIFO), so its
outputs come ``L + 1`` cycles after the windows. The testbench of :mod:`fewops.hw.stream.bench`
measures all of these numbers; the tests require equality to the cycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fewops.hw.stream.window import WindowSpec


@dataclass(frozen=True)
class StreamTiming:
    """Cycles of image 0 (image n: add ``n * ii``).

    ``first_input``/``last_input``: cycles of its first and last input beats; ``first_output``/
    ``last_output``: of its first and last output beats; ``latency_first`` and ``latency_last``:
    from the first input beat to the first and to the last output beat; ``ii``: cycles per image
    when images stream back to back.
    """

    first_input: int
    last_input: int
    first_output: int
    last_output: int
    ii: int

    @property
    def latency_first(self) -> int:
        return self.first_output - self.first_input

    @property
    def latency_last(self) -> int:
        return self.last_output - self.first_input

    def to_dict(self) -> dict:
        data = asdict(self)
        data["latency_first"] = self.latency_first
        data["latency_last"] = self.latency_last
        return data


def window_timing(spec: WindowSpec) -> StreamTiming:
    """Timing of the window generator alone (:func:`fewops.hw.stream.window.emit_window`)."""
    p, wp = spec.padding, spec.padded_width
    positions = spec.window_positions()
    (r0, c0), (r1, c1) = positions[0], positions[-1]
    return StreamTiming(
        first_input=p * wp + p,
        last_input=(p + spec.height - 1) * wp + p + spec.width - 1,
        first_output=r0 * wp + c0 + 1,
        last_output=r1 * wp + c1 + 1,
        ii=spec.padded_height * wp,
    )


def conv_timing(spec: WindowSpec, kernel_latency: int = 0) -> StreamTiming:
    """Timing of the streamed conv layer whose kernel has ``kernel_latency`` register stages."""
    if isinstance(kernel_latency, bool) or not isinstance(kernel_latency, int):
        raise TypeError(f"The kernel latency must be an integer; got {kernel_latency!r}.")
    if kernel_latency < 0:
        raise ValueError(f"The kernel latency must be at least 0 cycles; got {kernel_latency}.")
    win = window_timing(spec)
    extra = kernel_latency + 1
    return StreamTiming(
        first_input=win.first_input,
        last_input=win.last_input,
        first_output=win.first_output + extra,
        last_output=win.last_output + extra,
        ii=win.ii,
    )


# -- streamed networks ----------------------------------------------------------------------------
#
# A streamed network (:mod:`fewops.hw.stream.network`) is a chain of stages, each of which takes
# a beat whenever one is offered as long as its sink keeps up (true with no stalls), so the cycle
# of every beat follows from the cycles of the beats before it, stage by stage. Input beat k of a
# back-to-back stream is taken at cycle k.


def masked_window_times(spec, arrivals: np.ndarray) -> np.ndarray:
    """Cycle at which each window of the masked window generator is offered (its output register
    turns valid), for input beats offered at ``arrivals`` (increasing; N whole images) and a sink
    that never stalls. Mirrors :func:`fewops.hw.stream.masked.emit_masked_window`: one shift per
    cycle while a pixel is offered, or a bubble while an image's tail waits and the next image has
    not begun."""
    arrivals = np.asarray(arrivals, dtype=np.int64)
    hw, frame = spec.pixels, spec.pixels + spec.tail
    emits = spec.emit_slots()
    out: list[int] = []
    t = int(arrivals[0]) if arrivals.size else 0
    p = slot = lead = k = 0
    n = int(arrivals.size)
    while True:
        valid = p < n and arrivals[p] <= t
        bubble_ok = slot >= hw and lead == 0
        if not valid and not bubble_ok:
            if p >= n:
                break
            t = int(arrivals[p])
            continue
        if slot == emits[k]:
            out.append(t + 1)
            k = (k + 1) % len(emits)
        if slot == frame - 1:
            # The next image's pixels shifted during the tail are its first slots.
            slot, lead = (lead + valid if spec.tail else 0), 0
        else:
            if slot >= hw and valid:
                lead += 1
            slot += 1
        p += valid
        t += 1
    return np.asarray(out, dtype=np.int64)


def collect_times(arrivals: np.ndarray, per_image: int, delay: int = 1) -> np.ndarray:
    """One beat per image, ``delay`` cycles after the image's last input beat."""
    arrivals = np.asarray(arrivals, dtype=np.int64)
    return arrivals[per_image - 1 :: per_image] + delay


def stage_timing(
    inputs: np.ndarray, outputs: np.ndarray, in_per_image: int, out_per_image: int
) -> StreamTiming:
    """:class:`StreamTiming` of image 0 from a stage's beat cycles (ii: image 1 to image 2 when
    more than three images were modelled, else image 0 to image 1: the last image of a stream
    is not the steady state)."""
    n = len(outputs) // out_per_image
    a = 1 if n > 3 else 0
    return StreamTiming(
        first_input=int(inputs[0]),
        last_input=int(inputs[in_per_image - 1]),
        first_output=int(outputs[0]),
        last_output=int(outputs[out_per_image - 1]),
        ii=int(outputs[(a + 1) * out_per_image] - outputs[a * out_per_image]) if n > 1 else 0,
    )
