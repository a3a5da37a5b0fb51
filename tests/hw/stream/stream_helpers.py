"""Shared pieces of the streaming-block tests: images, unfold references, one bench run."""

import numpy as np
import torch

from fewops.hw.stream import run_stream_bench, write_stream_bench

CLEAN_IMAGES = 2  # images 0 and 1 stream without stalls (timing), the rest with stalls
STALL_PERCENT = 30


def images(spec, count: int, seed: int) -> np.ndarray:
    """``count`` random signed images (count, C, H, W) spanning the full input range."""
    top = 1 << (spec.input_bits - 1)
    rng = np.random.default_rng(seed)
    x = rng.integers(-top, top, size=(count, spec.channels, spec.height, spec.width))
    x[0, 0, 0, 0], x[0, -1, -1, -1] = -top, top - 1
    return x


def pixels(x: np.ndarray) -> np.ndarray:
    """One row per input beat: row-major pixels, channels packed."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def unfold_windows(spec, x: np.ndarray) -> np.ndarray:
    """torch unfold's patches, one row per output position (row-major), unfold's row order."""
    pat = torch.nn.functional.unfold(
        torch.tensor(x, dtype=torch.float64), spec.kernel, padding=spec.padding, stride=spec.stride
    )
    return pat.permute(0, 2, 1).reshape(-1, spec.window_size).numpy().astype(np.int64)


def stream(tmp_path, sources, dut, spec, x, expected, output_bits, seed=3):
    """Run the bench: CLEAN_IMAGES clean images, then 30 % tvalid gaps and tready stalls."""
    per_image = spec.out_height * spec.out_width
    write_stream_bench(
        tmp_path,
        dut,
        pixels(x),
        spec.input_bits,
        expected,
        output_bits,
        per_image=per_image,
        clean_inputs=CLEAN_IMAGES * spec.height * spec.width,
        clean_outputs=CLEAN_IMAGES * per_image,
        input_gap=STALL_PERCENT,
        output_stall=STALL_PERCENT,
        seed=seed,
    )
    return run_stream_bench(sources, tmp_path)
