"""Rounded graphs in hardware: Verilog equals the simulator bit for bit; the export contract."""

import json
import re

import numpy as np
import pytest

from fewops.cli.main import main
from fewops.codes import csd
from fewops.codes.hardware import code_for_hardware, output_sqnr, uniform_inputs
from fewops.codes.lcc import decompose
from fewops.cost.bits import register_bits
from fewops.graph import Op
from fewops.graph.rounding import apply_drops, choose_drops
from fewops.hw import make_vectors, simulate_in_iverilog
from fewops.hw.verify import yosys_stats
from fewops.sim import evaluate


def rounded(code: str):
    w = np.random.default_rng(5).normal(size=(12, 16))
    g = csd.encode(w, 8).graph if code == "csd" else decompose(w, 35.0, workers=1).graph
    x = np.random.default_rng(6).integers(-128, 128, size=(5000, 16))
    power = float(((evaluate(g, x) * 2.0**-g.output_scale) ** 2).sum(axis=1).mean())
    r = apply_drops(g, choose_drops(g, power * 1e-4, 8))
    assert np.count_nonzero(r.op == Op.TRUNC) > 10
    return r


@pytest.mark.parametrize("code", ["csd", "lcc"])
def test_rounded_layer_equals_iverilog_on_10k_vectors(code):
    g = rounded(code)
    x = make_vectors(g.num_inputs, 10_000, lo=-128, hi=127, seed=7)
    assert (x[0] == -128).all() and (x[1] == 127).all()  # full-scale vectors first
    result = simulate_in_iverilog(g, x)
    assert (result.passed, result.failed) == (10_000, 0), result.mismatches


def test_pipelined_rounded_layer_and_its_flipflops():
    g = rounded("csd")
    result = simulate_in_iverilog(g, count=500, pipeline_every=2, seed=8)
    assert (result.passed, result.failed) == (500, 0), result.mismatches
    stats = yosys_stats(g, "generic", pipeline_every=2)
    # yosys may merge flip-flops that always hold equal or constant bits, never add any.
    assert 0 < stats.flipflops <= register_bits(g, 8, 2)


def test_export_contract_with_auto_code(tmp_path):
    w = np.random.default_rng(9).normal(size=(8, 10))
    w_path = tmp_path / "w.npy"
    np.save(w_path, w)
    out = tmp_path / "v"
    argv = ["export", "--verilog", str(out), "--matrix", str(w_path), "--code", "auto"]
    argv += ["--target-db", "30", "--input-width", "8", "--simulate", "--testbench", "2000"]
    assert main(argv) == 0
    info = json.loads((out / "layer.json").read_text())
    assert set(info) == {
        "module",
        "inputs",
        "input_width",
        "outputs",
        "output_width",
        "latency",
        "scale",
    }
    assert (info["inputs"], info["outputs"], info["input_width"]) == (10, 8, 8)
    # The same coding (deterministic) measured on fresh inputs through the declared scale.
    found = code_for_hardware(w, "auto", 30.0, input_width=8)
    assert found.scale == info["scale"]
    x = uniform_inputs(10, 50_000, 8, seed=1234)
    y = np.ldexp(np.asarray(evaluate(found.graph, x), dtype=np.float64), -info["scale"])
    ref = x @ w.T
    sqnr = 10 * np.log10((ref**2).sum() / ((y - ref) ** 2).sum())
    assert sqnr >= 30.0
    assert (
        abs(sqnr - output_sqnr(found.graph, found.graph.output_scale - found.scale, w, x)[0]) < 1e-9
    )


@pytest.mark.parametrize(
    ("w", "width", "target", "message"),
    [
        (
            np.array([[1.0, np.nan]]),
            8,
            40.0,
            "W has 1 non-finite entries (NaN or inf), first at [0, 1] = nan.",
        ),
        (np.ones((2, 2)), 0, 40.0, "Input width must be between 2 and 63 bits; got 0."),
        (np.ones((2, 2)), 64, 40.0, "Input width must be between 2 and 63 bits; got 64."),
        (np.ones((2, 2)), 8, 200.0, "The target SQNR must be between 0 and 150 dB; got 200.0."),
    ],
)
def test_bad_inputs_are_named(w, width, target, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        code_for_hardware(w, "csd", target, input_width=width)
