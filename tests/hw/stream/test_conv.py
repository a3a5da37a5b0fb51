"""A streamed CSD-coded conv layer equals fewops.sim.evaluate on unfold's patches, bit for bit."""

import re
import subprocess

import numpy as np
import pytest
from stream_helpers import CLEAN_IMAGES, images, stream, unfold_windows

from fewops.codes import csd
from fewops.codes.lcc import decompose
from fewops.hw.stream import WindowSpec, conv_timing, emit_conv
from fewops.hw.tools import require_tool
from fewops.sim import evaluate

H, W, C, BITS, OUT = 5, 6, 2, 4, 3
IMAGES = 4
# (kernel, stride, padding, pipeline_every): combinational and pipelined kernels.
CASES = [(3, 1, 1, None), (5, 2, 2, 1), (3, 2, 0, 2), (1, 1, 0, None)]


def conv_weights(spec, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(OUT, spec.window_size))


def run_conv(tmp_path, spec, graph, pipeline_every, reference_graph=None):
    x = images(spec, IMAGES, seed=spec.kernel + spec.stride)
    expected = evaluate(reference_graph or graph, unfold_windows(spec, x))
    text, info = emit_conv(graph, spec, "conv", pipeline_every, style="always")
    src = tmp_path / "conv.v"
    src.write_text(text)
    return stream(tmp_path, [src], "conv", spec, x, expected, info.output_bits), info


@pytest.mark.parametrize(("kernel", "stride", "padding", "pipeline_every"), CASES)
def test_streamed_conv_equals_simulator(tmp_path, kernel, stride, padding, pipeline_every):
    spec = WindowSpec(H, W, C, kernel, stride, padding, BITS)
    graph = csd.encode(conv_weights(spec, kernel), 6).graph
    run, info = run_conv(tmp_path, spec, graph, pipeline_every)
    per_out = spec.out_height * spec.out_width
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == IMAGES * per_out
    assert (info.kernel.latency > 0) == (pipeline_every is not None)
    assert info.fifo_depth == info.kernel.latency + 2
    model = conv_timing(spec, info.kernel.latency)
    assert info.timing == model
    assert run.timing(0, H * W, per_out) == model
    second = run.timing(CLEAN_IMAGES - 1, H * W, per_out)
    assert (second.first_output, second.last_output) == (
        model.first_output + model.ii,
        model.last_output + model.ii,
    )
    # The stalled images really stalled: their last beat comes later than without stalls.
    assert run.output_cycles[-1] > model.last_output + (IMAGES - 1) * model.ii


def test_streamed_lcc_conv_equals_simulator(tmp_path):
    spec = WindowSpec(H, W, C, 3, 1, 1, BITS)
    graph = decompose(conv_weights(spec, 7), 30.0, algorithm="dmp", workers=1).graph
    run, info = run_conv(tmp_path, spec, graph, 3)
    assert info.kernel.latency >= 1
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == IMAGES * H * W
    assert run.timing(0, H * W, H * W) == conv_timing(spec, info.kernel.latency)


def test_one_changed_weight_fails_the_bench(tmp_path):
    spec = WindowSpec(H, W, C, 3, 1, 1, BITS)
    w = conv_weights(spec, 3)
    good = csd.encode(w, 6).graph
    w_bad = w.copy()
    w_bad[1, 4] += 1.0
    bad = csd.encode(w_bad, 6).graph
    run, _ = run_conv(tmp_path, spec, bad, None, reference_graph=good)
    assert run.result.failed > 0
    assert run.result.mismatches[0].startswith("MISMATCH beat ")


def test_kernel_must_match_the_window():
    spec = WindowSpec(H, W, C, 3, 1, 1, BITS)
    graph = csd.encode(np.ones((OUT, 9)), 4).graph
    msg = "The kernel graph has 9 inputs but a 3x3 window of 2 channels has 18 values."
    with pytest.raises(ValueError, match=re.escape(msg)):
        emit_conv(graph, spec)
    with pytest.raises(TypeError, match=re.escape("emit_conv needs a fewops Graph; got list.")):
        emit_conv([], spec)
    with pytest.raises(ValueError, match=re.escape("The kernel latency must be at least 0")):
        conv_timing(spec, -1)


def test_stream_logic_is_lint_clean(tmp_path):
    """verilator -Wall finds nothing in the window generator and the layer around the kernel.

    The emitted kernel (fewops.hw.emit, linted elsewhere) is replaced by a stub of its ports.
    """
    spec = WindowSpec(H, W, C, 5, 2, 2, BITS)
    graph = csd.encode(conv_weights(spec, 5), 6).graph
    text, info = emit_conv(graph, spec, "conv", 2)
    yw = info.kernel.outputs * info.kernel.output_width
    start = text.index("module conv_kernel")
    stop = text.index("endmodule", start) + len("endmodule")
    stub = (
        f"module conv_kernel (input wire clk, input wire [{spec.window_bits - 1}:0] x, "
        f"output wire [{yw - 1}:0] y);\n  assign y = {{{yw}{{^x ^ clk}}}};\nendmodule"
    )
    src = tmp_path / "conv.v"
    src.write_text(text[:start] + stub + text[stop:])
    cmd = [require_tool("verilator"), "--lint-only", "-Wall", "-Wno-DECLFILENAME"]
    log = subprocess.run([*cmd, "--top-module", "conv", str(src)], capture_output=True, text=True)
    assert log.returncode == 0 and "%Warning" not in log.stderr, log.stderr
