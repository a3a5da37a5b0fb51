"""`fewops export --model DIR --stream`: the contract outside benches rely on, the bench with
stalls, refusals before any file is written, and place and route with an open tool."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from fewops.cli.main import main
from fewops.codes import csd
from fewops.data import load
from fewops.hw.emit import write_verilog
from fewops.hw.pnr import place_and_route
from fewops.io.coded_model import save_coded_model
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network

CONTRACT = (
    "module",
    "sources",
    "input_shape",
    "input_bits",
    "input_scale",
    "output_bits",
    "output_scale",
    "num_outputs",
    "latency_cycles",
    "ii_cycles",
)


def _saved_cnn(folder, conv=None):
    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        conv or nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 10),
    ).eval()
    compress_(model, CSDConfig(CSDCode(bits=5)))
    net = compile_network(model, data.x_train[:64])
    return save_coded_model(model, folder, method="csd", input_shape=(1, 8, 8), network=net), net


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return _saved_cnn(tmp_path_factory.mktemp("cnn") / "model")


def test_stream_export_writes_the_contract_and_its_bench_passes_with_stalls(
    saved, tmp_path, capsys
):
    folder, net = saved
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(folder), "--stream"]
    argv += ["--testbench", "6", "--simulate", "--data", "digits", "--stall-percent", "25"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "iverilog network: 6 images passed, 0 failed; cycle model matches" in text
    contract = json.loads((out / "network.json").read_text())
    assert set(CONTRACT) <= set(contract)
    assert contract["input_shape"] == [1, 8, 8] and contract["num_outputs"] == 10
    assert contract["input_scale"] == net.input.frac and contract["output_scale"] == -net.exponent
    assert contract["ii_cycles"] == 64  # one cycle per input pixel, padding included in none
    assert all((out / s).is_file() for s in contract["sources"])
    top = (out / "network.v").read_text()
    for port in ("clk", "rst_n", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready"):
        assert re.search(rf"\b{port}\b", top), port
    for port in ("m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast"):
        assert re.search(rf"\b{port}\b", top), port
    bench = json.loads((out / "export.json").read_text())["bench"]
    assert bench["passed"] == 6 and bench["failed"] == 0 and bench["cycle_model_matches"]


def test_every_unsupported_setting_is_listed_before_any_file_is_written(tmp_path, capsys):
    folder, _ = _saved_cnn(tmp_path / "m", conv=nn.Conv2d(1, 3, 3, padding=2, dilation=2))
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(folder), "--stream"]
    assert main([*argv, "--parallel", "2"]) == 2
    message = capsys.readouterr().err
    assert "The network cannot be streamed: " in message
    assert "dilation" in message and "parallel" in message
    assert not out.exists()


def test_stream_options_need_stream_and_a_model(saved, tmp_path, capsys):
    folder, _ = saved
    out = str(tmp_path / "v")
    assert main(["export", "--verilog", out, "--model", str(folder), "--pnr", "ecp5"]) == 2
    assert "--pnr only apply to --stream." in capsys.readouterr().err
    w = tmp_path / "w.npy"
    np.save(w, np.eye(3))
    assert main(["export", "--verilog", out, "--matrix", str(w), "--stream"]) == 2
    assert "--stream needs --model DIR" in capsys.readouterr().err


def test_place_and_route_reports_fmax_luts_and_no_multipliers(saved, tmp_path, capsys):
    folder, _ = saved
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(folder), "--stream"]
    assert main([*argv, "--pnr", "ecp5", "--pipeline-every", "2"]) == 0
    pnr = json.loads((out / "export.json").read_text())["pnr"]
    assert pnr["fmax_mhz"] > 10 and pnr["luts"] > 100 and pnr["ffs"] > 10
    assert pnr["multipliers"] == 0
    assert "nextpnr" in pnr["tools"]["nextpnr"] and "Yosys" in pnr["tools"]["yosys"]
    assert "ecp5 place and route network: fmax" in capsys.readouterr().out


def test_place_and_route_refuses_unknown_targets(tmp_path):
    with pytest.raises(ValueError, match=re.escape("targets are ['ecp5', 'ice40']; got 'xc7'")):
        place_and_route([], "top", tmp_path, target="xc7")


def test_a_small_layer_places_and_routes_on_ice40_inside_its_harness(tmp_path):
    graph = csd.encode(np.random.default_rng(0).standard_normal((4, 4)), 5).graph
    v_path, _ = write_verilog(graph, tmp_path / "v", name="small", pipeline_every=1)
    result = place_and_route([v_path], "small", tmp_path / "pnr", target="ice40")
    assert result.top == "small_harness" and result.fmax_mhz > 20
    assert result.luts > 50 and result.ffs >= result.harness_ffs > 32
    assert result.multipliers == 0 and result.utilization["SB_IO"] == 3
