"""Streaming hardware for CNNs: window generators, streamed conv layer, cycles, whole networks.

The blocks (window generators, conv layer, bench) are independent of any network
representation: a block is built from a :class:`WindowSpec` (or :class:`MaskedSpec`) and (for a
conv layer) the layer's shift-add graph in im2col form. :func:`emit_stream_network` builds the
streaming top of a whole :class:`fewops.network.Network`, residual networks included (forks,
Adds with sized shortcut FIFOs, slices: :mod:`fewops.hw.stream.residual`), and
:func:`run_network_bench` checks it against ``Network.run``. See docs/hardware.md, "Streaming blocks".
"""

from fewops.hw.stream.bench import BenchRun, run_stream_bench, write_stream_bench
from fewops.hw.stream.conv import ConvInfo, emit_conv
from fewops.hw.stream.cycles import StreamTiming, conv_timing, masked_window_times, window_timing
from fewops.hw.stream.masked import MaskedSpec, emit_masked_window
from fewops.hw.stream.network import StreamNetworkInfo, emit_stream_network, network_timing
from fewops.hw.stream.network_bench import NetworkBenchRun, run_network_bench
from fewops.hw.stream.window import WindowSpec, emit_window

__all__ = [
    "BenchRun",
    "ConvInfo",
    "MaskedSpec",
    "NetworkBenchRun",
    "StreamNetworkInfo",
    "StreamTiming",
    "WindowSpec",
    "conv_timing",
    "emit_conv",
    "emit_masked_window",
    "emit_stream_network",
    "emit_window",
    "masked_window_times",
    "network_timing",
    "run_network_bench",
    "run_stream_bench",
    "window_timing",
    "write_stream_bench",
]
