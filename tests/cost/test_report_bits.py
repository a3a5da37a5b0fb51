"""Bit costs in the layer and network reports, report.md and the two-panel pareto plot."""

import numpy as np

from fewops.codes import csd
from fewops.cost import NetworkCost, count_graph
from fewops.report.write import build_report, write_report


def test_layer_and_totals_carry_adder_bits_and_luts(tmp_path):
    coded = csd.encode(np.random.default_rng(0).normal(size=(4, 6)), 6)
    conv = coded.layer_cost("conv", kind="conv", positions=3)
    per = count_graph(coded.graph, bits=True)
    d = conv.to_dict()
    assert d["per_position"]["adder_bits"] == per.adder_bits > 0
    assert d["luts_est"] == 3 * per.luts_est > 0
    totals = NetworkCost((conv,)).totals()
    assert totals["adder_bits"] == 3 * per.adder_bits
    method = {
        "method": "csd",
        "accuracy": {"float": 0.9, "simulated": 0.89},
        "totals": totals,
        "layers": [d],
    }
    paths = write_report(tmp_path, build_report("mnist", "mlp", [method]))
    text = paths["markdown"].read_text()
    assert "LUTs (est.)" in text and f"{3 * per.luts_est:,}" in text
    assert paths["pareto"].stat().st_size > 1000
