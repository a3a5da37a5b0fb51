"""Bit-exactness at the anchor's scale: one layer of each code through its Verilog, >= 131,072 vectors.

For CSD, SST, LCC and WACR, a 32 x 32 (``--size``) Gaussian layer is coded, its shift-add graph emitted as
Verilog, and a self-checking bench drives the vectors through it in verilator (or iverilog),
comparing every output with the integer simulator (``fewops.sim.evaluate``) bit for bit. The
vectors are the full-scale corners (all -128, all 127, alternating, one input at 127, ...), then
vectors of random extremes, then uniform random ones (``fewops.hw.testbench.make_vectors``).
A code whose bench reports a single mismatch fails the run (exit status 1).

    python benchmarks/bitexact.py [--vectors 131072] [--size 32] [--simulator verilator]
        [--out benchmarks/results/bitexact.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fewops.codes import csd, poly, sst
from fewops.codes.lcc import decompose
from fewops.cost import count_graph
from fewops.graph.widths import datapath_bits
from fewops.hw.emit import ModuleInfo, write_verilog
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import run_iverilog, run_verilator
from fewops.sim.evaluate import evaluate


def layers(size: int, seed: int) -> dict:
    """One coded ``size`` x ``size`` Gaussian layer per code: name -> (graph, how it was coded)."""
    w = np.random.default_rng(seed).standard_normal((size, size))
    return {
        "CSD": (csd.encode(w, 8).graph, "csd.encode(W, bits=8)"),
        "SST": (sst.encode_matrix(w, 8, 2).graph, "sst.encode_matrix(W, n=8, k=2)"),
        "LCC": (
            decompose(w, 40.0, algorithm="dmp", workers=1).graph,
            "decompose(W, 40 dB, algorithm='dmp')",
        ),
        "WACR": (
            poly.encode(w, axis="fan_in", interval=4, degree=1).graph,
            "poly.encode(W, axis='fan_in', interval=4, degree=1)",
        ),
    }


def simulate(graph, vectors, workdir: str, simulator: str, timeout: float):
    """``fewops.hw.verify.simulate_graph`` with a longer tool timeout (a big layer's C++ build in
    verilator can take more than its 600 s on a busy machine)."""
    v_path, json_path = write_verilog(graph, workdir, name="layer", style="always")
    info = ModuleInfo.from_json(json_path)
    tb = write_testbench(info, vectors, evaluate(graph, vectors), workdir)
    run = run_verilator if simulator == "verilator" else run_iverilog
    return run([v_path, tb], tb.stem, workdir, timeout=timeout)


def _tool_version(simulator: str) -> str:
    cmd = [simulator, "--version"] if simulator == "verilator" else ["iverilog", "-V"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else simulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=131_072)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per tool run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulator", choices=("verilator", "iverilog"), default="verilator")
    parser.add_argument("--out", type=Path, default=None, help="write the results table here")
    args = parser.parse_args()
    if args.vectors < 131_072:
        print(f"note: {args.vectors} vectors, fewer than the 131,072 of the acceptance check")
    rows = []
    failed = False
    for name, (graph, how) in layers(args.size, args.seed).items():
        vectors = make_vectors(graph.num_inputs, args.vectors, lo=-128, hi=127, seed=args.seed)
        corners = int(np.all((vectors == -128) | (vectors == 127), axis=1).sum())
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fewops_bitexact_") as tmp:
            result = simulate(graph, vectors, tmp, args.simulator, args.timeout)
        seconds = time.perf_counter() - t0
        failed |= not result.ok or result.passed != len(vectors)
        rows.append(
            {
                "code": name,
                "coded as": how,
                "adds": count_graph(graph).adds,
                "bits": datapath_bits(graph),
                "vectors": len(vectors),
                "full-scale": corners,
                "passed": result.passed,
                "mismatches": result.failed,
                "seconds": round(seconds, 1),
            }
        )
        print(
            f"{name:5s} {rows[-1]['adds']:6d} adds, {rows[-1]['bits']:3d}-bit datapath: "
            f"{result.passed} of {len(vectors)} vectors match, {result.failed} mismatches "
            f"({seconds:.1f} s)",
            flush=True,
        )
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    header = list(rows[0])
    table = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows),
    ]
    text = "\n".join(
        [
            "# Bit-exact at scale: Verilog against the integer simulator",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; simulator: {_tool_version(args.simulator)} "
            f"({shutil.which(args.simulator) or args.simulator}).",
            "",
            f"Each code's {args.size} x {args.size} layer (Gaussian W, seed {args.seed}) is emitted "
            "as Verilog (`style='always'`) and driven with the vectors below, 8-bit signed; "
            "'full-scale' counts vectors whose every input is -128 or 127. Every output is "
            "compared with `fewops.sim.evaluate` bit for bit (`===`).",
            "",
            *table,
            "",
            "Result: " + ("MISMATCHES FOUND" if failed else "zero mismatches for every code."),
            "",
        ]
    )
    if args.out is not None:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
