"""Yosys figures for report.json: per coded layer, the $add/$sub cells yosys elaborates.

``fewops compress`` calls :func:`add_hardware_figures` on its entries. With yosys installed each
entry gains ``"hardware"``: the cells after ``hierarchy; proc`` (no optimisation) per layer, the
summed adder widths, and whether yosys' count equals the cost model's adds. Without yosys the
entry says so, with the install hint, instead of silently carrying nothing. Only elaboration runs
here (seconds); LUT counts need ``synth_xilinx`` and are left to ``fewops export --yosys`` and
``benchmarks/hardware.py``.
"""

from __future__ import annotations

from tqdm import tqdm

from fewops.cost import count_graph
from fewops.cost.bits import adder_bits
from fewops.hw.tools import ToolNotFoundError, require_tool
from fewops.hw.verify import yosys_stats
from fewops.nn.api import coded_layers

INPUT_WIDTH = 8
# Elaboration is linear but not free: past this many graph nodes per method, layers are listed
# as skipped rather than making `compress` on a large network wait for yosys.
MAX_NODES = 200_000


def hardware_figures(model, *, input_width: int = INPUT_WIDTH, max_nodes: int = MAX_NODES) -> dict:
    """Yosys figures of every coded layer of ``model`` (see the module docstring)."""
    try:
        require_tool("yosys")
    except ToolNotFoundError as exc:
        return {"yosys": False, "reason": str(exc)}
    layers, budget = [], max_nodes
    total_yosys = total_cost = 0
    complete = True
    for name, module in coded_layers(model):
        graph = module.coded.graph
        adds = count_graph(graph).adds
        if graph.num_nodes > budget:
            layers.append({"name": name, "skipped": f"over the {max_nodes}-node budget"})
            complete = False
            continue
        budget -= graph.num_nodes
        cells = yosys_stats(graph, "proc", input_width=input_width).adders
        layers.append(
            {
                "name": name,
                "yosys_add_sub": cells,
                "cost_adds": adds,
                "adder_bits": int(adder_bits(graph, input_width).sum()),
            }
        )
        total_yosys += cells
        total_cost += adds
    return {
        "yosys": True,
        "flow": "hierarchy; proc",
        "input_width": input_width,
        "layers": layers,
        "yosys_add_sub": total_yosys,
        "matches_cost_adds": (total_yosys == total_cost) if complete else None,
    }


def add_hardware_figures(
    entries: list[dict], models: dict, *, progress: bool = False, **kwargs
) -> None:
    """Add ``entry["hardware"]`` to every entry whose method has a model in ``models``
    (yosys runs per method: a progress bar with ``progress``)."""
    todo = [e for e in entries if models.get(e.get("method")) is not None]
    for entry in tqdm(todo, desc="hardware figures (yosys)", unit="method", disable=not progress):
        entry["hardware"] = hardware_figures(models[entry["method"]], **kwargs)
