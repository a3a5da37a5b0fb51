"""Stream images through a streamed network top and compare every logit with ``Network.run``.

:func:`run_network_bench` emits the top (or takes one already emitted), writes the
self-checking AXI-Stream bench of :mod:`fewops.hw.stream.bench` with the integers of
``net.quantize_input(x)`` as input beats and ``net.run(x)`` as the expected output beats (one beat
per image), and simulates it with iverilog or verilator. The first ``clean_images`` images stream
back to back without stalls (their cycles are the cycle model's, to the cycle); the rest with
``stall_percent`` % tvalid gaps and tready stalls from fixed seeds. The bench fails on a wrong or
missing logit, a beat too many, a wrong tlast, data that changes while stalled, or a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewops.hw.stream.bench import parse_beats, write_stream_bench
from fewops.hw.stream.network import StreamNetworkInfo, emit_stream_network, network_timing
from fewops.hw.tools import SimResult, run_iverilog, run_verilator
from fewops.network.network import Network

SIMULATORS = ("iverilog", "verilator")


@dataclass(frozen=True)
class NetworkBenchRun:
    """A network bench's outcome: the result, the cycle of every beat, the expected logits and
    the modelled output cycles of back-to-back images with no stalls."""

    result: SimResult
    info: StreamNetworkInfo
    input_cycles: np.ndarray
    output_cycles: np.ndarray
    expected: np.ndarray
    modelled: np.ndarray
    clean_images: int

    @property
    def latencies(self) -> np.ndarray:
        """Measured cycles from each image's first input beat to its output beat."""
        n = len(self.output_cycles)
        firsts = self.input_cycles[:: self.info.pixels][:n]
        return self.output_cycles - firsts

    @property
    def clean_cycles_match(self) -> bool:
        """The clean images' output beats came exactly when the cycle model says."""
        k = self.clean_images
        return bool(np.array_equal(self.output_cycles[:k], self.modelled[:k]))


def pixel_beats(net: Network, x: np.ndarray) -> np.ndarray:
    """One row per input beat: the quantized pixels of ``x`` (N, C, H, W), row-major, channels
    packed (an (N, K) input is N images of one K-channel pixel)."""
    q = np.asarray(net.quantize_input(x)).astype(np.int64)
    if q.ndim == 2:
        return q
    return q.transpose(0, 2, 3, 1).reshape(-1, q.shape[1])


def run_network_bench(
    net: Network,
    x: np.ndarray,
    workdir,
    *,
    info: StreamNetworkInfo | None = None,
    pipeline_every: int | None = None,
    clean_images: int = 2,
    stall_percent: int = 0,
    seed: int = 1,
    simulator: str = "iverilog",
    corrupt: tuple[int, int] | None = None,
    timeout: float = 600,
) -> NetworkBenchRun:
    """Simulate ``x`` (N float images in [0, 1]) through the top of ``net``.

    The top is emitted (kernels in the "always" style, fastest in iverilog) into
    ``workdir/rtl`` unless ``info`` names one already written. ``corrupt=(image, logit)`` adds 1
    to that expected logit, so a correct top must fail the bench (the mutation check).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Unknown simulator {simulator!r}; choose one of {SIMULATORS}.")
    workdir = Path(workdir)
    if info is None:
        info = emit_stream_network(
            net, workdir / "rtl", pipeline_every=pipeline_every, style="always"
        )
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if not 0 <= clean_images <= n:
        raise ValueError(
            f"clean_images must be between 0 and {n} (the images); got {clean_images}."
        )
    beats = pixel_beats(net, x)
    expected = np.asarray(net.run(x))
    if corrupt is not None:
        expected = expected.copy()
        expected[corrupt] += 1
    # The images after the clean ones start clean too: an image's last windows may wait for
    # the next images' first pixels (``lookahead_pixels``, more than one image in a deep
    # network of small images), and those must arrive as the model says.
    ahead = max(info.pixels, info.lookahead_pixels)
    clean_in = min(n * info.pixels, clean_images * info.pixels + ahead) if clean_images else 0
    write_stream_bench(
        workdir,
        info.module,
        beats,
        info.input_bits,
        expected,
        info.output_bits,
        per_image=1,
        clean_inputs=clean_in,
        clean_outputs=clean_images,
        input_gap=stall_percent,
        output_stall=stall_percent,
        seed=seed,
        input_signed=False,
    )
    run = run_iverilog if simulator == "iverilog" else run_verilator
    result = run([*info.paths, workdir / "tb.v"], "tb", workdir, timeout=timeout)
    return NetworkBenchRun(
        result=result,
        info=info,
        input_cycles=parse_beats(result.log, "IN"),
        output_cycles=parse_beats(result.log, "OUT"),
        expected=expected,
        modelled=network_timing(info, n),
        clean_images=clean_images,
    )
