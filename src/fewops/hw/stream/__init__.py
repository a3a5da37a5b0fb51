"""Streaming hardware blocks for CNNs: line-buffer window generator, streamed conv layer, cycles.

Independent of any network representation: a block is built from a :class:`WindowSpec` and (for
a conv layer) the layer's shift-add graph in im2col form. See docs/hardware.md, "Streaming
blocks".
"""

from fewops.hw.stream.bench import BenchRun, run_stream_bench, write_stream_bench
from fewops.hw.stream.conv import ConvInfo, emit_conv
from fewops.hw.stream.cycles import StreamTiming, conv_timing, window_timing
from fewops.hw.stream.window import WindowSpec, emit_window

__all__ = [
    "BenchRun",
    "ConvInfo",
    "StreamTiming",
    "WindowSpec",
    "conv_timing",
    "emit_conv",
    "emit_window",
    "run_stream_bench",
    "window_timing",
    "write_stream_bench",
]
