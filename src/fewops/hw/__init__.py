"""Hardware: Verilog for shift-add graphs and whole networks, testbenches, HDL tool runners."""

from fewops.hw.emit import ModuleInfo, emit_module, write_verilog
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import (
    SimResult,
    ToolNotFoundError,
    YosysStats,
    run_iverilog,
    run_verilator,
    run_yosys,
)
from fewops.hw.verify import simulate_graph, simulate_in_iverilog, yosys_stats

__all__ = [
    "ModuleInfo",
    "SimResult",
    "ToolNotFoundError",
    "YosysStats",
    "emit_module",
    "make_vectors",
    "run_iverilog",
    "run_verilator",
    "run_yosys",
    "simulate_graph",
    "simulate_in_iverilog",
    "write_testbench",
    "write_verilog",
    "yosys_stats",
]
