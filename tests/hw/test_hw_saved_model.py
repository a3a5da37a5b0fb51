"""A compressed digits MLP saved (safetensors + JSON), loaded, exported and simulated in iverilog."""

import json
import pickle

import numpy as np
import pytest
import torch
from hw_graphs import train_full_batch
from torch import nn

from fewops.cli.main import main
from fewops.data import load
from fewops.hw.testbench import pack_hex
from fewops.io.coded_model import load_coded_model, save_coded_model
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network
from fewops.report.hardware import hardware_figures


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 64-16-10 MLP on digits, CSD-coded, calibrated, saved; (data, model, net, folder)."""
    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    train_full_batch(model, data, steps=80)
    compress_(model, CSDConfig(CSDCode(bits=5)))
    net = compile_network(model, data.x_train[:512])
    folder = tmp_path_factory.mktemp("run") / "model"
    save_coded_model(model, folder, method="csd", input_shape=data.input_shape, network=net)
    return data, model, net, folder


def test_saved_model_round_trips_without_pickle(saved, monkeypatch):
    data, model, net, folder = saved

    def refuse(*args, **kwargs):
        raise AssertionError("loading a coded model must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    back = load_coded_model(folder.parent)  # the compress output folder works too
    assert back.method == "csd" and back.input_shape == (1, 8, 8)
    for (name, a), (name_b, b) in zip(
        [(n, m) for n, m in model.named_modules() if hasattr(m, "coded")], back.layers, strict=True
    ):
        assert name == name_b
        for key in ("op", "a", "b", "sa", "sb", "const"):
            assert np.array_equal(getattr(a.coded.graph, key), getattr(b.coded.graph, key))
        assert torch.equal(a.bias, b.bias) and torch.equal(a.weight, b.weight)
    rebuilt = back.integer_network()
    assert np.array_equal(rebuilt.run(data.x_test), net.run(data.x_test))
    with torch.no_grad():
        x = torch.as_tensor(data.x_test[:50])
        assert torch.equal(back.model(x), model.eval()(x))


def test_exported_mlp_simulates_to_the_integer_simulators_logits(saved, tmp_path, capsys):
    data, _, net, folder = saved
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(folder), "--testbench", "360"]
    argv += ["--simulate", "--data", "digits", "--style", "always"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "iverilog layer_1: 360 passed, 0 failed" in text
    assert "iverilog layer_3: 360 passed, 0 failed" in text
    assert "iverilog mlp: 360 passed, 0 failed" in text
    # The bench's expected outputs are the integer simulator's logits of the original network.
    logits = net.run(data.x_test)
    top = json.loads((out / "mlp.json").read_text())
    assert top["inputs"] == 64 and top["outputs"] == 10 and top["input_signed"] is False
    assert (out / "mlp_y.hex").read_text().split() == pack_hex(logits, top["output_width"])
    manifest = json.loads((out / "export.json").read_text())
    assert [layer["module"] for layer in manifest["layers"]] == ["layer_1", "layer_3"]
    assert manifest["network"]["passed"] is True


def test_model_without_its_network_exports_layers_only(saved, tmp_path, capsys):
    _, model, _, _ = saved
    folder = save_coded_model(model, tmp_path / "m", method="csd", input_shape=(1, 8, 8))
    out = tmp_path / "v"
    assert main(["export", "--verilog", str(out), "--model", str(folder)]) == 0
    assert "saved without its integer network" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.v")) == ["layer_1.v", "layer_3.v"]
    assert "skipped" in json.loads((out / "export.json").read_text())["network"]


def _copy(folder, dest):
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_json", "lacks model.json"),
        ("no_tensors", "lacks tensors.safetensors"),
        ("bad_json", "model.json is corrupt or unreadable"),
        ("bad_format", "is not a fewops coded model"),
        ("truncated", "tensors.safetensors is corrupt or unreadable"),
        ("missing_tensor", "lacks the tensor '3/sa'"),
    ],
)
def test_damaged_model_files_are_clear_errors(saved, tmp_path, capsys, damage, message):
    folder = _copy(saved[3], tmp_path / "m")
    structure, tensors = folder / "model.json", folder / "tensors.safetensors"
    if damage == "no_json":
        structure.unlink()
    elif damage == "no_tensors":
        tensors.unlink()
    elif damage == "bad_json":
        structure.write_text("{not json")
    elif damage == "bad_format":
        structure.write_text(json.dumps({"format": "something-else"}))
    elif damage == "truncated":
        tensors.write_bytes(tensors.read_bytes()[:100])
    else:
        from safetensors.numpy import load_file, save_file

        arrays = load_file(str(tensors))
        del arrays["3/sa"]
        save_file(arrays, str(tensors))
    assert main(["export", "--verilog", str(tmp_path / "v"), "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(folder) in err
    assert not (tmp_path / "v").exists()  # nothing written on a bad model


def test_missing_model_folder(tmp_path, capsys):
    assert main(["export", "--verilog", str(tmp_path / "v"), "--model", str(tmp_path / "no")]) == 2
    assert f"No saved model folder at {tmp_path / 'no'}" in capsys.readouterr().err


def test_report_hardware_figures(saved, monkeypatch):
    _, model, _, _ = saved
    figures = hardware_figures(model)
    assert figures["yosys"] is True and figures["matches_cost_adds"] is True
    assert [layer["name"] for layer in figures["layers"]] == ["1", "3"]
    assert all(la["yosys_add_sub"] == la["cost_adds"] > 0 for la in figures["layers"])
    from fewops.hw import tools as hw_tools

    monkeypatch.setattr(hw_tools.shutil, "which", lambda tool: None)
    missing = hardware_figures(model)
    assert missing["yosys"] is False and "apt-get install yosys" in missing["reason"]


def test_lcc_save_graph_then_export(tmp_path, capsys):
    w_path, g_path, out = tmp_path / "w.npy", tmp_path / "g.npz", tmp_path / "v"
    np.save(w_path, np.random.default_rng(2).normal(size=(8, 12)))
    argv = ["lcc", str(w_path), "--target-db", "25", "--algorithm", "dmp", "--workers", "1"]
    assert main([*argv, "--no-progress", "--save-graph", str(g_path)]) == 0
    argv = ["export", "--verilog", str(out), "--graph", str(g_path), "--testbench", "300"]
    assert main([*argv, "--simulate", "--style", "always"]) == 0
    assert "iverilog: 300 passed, 0 failed" in capsys.readouterr().out


def test_corrupt_graph_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "g.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["export", "--verilog", str(tmp_path / "v"), "--graph", str(bad)]) == 2
    assert f"Graph file {bad} is corrupt or not an .npz of graph arrays" in capsys.readouterr().err


@pytest.mark.slow
def test_compress_saves_the_model_and_export_reads_it(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["compress", "--method", "csd", "--model", "mlp", "--data", "digits"]
    assert main([*argv, "--hidden", "16", "--float-epochs", "3", "--out", str(run), "--quiet"]) == 0
    assert sorted(p.name for p in (run / "model").iterdir()) == [
        "model.json",
        "network.json",
        "network.safetensors",
        "tensors.safetensors",
    ]
    report = json.loads((run / "report.json").read_text())
    for entry in report["methods"]:
        assert entry["hardware"]["yosys"] is True, entry["method"]
        assert entry["hardware"]["matches_cost_adds"] is True
        assert entry["hardware"]["yosys_add_sub"] == entry["totals"]["adds"]
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(run), "--data", "digits"]
    assert main([*argv, "--testbench", "100", "--simulate", "--style", "always"]) == 0
    assert "iverilog mlp: 100 passed, 0 failed" in capsys.readouterr().out


def test_missing_simulator_is_reported_by_the_cli(saved, tmp_path, capsys, monkeypatch):
    from fewops.hw import tools as hw_tools

    monkeypatch.setattr(hw_tools.shutil, "which", lambda tool: None)
    argv = ["export", "--verilog", str(tmp_path / "v"), "--model", str(saved[3]), "--simulate"]
    assert main(argv) == 2
    assert "iverilog was not found on PATH; install it with `apt-get install iverilog`" in (
        capsys.readouterr().err
    )


def test_convolutional_model_exports_its_layers_and_says_why_no_top(tmp_path, capsys):
    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 10)
    )
    compress_(model, CSDConfig(CSDCode(bits=4)))
    net = compile_network(model, data.x_train[:50])
    folder = save_coded_model(
        model, tmp_path / "m", method="csd", input_shape=(1, 8, 8), network=net
    )
    back = load_coded_model(folder)
    assert np.array_equal(back.integer_network().run(data.x_test[:40]), net.run(data.x_test[:40]))
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--model", str(folder), "--testbench", "50"]
    assert main([*argv, "--simulate", "--style", "always"]) == 0
    text = capsys.readouterr().out
    assert "iverilog layer_0: 50 passed, 0 failed" in text
    assert "no network top module: Step '0' (convolution) is not supported by the MLP top" in text
