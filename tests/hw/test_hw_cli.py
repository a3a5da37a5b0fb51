"""`fewops export --verilog DIR`: from a saved graph or a matrix, with bench, iverilog and yosys."""

import json

import numpy as np
import pytest

from fewops.cli.main import main
from fewops.codes import csd
from fewops.cost import count_graph
from fewops.graph.io import load_graph, save_graph


def test_export_matrix_simulate_and_count(tmp_path, capsys):
    w_path = tmp_path / "w.npy"
    np.save(w_path, np.random.default_rng(0).normal(size=(6, 8)))
    out = tmp_path / "v"
    argv = [
        "export",
        "--verilog",
        str(out),
        "--matrix",
        str(w_path),
        "--code",
        "csd",
        "--bits",
        "6",
        "--testbench",
        "300",
        "--simulate",
        "--yosys",
        "proc",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    adds = count_graph(csd.encode(np.load(w_path), 6).graph).adds
    assert "iverilog: 300 passed, 0 failed" in text
    assert f"{adds} adds" in text
    cells = json.loads(text.split("yosys proc: ")[1].splitlines()[0])
    assert cells.get("$add", 0) + cells.get("$sub", 0) == adds
    assert sorted(p.name for p in out.iterdir()) == [
        "layer.json",
        "layer.v",
        "layer_x.hex",
        "layer_y.hex",
        "tb_layer.v",
        "tb_layer.vvp",
    ]


@pytest.mark.parametrize(
    ("extra", "always_block"),
    [([], True), (["--yosys", "proc"], False), (["--style", "assign"], False)],
)
def test_simulated_exports_default_to_the_style_iverilog_runs_fastest(
    tmp_path, extra, always_block
):
    w_path = tmp_path / "w.npy"
    np.save(w_path, np.random.default_rng(0).normal(size=(4, 4)))
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--matrix", str(w_path), "--code", "csd"]
    assert main([*argv, "--bits", "5", "--testbench", "20", "--simulate", *extra]) == 0
    assert ("always @*" in (out / "layer.v").read_text()) is always_block


def test_export_saved_graph_refuses_a_used_folder(tmp_path, capsys):
    g = csd.encode(np.random.default_rng(1).normal(size=(4, 5)), 5).graph
    path = save_graph(g, tmp_path / "g.npz")
    assert np.array_equal(load_graph(path).op, g.op)
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export", "--verilog", str(out), "--graph", str(path)]) == 2
    assert "pass overwrite=True" in capsys.readouterr().err
    argv = [
        "export",
        "--verilog",
        str(out),
        "--graph",
        str(path),
        "--overwrite",
        "--pipeline-every",
        "2",
        "--name",
        "fc",
    ]
    assert main(argv) == 0
    assert json.loads((out / "fc.json").read_text())["latency"] >= 1


def test_export_into_a_relative_folder_simulates(tmp_path, capsys, monkeypatch):
    # The simulator runs inside the output folder: a relative folder must not be doubled.
    monkeypatch.chdir(tmp_path)
    g = csd.encode(np.random.default_rng(2).normal(size=(3, 4)), 5).graph
    save_graph(g, tmp_path / "g.npz")
    argv = ["export", "--verilog", "rel", "--graph", "g.npz", "--testbench", "50", "--simulate"]
    assert main(argv) == 0
    assert "iverilog: 50 passed, 0 failed" in capsys.readouterr().out
