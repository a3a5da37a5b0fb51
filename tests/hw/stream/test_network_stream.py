"""A streamed coded CNN equals Network.run logit for logit, with stalls; its cycle model is exact."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from network_helpers import coded_network, images

from fewops.hw.stream import write_stream_bench
from fewops.hw.stream.bench import run_stream_bench
from fewops.hw.stream.cycles import masked_window_times
from fewops.hw.stream.masked import MaskedSpec, emit_masked_window
from fewops.hw.stream.network import emit_stream_network
from fewops.hw.stream.network_bench import run_network_bench
from fewops.network.network import Network
from fewops.network.steps import Add, ConvGeometry

STALL_PERCENT = 30
CLEAN = 2  # images 0 and 1 stream back to back without stalls (the cycle model's case)


def check_run(run, count: int) -> None:
    """Every logit right, nothing lost or extra, clean images on the modelled cycle, stalls
    really stalled."""
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == count == len(run.output_cycles)
    assert run.clean_cycles_match, (run.output_cycles, run.modelled)
    assert run.latencies[0] == run.info.latency_cycles
    assert run.output_cycles[1] - run.output_cycles[0] == run.info.ii_cycles == run.info.pixels
    # The last image's input had gaps (the one after the clean ones still streams clean).
    assert count > CLEAN + 1
    assert run.output_cycles[-1] > run.modelled[-1]


@pytest.mark.parametrize(
    ("model", "method", "pipeline_every"),
    [
        ("lenet-like", "csd", None),
        ("lenet-like", "csd", 2),
        ("lenet-like", "lcc", 1),
        ("strided-gap", "csd", None),
    ],
)
def test_streamed_network_equals_simulator(tmp_path, model, method, pipeline_every):
    net = coded_network(model, method)
    x = images(net, 5)
    run = run_network_bench(
        net,
        x,
        tmp_path,
        pipeline_every=pipeline_every,
        clean_images=CLEAN,
        stall_percent=STALL_PERCENT,
        seed=11,
    )
    check_run(run, 5)
    kernels = [layer for layer in run.info.contract["layers"] if layer["kind"] == "kernel"]
    assert all((k["kernel_latency"] > 0) == (pipeline_every is not None) for k in kernels)


def test_mnist_cnn(tmp_path):
    net = coded_network("mnist-cnn", "csd", (1, 7, 7))
    run = run_network_bench(
        net, images(net, 4), tmp_path, pipeline_every=2, clean_images=CLEAN, stall_percent=20
    )
    check_run(run, 4)


@pytest.mark.slow
def test_lenet5_28x28(tmp_path):
    """The real LeNet-5 (conv1 padded by 2): II is the 784 input pixels, not the 32x32 walk."""
    net = coded_network("lenet5", "csd", (1, 28, 28))
    run = run_network_bench(net, images(net, 4), tmp_path, clean_images=CLEAN, stall_percent=20)
    check_run(run, 4)
    assert run.info.ii_cycles == 784
    assert run.info.latency_cycles == 853


def test_an_image_alone_is_flushed_by_bubbles(tmp_path):
    """With nothing after it, an image's last windows come from bubbles, one per cycle: it
    finishes sooner than inside a stream, exactly when the model says."""
    net = coded_network("strided-gap", "csd")
    run = run_network_bench(net, images(net, 1), tmp_path, clean_images=1)
    assert run.result.ok, run.result.mismatches
    assert run.output_cycles[0] == run.info.contract["latency_alone_cycles"] == 146
    assert run.info.latency_cycles == 150


def test_one_wrong_logit_fails_the_bench(tmp_path):
    net = coded_network("lenet-like", "csd")
    run = run_network_bench(net, images(net, 5), tmp_path, corrupt=(3, 4), stall_percent=20)
    assert run.result.failed == 1
    assert run.result.passed == 4
    assert run.result.mismatches[0].startswith("MISMATCH beat 3:")


def test_verilator_agrees(tmp_path):
    net = coded_network("lenet-like", "csd")
    run = run_network_bench(
        net, images(net, 4), tmp_path, clean_images=CLEAN, stall_percent=25, simulator="verilator"
    )
    check_run(run, 4)


def test_contract_files_and_ports(tmp_path):
    net = coded_network("strided-gap", "csd")
    info = emit_stream_network(net, tmp_path / "out", name="cnn_top", pipeline_every=3)
    data = json.loads((tmp_path / "out" / "network.json").read_text())
    assert data == info.contract
    assert data["module"] == "cnn_top"
    assert data["sources"][-1] == "cnn_top.v"
    assert all((tmp_path / "out" / s).is_file() for s in data["sources"])
    assert data["input_shape"] == [2, 11, 10]
    assert (data["input_bits"], data["input_scale"]) == (net.input.bits, net.input.frac)
    assert data["output_scale"] == -net.exponent
    assert data["output_divisor"] == net.divisor == 30
    assert data["num_outputs"] == 10
    assert (data["parallel"], data["pipeline_every"]) == (1, 3)
    assert data["ii_cycles"] == 110
    assert data["latency_alone_cycles"] <= data["latency_cycles"]
    layers = data["layers"]
    assert [layer["kind"] for layer in layers][:2] == ["window", "kernel"]
    assert layers[-1]["timing"]["first_output"] == data["latency_cycles"]
    assert all(layer["timing"]["ii"] == 110 for layer in layers)
    top = (tmp_path / "out" / "cnn_top.v").read_text()
    nout = 10 * data["output_bits"]
    for port in (
        "input wire clk",
        "input wire rst_n",
        "input wire [15:0] s_axis_tdata",
        "input wire s_axis_tvalid",
        "output wire s_axis_tready",
        "input wire s_axis_tlast",
        f"output wire [{nout - 1}:0] m_axis_tdata",
        "output wire m_axis_tvalid",
        "input wire m_axis_tready",
        "output wire m_axis_tlast",
    ):
        assert port in top


def test_unsupported_steps_are_refused_in_one_error(tmp_path):
    net = coded_network("lenet-like", "csd")
    steps = list(net.steps)
    first = steps[1]
    assert first.conv is not None
    steps[1] = replace(first, conv=replace(first.conv, dilation=(2, 2)))
    second = steps[4]
    steps[4] = replace(second, conv=ConvGeometry((3, 1), (1, 1), (0, 0), (1, 1), 4))
    steps.append(Add("res", net.output, net.output))
    bad = Network(tuple(steps), net.act_bits, "res")
    out = tmp_path / "never"
    with pytest.raises(ValueError) as err:
        emit_stream_network(bad, out, parallel=2)
    msg = str(err.value)
    assert msg.startswith("The network cannot be streamed: parallel=2: only 1 is built")
    assert "step '0' (Coded): dilation (2, 2) is not 1" in msg
    assert "step '3' (Coded): kernel (3, 1) is not square" in msg
    assert "step 'res' (Add): Add is not streamed yet" in msg
    assert msg.endswith(".")
    assert not out.exists()


@pytest.mark.parametrize(
    ("height", "width", "kernel", "stride", "padding"),
    [
        (5, 6, 3, 1, 1),
        (5, 6, 5, 2, 2),
        (6, 6, 2, 2, 0),
        (5, 5, 2, 2, 0),
        (7, 5, 3, 2, 1),
        (4, 4, 1, 1, 0),
    ],
)
def test_masked_window_equals_unfold(tmp_path, height, width, kernel, stride, padding):
    """Windows equal torch unfold's patches under stalls; the clean ones come when modelled."""
    spec = MaskedSpec(height, width, 2, kernel, stride, padding, 4)
    x = np.random.default_rng(kernel * 7 + stride).integers(-8, 8, (4, 2, height, width))
    pat = torch.nn.functional.unfold(
        torch.tensor(x, dtype=torch.float64), kernel, padding=padding, stride=stride
    )
    expected = pat.permute(0, 2, 1).reshape(-1, spec.window_size).numpy().astype(np.int64)
    src = tmp_path / "w.v"
    src.write_text(emit_masked_window(spec, "window"))
    per = spec.out_height * spec.out_width
    write_stream_bench(
        tmp_path,
        "window",
        x.transpose(0, 2, 3, 1).reshape(-1, 2),
        4,
        expected,
        4,
        per_image=per,
        clean_inputs=3 * spec.pixels,
        clean_outputs=2 * per,
        input_gap=STALL_PERCENT,
        output_stall=STALL_PERCENT,
        seed=5,
    )
    run = run_stream_bench([src], tmp_path)
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == 4 * per
    model = masked_window_times(spec, np.arange(4 * spec.pixels))
    assert np.array_equal(run.output_cycles[: 2 * per], model[: 2 * per])
    assert model[per] - model[0] == spec.pixels


def test_masked_geometry_is_checked():
    with pytest.raises(ValueError, match=re.escape("padding 2 is more than (K-1)/2 for kernel 3")):
        MaskedSpec(8, 8, 1, 3, 1, 2)
    with pytest.raises(TypeError, match=re.escape("The stride must be an integer; got 1.5.")):
        MaskedSpec(8, 8, 1, 3, 1.5)
