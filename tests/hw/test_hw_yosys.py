"""yosys: adder cells after `proc` equal the cost model's add count; LUT mapping works."""

import re

import pytest
from hw_graphs import CODES

from fewops.cost import count_graph
from fewops.cost.bits import adder_bits
from fewops.hw import (
    ToolNotFoundError,
    hardware_summary,
    run_yosys,
    write_verilog,
    yosys_stats,
)
from fewops.hw import tools as hw_tools


@pytest.mark.parametrize("code", CODES + ("every",))
def test_proc_adder_cells_equal_cost_model_adds(graphs, code):
    g = graphs(code)
    stats = yosys_stats(g, "proc")
    cost = count_graph(g)
    assert stats.adders == cost.adds
    assert stats.cells.get("$sub", 0) == cost.subs
    assert stats.cells.get("$mul", 0) == cost.mults


def test_pipelined_design_keeps_the_adders_and_adds_registers(graphs):
    g = graphs("csd")
    stats = yosys_stats(g, "proc", pipeline_every=2)
    assert stats.adders == count_graph(g).adds
    assert stats.cells.get("$dff", 0) > 0


@pytest.mark.slow
def test_xilinx_synthesis_reports_luts(tmp_path):
    import numpy as np

    from fewops.codes import csd

    g = csd.encode(np.array([[3.0, -5.0, 7.0], [1.0, 2.0, -6.0]]), 4).graph
    v_path, _ = write_verilog(g, tmp_path)
    stats = run_yosys(v_path, "layer", target="xilinx")
    assert stats.luts > 0 and stats.carries > 0
    assert stats.adders == 0  # mapped away


def test_unknown_target_is_refused(tmp_path):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown yosys target 'asic'; choose one of ('proc', 'generic', 'xilinx', 'xilinx-fast')."
        ),
    ):
        run_yosys(tmp_path / "a.v", "layer", target="asic")


def test_missing_yosys_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(hw_tools.shutil, "which", lambda tool: None)
    msg = "yosys was not found on PATH; install it with `apt-get install yosys` (Debian/Ubuntu package 'yosys')."
    with pytest.raises(ToolNotFoundError, match=re.escape(msg)):
        run_yosys(tmp_path / "a.v", "layer", target="proc")


def test_hardware_summary_for_reports(graphs, monkeypatch):
    g = graphs("sst")
    summary = hardware_summary(g)
    assert summary["yosys"] is True
    assert summary["yosys_add_sub"] == count_graph(g).adds
    assert summary["adder_bits"] == int(adder_bits(g).sum()) > 0
    monkeypatch.setattr(hw_tools.shutil, "which", lambda tool: None)
    missing = hardware_summary(g)
    assert missing["yosys"] is False and "apt-get install yosys" in missing["reason"]


@pytest.mark.slow
def test_fast_xilinx_flow_counts_what_the_full_flow_maps(tmp_path):
    """xilinx-fast stops after abc and maps $lut cells by count: the same cells as synth_xilinx."""
    import numpy as np

    from fewops.codes import csd

    w = np.random.default_rng(5).normal(size=(4, 5))
    v_path, _ = write_verilog(csd.encode(w, 7).graph, tmp_path)
    full = run_yosys(v_path, "layer", target="xilinx")
    fast = run_yosys(v_path, "layer", target="xilinx-fast")
    assert fast.cells == full.cells
    assert fast.luts == full.luts > 0


def test_luts_mapped_by_count():
    from fewops.hw.tools import map_luts_by_count

    cells = {"$lut": 10, "CARRY4": 3}
    out = map_luts_by_count(cells, [2, 1, 1, 1, 1, 1, 2, 1], inverters=1)
    assert out == {
        "CARRY4": 3,
        "INV": 1,
        "LUT1": 1,
        "LUT2": 1,
        "LUT3": 1,
        "LUT4": 1,
        "LUT5": 1,
        "LUT6": 1 + 2 * 2 + 4 * 1,
        "MUXF7": 2 + 2,
        "MUXF8": 1,
    }
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            "yosys reported 10 $lut cells but 8 by width ([1, 1, 1, 1, 1, 1, 1, 1]); cannot map them by count."
        ),
    ):
        map_luts_by_count(cells, [1] * 8, inverters=0)
