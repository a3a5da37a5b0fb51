"""The Verilog emitter: ports, sidecar, widths, pipelining, speed and its error messages."""

import dataclasses
import json
import math
import re
import time

import numpy as np
import pytest

from fewops.codes import csd
from fewops.graph.ops import Op
from fewops.graph.widths import infer_widths
from fewops.hw import emit_module, write_verilog


def test_sidecar_has_the_documented_keys_and_values(tmp_path, graphs):
    g = graphs("csd")
    v_path, json_path = write_verilog(g, tmp_path / "out", name="fc1", input_width=8)
    assert v_path == tmp_path / "out" / "fc1.v" and json_path == tmp_path / "out" / "fc1.json"
    data = json.loads(json_path.read_text())
    widths = infer_widths(g, 8)
    assert data == {
        "module": "fc1",
        "inputs": 16,
        "input_width": 8,
        "outputs": 12,
        "output_width": int(widths[g.output_nodes].max()),
        "latency": 0,
        "scale": g.output_scale,
    }
    text = v_path.read_text()
    assert text.startswith("`timescale 1ns/1ps\n")
    ow = data["output_width"]
    assert f"module fc1 (input wire [127:0] x, output wire [{12 * ow - 1}:0] y);" in text
    assert "  wire signed [7:0] n0 = x[0 +: 8];" in text
    assert f"  assign y[{11 * ow} +: {ow}] = " in text


def test_every_adder_is_one_operator_and_shifts_are_wiring(graphs):
    g = graphs("every")
    text, _ = emit_module(g)
    body = [line for line in text.splitlines() if line.startswith("  wire signed")]
    assert len(body) == g.num_nodes
    assert "<<" not in text and ">>" not in text
    ops = g.op
    plus = sum(line.count(" + ") for line in body)
    minus = sum(line.count(" - ") for line in body)
    assert plus == np.count_nonzero(ops == Op.ADD)
    assert minus == np.count_nonzero(ops == Op.SUB)


def test_widths_come_from_width_inference(graphs):
    g = graphs("lcc")
    text, _ = emit_module(g, input_width=6)
    widths = infer_widths(g, 6)
    declared = {
        int(m.group(2)): int(m.group(1)) + 1
        for m in re.finditer(r"wire signed \[(\d+):0\] n(\d+) =", text)
    }
    assert declared == {i: int(w) for i, w in enumerate(widths)}


@pytest.mark.parametrize("every", [1, 2, 3, 100])
def test_pipelined_latency_is_documented(graphs, every):
    g = graphs("csd")
    text, info = emit_module(g, pipeline_every=every)
    depth = int(g.adder_depth[g.output_nodes].max())
    assert info.latency == max(1, math.ceil(depth / every))
    assert "module layer (input wire clk, input wire [127:0] x," in text
    assert "always @(posedge clk) begin" in text


def test_hundred_thousand_nodes_emit_in_seconds(tmp_path):
    w = np.random.default_rng(1).normal(size=(400, 128))
    g = csd.encode(w, 8).graph
    assert g.num_nodes > 100_000
    t0 = time.perf_counter()
    v_path, _ = write_verilog(g, tmp_path / "big", pipeline_every=4)
    assert time.perf_counter() - t0 < 20.0
    assert v_path.stat().st_size > 1_000_000


@pytest.mark.parametrize("width", [1, 0, 65, -3])
def test_input_width_out_of_range_is_refused(tmp_path, graphs, width):
    msg = f"Input width must be between 2 and 64 bits; got {width}."
    with pytest.raises(ValueError, match=re.escape(msg)):
        write_verilog(graphs("csd"), tmp_path / "o", input_width=width)
    assert not (tmp_path / "o").exists()


def test_input_width_must_be_an_integer(tmp_path, graphs):
    with pytest.raises(
        TypeError, match=re.escape("Input width must be an integer number of bits; got 8.0.")
    ):
        write_verilog(graphs("csd"), tmp_path / "o", input_width=8.0)


def test_unsupported_node_kind_is_named(tmp_path, graphs):
    g = graphs("csd")
    op = g.op.copy()
    op[20] = 9
    bad = dataclasses.replace(g, op=op)  # bypasses validation, as a future node kind would
    msg = (
        "Cannot emit Verilog for node 20: unsupported node kind 9; the emitter handles input, "
        "const, shift, add, sub, neg, mul, output, trunc."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        write_verilog(bad, tmp_path / "o")


def test_existing_directory_with_other_files_is_refused_unless_overwrite(tmp_path, graphs):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    msg = (
        f"Output directory '{out}' already holds 1 other file(s) (first: 'notes.txt'); "
        "pass overwrite=True to write into it anyway."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        write_verilog(graphs("csd"), out)
    v_path, json_path = write_verilog(graphs("csd"), out, overwrite=True)
    assert v_path.exists() and json_path.exists() and (out / "notes.txt").read_text() == "mine"
    # An empty existing directory is fine.
    (tmp_path / "empty").mkdir()
    write_verilog(graphs("csd"), tmp_path / "empty")


def test_output_path_that_is_a_file_is_refused(tmp_path, graphs):
    f = tmp_path / "file.v"
    f.write_text("")
    with pytest.raises(
        ValueError, match=re.escape(f"Output path '{f}' exists and is not a directory.")
    ):
        write_verilog(graphs("csd"), f)


@pytest.mark.parametrize("name", ["1layer", "my-layer", "module", ""])
def test_bad_module_names_are_refused(tmp_path, graphs, name):
    message = (
        f"Module name {name!r} is not a valid Verilog identifier: use letters, digits and "
        "underscores, starting with a letter or underscore, and no reserved word."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        write_verilog(graphs("csd"), tmp_path / "o", name=name)


def test_pipeline_every_must_be_positive(tmp_path, graphs):
    with pytest.raises(
        ValueError, match=re.escape("pipeline_every must be at least 1 adder level; got 0.")
    ):
        write_verilog(graphs("csd"), tmp_path / "o", pipeline_every=0)
