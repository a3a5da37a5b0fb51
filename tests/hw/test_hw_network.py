"""A whole MLP as one Verilog top module, simulated against the integer network simulator."""

import re

import numpy as np
import pytest
import torch
from hw_graphs import train_full_batch
from torch import nn

from fewops.codes import csd
from fewops.data import load
from fewops.hw.network import (
    HwLayer,
    HwNetwork,
    from_network,
    simulate_network,
    simulate_network_verilog,
    write_network_verilog,
)
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network


@pytest.fixture(scope="module")
def digits_mlp():
    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 10)
    )
    train_full_batch(model, data, steps=120)
    compress_(model, CSDConfig(CSDCode(bits=5)))
    net = compile_network(model, data.x_train[:300])
    return data, net


def test_network_rule_matches_the_integer_simulator(digits_mlp):
    data, net = digits_mlp
    hw = from_network(net)
    x_int = net.quantize_input(data.x_test).reshape(len(data.x_test), -1).astype(np.int64)
    assert np.array_equal(simulate_network(hw, x_int), net.run(data.x_test))


def test_mlp_on_real_test_images_gives_the_integer_simulators_outputs(digits_mlp):
    data, net = digits_mlp
    hw = from_network(net)
    x_int = net.quantize_input(data.x_test).reshape(len(data.x_test), -1).astype(np.int64)
    logits = net.run(data.x_test)
    assert (logits.argmax(1) == data.y_test).mean() > 0.8
    result = simulate_network_verilog(hw, x_int, expected=logits)
    assert (result.passed, result.failed) == (len(x_int), 0), result.mismatches


def test_pipelined_mlp_matches(digits_mlp):
    data, net = digits_mlp
    hw = from_network(net)
    x_int = net.quantize_input(data.x_test[:200]).reshape(200, -1).astype(np.int64)
    result = simulate_network_verilog(
        hw, x_int, expected=net.run(data.x_test[:200]), pipeline_every=2
    )
    assert (result.passed, result.failed) == (200, 0), result.mismatches


def small_network(signed_hidden: bool, shift: int) -> HwNetwork:
    rng = np.random.default_rng(4)
    g1 = csd.encode(rng.normal(size=(6, 5)), 5).graph
    g2 = csd.encode(rng.normal(size=(3, 6)), 5).graph
    layers = (
        HwLayer(
            g1,
            scale_m=3,
            bias_int=rng.integers(-200, 200, 6),
            requant_shift=shift,
            relu=not signed_hidden,
        ),
        HwLayer(g2, scale_m=-7, bias_int=np.array([5, -9, 100]), requant_shift=0, relu=False),
    )
    return HwNetwork(layers, act_bits=6, input_signed=False, output_scale=3)


@pytest.mark.parametrize(
    ("signed_hidden", "shift", "style"),
    [(False, 7, "always"), (True, 5, "assign"), (True, -1, "always"), (False, 0, "assign")],
)
def test_hand_built_network_every_requantization_branch(signed_hidden, shift, style):
    net = small_network(signed_hidden, shift)
    result = simulate_network_verilog(net, count=600, style=style)
    assert (result.passed, result.failed) == (600, 0), result.mismatches


def test_network_sidecar(tmp_path):
    net = small_network(False, 7)
    _, json_path = write_network_verilog(net, tmp_path / "o", name="tiny")
    import json

    data = json.loads(json_path.read_text())
    assert data["module"] == "tiny" and data["inputs"] == 5 and data["input_width"] == 6
    assert data["outputs"] == 3 and data["latency"] == 0 and data["scale"] == 3
    assert data["input_signed"] is False
    assert [layer["module"] for layer in data["layers"]] == ["tiny_layer0", "tiny_layer1"]


def test_mismatched_layers_are_refused():
    g = csd.encode(np.ones((3, 4)), 4).graph
    with pytest.raises(
        ValueError, match=re.escape("Layer 0 has 3 outputs but layer 1 has 4 inputs.")
    ):
        HwNetwork((HwLayer(g), HwLayer(g)))


def test_convolutions_are_refused():
    data = load("digits", seed=0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))
    compress_(model, CSDConfig(CSDCode(bits=5)))
    net = compile_network(model, data.x_train[:50])
    msg = (
        "Step '0' (convolution) is not supported by the MLP top: it covers fully connected coded "
        "layers, their requantization (ReLU or not) and Flatten (export a CNN with --stream)."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        from_network(net)
