"""Hardware: Verilog for shift-add graphs and whole networks, testbenches, HDL tool runners."""

from fewops.hw.emit import ModuleInfo, emit_module, write_verilog
from fewops.hw.network import (
    HwLayer,
    HwNetwork,
    from_network,
    simulate_network,
    simulate_network_verilog,
    write_network_verilog,
)
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import (
    SimResult,
    ToolNotFoundError,
    YosysStats,
    run_iverilog,
    run_verilator,
    run_yosys,
)
from fewops.hw.verify import (
    hardware_summary,
    simulate_graph,
    simulate_in_iverilog,
    yosys_stats,
)

__all__ = [
    "HwLayer",
    "HwNetwork",
    "ModuleInfo",
    "SimResult",
    "ToolNotFoundError",
    "YosysStats",
    "emit_module",
    "from_network",
    "hardware_summary",
    "make_vectors",
    "run_iverilog",
    "run_verilator",
    "run_yosys",
    "simulate_graph",
    "simulate_in_iverilog",
    "simulate_network",
    "simulate_network_verilog",
    "write_network_verilog",
    "write_testbench",
    "write_verilog",
    "yosys_stats",
]
