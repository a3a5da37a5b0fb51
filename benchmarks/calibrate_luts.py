"""Fit the LUT estimate (fewops.cost.bits.LUT_PER_BIT) to yosys synth_xilinx on small layers.

Layers of every code (CSD, dense, LCC, SST, WACR; exact and with the rounding pass) on Gaussian
matrices; each is synthesised with the xilinx-fast flow (synth_xilinx up to LUT mapping, see
fewops.hw.tools). Prints one JSON line per design, then the least-squares fit of LUTs on the full
adder bits by class (no intercept), its R^2 and worst relative error, and the same figures for
the estimate currently in fewops.cost.bits.

    python benchmarks/calibrate_luts.py [--quick] > benchmarks/results/hardware_calibration.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np

from fewops.codes import csd, dense, poly, sst
from fewops.codes.lcc import decompose
from fewops.cost.bits import LUT_PER_BIT, LUT_TERMS, bit_classes, bit_cost
from fewops.graph.rounding import apply_drops, choose_drops
from fewops.hw.verify import yosys_stats
from fewops.sim.evaluate import evaluate


def graphs(shape, db, rng):
    w = rng.standard_normal(shape)
    yield "csd", csd.encode(w, csd.bits_for_sqnr(w, db)).graph
    yield "lcc", decompose(w, db + 1.0, algorithm="dmp", workers=1).graph
    yield "sst", sst.encode_matrix(w, 8, 2).graph
    yield "wacr", poly.encode(w, axis="fan_in", interval=4, degree=1).graph
    yield "dense", dense.encode(w, 8).graph


def rounded(graph, db, rng):
    x = rng.integers(-128, 128, size=(20000, graph.num_inputs))
    y = evaluate(graph, x) * 2.0**-graph.output_scale
    power = float((y**2).sum(axis=1).mean())
    return apply_drops(graph, choose_drops(graph, 0.5 * power * 10 ** (-db / 10), 8))


def fit(rows):
    a = np.array([[r[k] for k in LUT_TERMS] for r in rows], dtype=np.float64)
    y = np.array([r["luts"] for r in rows], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef, a, y


def quality(pred, y):
    ss = ((y - pred) ** 2).sum()
    r2 = 1 - ss / ((y - y.mean()) ** 2).sum()
    return float(r2), float(np.abs(pred / y - 1).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two small shapes only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    shapes = [(8, 8), (12, 16)] if args.quick else [(8, 8), (12, 16), (16, 16), (24, 16)]
    rows = []
    print(f"# machine: {platform.platform()}, python {sys.version.split()[0]}", flush=True)
    for shape in shapes:
        for db in (30.0, 40.0):
            for code, graph in graphs(shape, db, rng):
                for kind, g in (("exact", graph), ("rounded", rounded(graph, db, rng))):
                    stats = yosys_stats(g, "xilinx-fast")
                    row = {
                        "shape": list(shape),
                        "db": db,
                        "code": code,
                        "kind": kind,
                        **bit_classes(g),
                        "luts_est": bit_cost(g).luts_est,
                        "luts": stats.luts,
                        "carry4": stats.carries,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    coef, a, y = fit(rows)
    r2, worst = quality(a @ coef, y)
    print(f"# fit LUT_PER_BIT = {dict(zip(LUT_TERMS, np.round(coef, 3).tolist(), strict=True))}")
    print(f"# fit R^2 {r2:.4f}, worst relative error {worst:.3f} over {len(rows)} designs")
    now = np.array([r["luts_est"] for r in rows], dtype=np.float64)
    r2, worst = quality(now, y)
    print(f"# current {LUT_PER_BIT}: R^2 {r2:.4f}, worst relative error {worst:.3f}")


if __name__ == "__main__":
    main()
