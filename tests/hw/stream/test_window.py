"""The line-buffer window generator yields exactly torch unfold's patches, with and without stalls."""

import itertools
import re

import numpy as np
import pytest
from stream_helpers import CLEAN_IMAGES, images, stream, unfold_windows

from fewops.hw.stream import WindowSpec, emit_window, window_timing

CASES = list(itertools.product((1, 3, 5), (1, 2), (0, 1, 2)))
H, W, C, BITS = 5, 6, 2, 4
IMAGES = 4


def run_window(tmp_path, spec, seed=0, corrupt=False):
    x = images(spec, IMAGES, seed)
    expected = unfold_windows(spec, x)
    if corrupt:
        expected[len(expected) // 2, 0] ^= 1
    src = tmp_path / "window.v"
    src.write_text(emit_window(spec, "window"))
    return stream(tmp_path, [src], "window", spec, x, expected, spec.input_bits), expected


@pytest.mark.parametrize(("kernel", "stride", "padding"), CASES)
def test_windows_equal_unfold_and_cycle_model(tmp_path, kernel, stride, padding):
    spec = WindowSpec(H, W, C, kernel, stride, padding, BITS)
    run, expected = run_window(tmp_path, spec, seed=kernel * 10 + stride + padding)
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == expected.shape[0] == IMAGES * spec.out_height * spec.out_width
    # Timing, measured on the clean images: image 0 is the model; image 1 follows ii later.
    per_in, per_out = H * W, spec.out_height * spec.out_width
    model = window_timing(spec)
    assert run.timing(0, per_in, per_out) == model
    first = run.timing(CLEAN_IMAGES - 1, per_in, per_out)
    assert first.first_input == model.first_input + model.ii
    assert first.last_output == model.last_output + model.ii
    assert model.ii == (H + 2 * padding) * (W + 2 * padding)
    # The stalled images really stalled: their last beat comes later than without stalls.
    assert run.output_cycles[-1] > model.last_output + (IMAGES - 1) * model.ii


def test_bench_catches_one_wrong_window(tmp_path):
    spec = WindowSpec(H, W, C, 3, 1, 1, BITS)
    run, _ = run_window(tmp_path, spec, corrupt=True)
    assert run.result.failed == 1
    assert run.result.passed == IMAGES * H * W - 1
    assert run.result.mismatches[0].startswith(f"MISMATCH beat {IMAGES * H * W // 2}:")


def test_geometry_and_buffer_size():
    spec = WindowSpec(28, 28, 3, 5, 2, 2, 8)
    assert (spec.out_height, spec.out_width) == (14, 14)
    assert spec.window_size == 75
    assert spec.buffer_bits == ((5 - 1) * 32 + 5 - 1) * 3 * 8
    assert len(spec.window_positions()) == 14 * 14
    assert window_timing(spec).ii == 32 * 32


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match=re.escape("supports kernels (1, 3, 5); got kernel 2.")):
        WindowSpec(8, 8, 1, 2)
    msg = "A 5x5 kernel with stride 1 and padding 0 has no output position on a 3x8 image."
    with pytest.raises(ValueError, match=re.escape(msg)):
        WindowSpec(3, 8, 1, 5)
    with pytest.raises(TypeError, match=re.escape("The stride must be an integer; got 1.5.")):
        WindowSpec(8, 8, 1, 3, 1.5)
    with pytest.raises(ValueError, match=re.escape("The padding must be at most 2; got 3.")):
        WindowSpec(8, 8, 1, 5, 1, 3)
    with pytest.raises(ValueError, match=re.escape("Module name '1x' is not a valid")):
        emit_window(WindowSpec(8, 8, 1, 3), "1x")


def test_unfold_reference_order():
    """The documented element order: e = c*K*K + kh*K + kw, positions row-major."""
    spec = WindowSpec(4, 4, 2, 3, 1, 0, 8)
    x = np.arange(32).reshape(1, 2, 4, 4)
    win = unfold_windows(spec, x)
    assert win.shape == (4, 18)
    assert win[1, 9 + 1 * 3 + 2] == x[0, 1, 1, 3]  # position (0, 1), c=1, kh=1, kw=2
