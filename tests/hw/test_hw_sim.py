"""iverilog runs of emitted layers against the integer simulator (fewops.sim.evaluate)."""

import re
import shutil

import numpy as np
import pytest
from hw_graphs import CODES

from fewops.hw import (
    ModuleInfo,
    ToolNotFoundError,
    make_vectors,
    run_iverilog,
    run_verilator,
    simulate_graph,
    simulate_in_iverilog,
    write_testbench,
    write_verilog,
)
from fewops.hw import tools as hw_tools
from fewops.hw.tools import MIN_VERILATOR, verilator_version
from fewops.sim import evaluate


@pytest.mark.parametrize("code", CODES)
def test_coded_layer_matches_integer_simulator_on_1000_vectors(graphs, code):
    result = simulate_in_iverilog(graphs(code), count=1000, seed=1)
    assert (result.passed, result.failed) == (1000, 0), result.mismatches


@pytest.mark.parametrize("code", ["csd", "sst", "every"])
def test_assign_style_matches_too(graphs, code):
    """The synthesis form (one continuous wire per node): slower in iverilog, same values."""
    result = simulate_in_iverilog(graphs(code), count=1000, seed=3, style="assign")
    assert (result.passed, result.failed) == (1000, 0), result.mismatches


def test_every_node_kind_matches(graphs):
    result = simulate_in_iverilog(graphs("every"), count=1000, input_width=10)
    assert (result.passed, result.failed) == (1000, 0), result.mismatches


@pytest.mark.parametrize(("code", "every"), [("csd", 1), ("csd", 3), ("lcc", 2), ("every", 1)])
def test_pipelined_layer_matches_after_its_latency(graphs, code, every):
    result = simulate_in_iverilog(graphs(code), count=1000, pipeline_every=every, seed=2)
    assert (result.passed, result.failed) == (1000, 0), result.mismatches


@pytest.mark.parametrize("width", [2, 32])
def test_extreme_input_widths(graphs, width):
    result = simulate_in_iverilog(graphs("csd"), count=300, input_width=width)
    assert (result.passed, result.failed) == (300, 0), result.mismatches


def test_vectors_start_with_the_extremes():
    x = make_vectors(5, 1000, lo=-128, hi=127, seed=0)
    assert x.shape == (1000, 5) and x.min() == -128 and x.max() == 127
    assert (x[0] == -128).all() and (x[1] == 127).all()
    assert x[2].tolist() == [-128, 127, -128, 127, -128]
    assert x[3].tolist() == [127, -128, 127, -128, 127]
    assert (x[4] == 0).all()


def test_bench_catches_a_wrong_adder(tmp_path, graphs):
    """A bench must fail when the design is wrong: flip one adder into a subtractor."""
    g = graphs("csd")
    v_path, json_path = write_verilog(g, tmp_path)
    text = v_path.read_text()
    v_path.write_text(text.replace(" + ", " - ", 1))
    info = ModuleInfo.from_json(json_path)
    x = make_vectors(info.inputs, 200, lo=-128, hi=127)
    tb = write_testbench(info, x, evaluate(g, x), tmp_path)
    result = run_iverilog([v_path, tb], tb.stem, tmp_path)
    assert result.passed + result.failed == 200
    assert result.failed > 0 and not result.ok
    assert result.mismatches[0].startswith("MISMATCH vector ")


def test_expected_outputs_out_of_port_range_are_refused(tmp_path, graphs):
    g = graphs("csd")
    _, json_path = write_verilog(g, tmp_path)
    info = ModuleInfo.from_json(json_path)
    x = np.zeros((3, info.inputs), dtype=np.int64)
    y = np.zeros((3, info.outputs), dtype=np.int64)
    y[1, 2] = 1 << info.output_width
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected output range [0, 524288] does not fit signed 19-bit ports [-262144, 262143]."
        ),
    ):
        write_testbench(info, x, y, tmp_path)


def test_missing_iverilog_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(hw_tools.shutil, "which", lambda tool: None)
    msg = (
        "iverilog was not found on PATH; install it with `apt-get install iverilog` "
        "(Debian/Ubuntu package 'iverilog')."
    )
    with pytest.raises(ToolNotFoundError, match=re.escape(msg)):
        run_iverilog([tmp_path / "a.v"], "tb", tmp_path)


def test_old_verilator_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(hw_tools, "verilator_version", lambda: (4, 38))
    msg = (
        "verilator 4.038 is too old: the testbench needs verilator 5.0 or newer (--binary, "
        "--timing); install a newer one (`apt-get install verilator` on Debian 12 gives 5.006)."
    )
    with pytest.raises(ToolNotFoundError, match=re.escape(msg)):
        run_verilator([tmp_path / "a.v"], "tb", tmp_path)


@pytest.mark.slow
def test_verilator_when_new_enough(graphs):
    """Runs the bench in verilator where it is installed and new enough, else checks the error."""
    if shutil.which("verilator") is None:
        message = (
            "verilator was not found on PATH; install it with `apt-get install verilator` "
            "(Debian/Ubuntu package 'verilator')."
        )
        with pytest.raises(ToolNotFoundError, match=re.escape(message)):
            verilator_version()
        return
    if verilator_version() < MIN_VERILATOR:
        version = verilator_version()
        message = (
            f"verilator {version[0]}.{version[1]:03d} is too old: the testbench needs verilator "
            "5.0 or newer (--binary, --timing); install a newer one (`apt-get install verilator` "
            "on Debian 12 gives 5.006)."
        )
        with pytest.raises(ToolNotFoundError, match=re.escape(message)):
            simulate_graph(graphs("sst"), count=100, simulator="verilator")
        return
    result = simulate_graph(graphs("sst"), count=300, simulator="verilator", pipeline_every=2)
    assert (result.passed, result.failed) == (300, 0), result.mismatches
