"""One-call checks of a graph's Verilog: simulate against the integer simulator, count cells."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fewops.cost.bits import adder_bits
from fewops.graph.graph import Graph
from fewops.hw.emit import ModuleInfo, check_input_width, write_verilog
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import (
    SimResult,
    ToolNotFoundError,
    YosysStats,
    run_iverilog,
    run_verilator,
    run_yosys,
)
from fewops.sim.evaluate import evaluate

SIMULATORS = ("iverilog", "verilator")


def simulate_graph(
    graph: Graph,
    vectors=None,
    *,
    input_width: int = 8,
    pipeline_every: int | None = None,
    count: int = 1000,
    seed: int = 0,
    workdir=None,
    simulator: str = "iverilog",
    name: str = "layer",
    style: str = "always",
) -> SimResult:
    """Emit ``graph``, simulate it on ``vectors`` and compare with :func:`fewops.sim.evaluate`.

    Without ``vectors``, ``count`` vectors over the full signed ``input_width``-bit range are
    drawn (extremes first, see :func:`fewops.hw.testbench.make_vectors`). ``workdir`` keeps the
    generated files (a new or empty directory); by default they go to a temporary one.
    ``style`` picks the Verilog form (see :func:`fewops.hw.emit.emit_module`): ``"always"``, the
    default here, simulates deep graphs far faster in iverilog than ``"assign"``; both carry the
    same expressions, and the tests simulate both.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Unknown simulator {simulator!r}; choose one of {SIMULATORS}.")
    input_width = check_input_width(input_width)
    top = 1 << (input_width - 1)
    if vectors is None:
        vectors = make_vectors(graph.num_inputs, count, lo=-top, hi=top - 1, seed=seed)
    vectors = np.asarray(vectors, dtype=np.int64)
    expected = evaluate(graph, vectors)
    with tempfile.TemporaryDirectory(prefix="fewops_hw_") as tmp:
        out = Path(workdir) if workdir is not None else Path(tmp)
        v_path, json_path = write_verilog(
            graph,
            out,
            name=name,
            input_width=input_width,
            pipeline_every=pipeline_every,
            style=style,
        )
        info = ModuleInfo.from_json(json_path)
        tb = write_testbench(info, vectors, expected, out)
        run = run_iverilog if simulator == "iverilog" else run_verilator
        return run([v_path, tb], tb.stem, out)


def simulate_in_iverilog(graph: Graph, vectors=None, **kwargs) -> SimResult:
    """:func:`simulate_graph` with iverilog (the simulator CI requires)."""
    return simulate_graph(graph, vectors, simulator="iverilog", **kwargs)


def yosys_stats(
    graph: Graph,
    target: str = "proc",
    *,
    input_width: int = 8,
    pipeline_every: int | None = None,
    name: str = "layer",
) -> YosysStats:
    """Emit ``graph`` into a temporary directory and count its cells with :func:`run_yosys`."""
    with tempfile.TemporaryDirectory(prefix="fewops_yosys_") as tmp:
        v_path, _ = write_verilog(
            graph, tmp, name=name, input_width=input_width, pipeline_every=pipeline_every
        )
        return run_yosys(v_path, name, target=target)


def hardware_summary(graph: Graph, input_width: int = 8, synth: bool = False) -> dict:
    """Figures a report can show beside a layer's cost: yosys adder cells (and LUTs).

    Always returns a dict: ``{"yosys": False, "reason": ...}`` when yosys is missing, else
    ``yosys_add_sub`` (cells after ``proc``), ``adder_bits`` and, with ``synth``, the
    ``synth_xilinx`` figures ``luts``, ``carry4`` and ``cells`` (slow on big layers).
    """
    try:
        proc = yosys_stats(graph, "proc", input_width=input_width)
    except ToolNotFoundError as exc:
        return {"yosys": False, "reason": str(exc)}
    out = {
        "yosys": True,
        "yosys_add_sub": proc.adders,
        # the one definition of full-adder bits (fewops.cost.bits), as in report.json
        "adder_bits": int(adder_bits(graph, input_width).sum()),
    }
    if synth:
        xil = yosys_stats(graph, "xilinx", input_width=input_width)
        out.update(luts=xil.luts, carry4=xil.carries, cells=xil.num_cells)
    return out
