"""Yosys LUTs and cells of one matrix coded three ways, at equal SQNR.

For each shape, a Gaussian matrix W (seeded) is coded by
  - dense fixed point in CSD (fewops.codes.csd) at the smallest width reaching the target SQNR,
  - LCC (fewops.lcc.decompose) at the same target SQNR,
  - da4ml (PyPI) on the very same integer matrix as CSD (so the same SQNR), from its own Verilog,
and each design (8-bit signed inputs, combinational) goes through ``yosys proc`` (adder cells, ours
only) and ``synth_xilinx -flatten`` (7-series LUTs, CARRY4, cells). Run:

    python benchmarks/hardware.py --sqnr 40 --shapes 64x64 256x64

and it writes benchmarks/results/hardware.md (or --out). Missing tools or packages are reported in
the table, not silently skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fewops.codes import csd
from fewops.codes.common import dyadic_value, sqnr_db
from fewops.cost import count_graph
from fewops.hw import adder_bits, run_yosys, write_verilog

INPUT_BITS = 8


def gaussian(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def job_ours(code: str, graph, sqnr: float, adds: int, shape, workdir: Path, synth: bool) -> dict:
    t0 = time.perf_counter()
    v_path, _ = write_verilog(graph, workdir, name="layer", input_width=INPUT_BITS)
    proc = run_yosys(v_path, "layer", target="proc")
    xil = run_yosys(v_path, "layer", target="xilinx") if synth else None
    return {
        "shape": shape,
        "code": code,
        "sqnr_db": sqnr,
        "adds": adds,
        "adder_bits": adder_bits(graph, INPUT_BITS),
        "proc_adders": proc.adders,
        "luts": xil.luts if xil else None,
        "carry4": xil.carries if xil else None,
        "cells": xil.num_cells if xil else None,
        "seconds": time.perf_counter() - t0,
    }


def job_da4ml(w_int: np.ndarray, sqnr: float, shape, workdir: Path, synth: bool) -> dict:
    t0 = time.perf_counter()
    try:
        from da4ml.codegen.rtl.rtl_model import RTLModel
        from da4ml.trace import FixedVariableArrayInput, comb_trace
        from da4ml.types import minimal_kif
    except ImportError as exc:
        return {"shape": shape, "code": "da4ml", "error": f"da4ml not importable ({exc})"}
    inp = FixedVariableArrayInput(w_int.shape[1])
    x = inp.quantize(1, INPUT_BITS - 1, 0)  # signed, INPUT_BITS-bit integers
    comb = comb_trace(x, x @ w_int.T.astype(np.float64))
    adders = [op for op in comb.ops if op.opcode in (0, 1)]
    bits = sum(sum(minimal_kif(op.qint)) for op in adders)
    RTLModel(comb, "da4ml_layer", workdir, print_latency=False).write()
    sources = sorted((workdir / "src").glob("*.v")) + sorted((workdir / "src/static").glob("*.v"))
    sources = [s for s in sources if not s.name.endswith("_wrapper.v")]
    if not any((workdir / "src/memfiles").iterdir()):  # no tables: skip the ROM template
        sources = [s for s in sources if s.name != "lookup_table.v"]
    xil = run_yosys(sources, "da4ml_layer", target="xilinx") if synth else None
    return {
        "shape": shape,
        "code": "da4ml",
        "sqnr_db": sqnr,
        "adds": len(adders),
        "adder_bits": int(bits),
        "proc_adders": None,
        "luts": xil.luts if xil else None,
        "carry4": xil.carries if xil else None,
        "cells": xil.num_cells if xil else None,
        "seconds": time.perf_counter() - t0,
    }


def run_job(args):
    kind, payload, workdir, synth = args
    workdir = Path(workdir)
    try:
        if kind == "da4ml":
            return job_da4ml(*payload, workdir, synth)
        return job_ours(kind, *payload, workdir, synth)
    except Exception as exc:  # reported in the table, never hidden
        return {"shape": payload[-1], "code": kind, "error": f"{type(exc).__name__}: {exc}"}


def build_jobs(
    shapes, sqnr: float, seed: int, lcc_algorithm: str, tmp: Path, synth_max_adds: int
) -> tuple[list, list]:
    jobs, notes = [], []
    for shape in shapes:
        w = gaussian(shape, seed)
        label = f"{shape[0]}x{shape[1]}"
        bits = csd.bits_for_sqnr(w, sqnr)
        coded = csd.encode(w, bits)
        w_int, m, e = csd.quantize(w, bits)
        q_sqnr = sqnr_db(w, w_int * dyadic_value(m, e))
        csd_adds = count_graph(coded.graph).adds
        synth = csd_adds <= synth_max_adds
        if not synth:
            notes.append(
                f"{label}: synth_xilinx not run (CSD has {csd_adds} adds > --synth-max-adds "
                f"{synth_max_adds}); LUT columns empty, adder bits and proc counts still exact."
            )
        jobs.append(
            (f"csd{bits}", (coded.graph, q_sqnr, csd_adds, label), tmp / f"{label}_csd", synth)
        )
        try:
            import fewops.lcc as lcc

            res = lcc.decompose(w, sqnr, algorithm=lcc_algorithm)
            jobs.append(
                (
                    f"lcc-{lcc_algorithm}",
                    (res.graph, float(res.sqnr_db), count_graph(res.graph).adds, label),
                    tmp / f"{label}_lcc",
                    synth,
                )
            )
        except ImportError as exc:
            notes.append(f"LCC skipped for {label}: fewops.lcc is not available ({exc}).")
            print(notes[-1])
        jobs.append(("da4ml", (w_int, q_sqnr, label), tmp / f"{label}_da4ml", synth))
    return jobs, notes


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    yosys = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {yosys}"


def table(rows: list[dict]) -> str:
    head = (
        "| matrix | code | SQNR dB | adds | adder bits | bits/add | yosys proc $add+$sub "
        "| LUTs | CARRY4 | cells | LUTs/add | seconds |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['code']} | error: {r['error']} ||||||||||")
            continue

        def show(v):
            return "-" if v is None else str(v)

        per_add = f"{r['luts'] / r['adds']:.2f}" if r["luts"] and r["adds"] else "-"
        bits_per_add = f"{r['adder_bits'] / r['adds']:.1f}" if r["adds"] else "-"
        lines.append(
            f"| {r['shape']} | {r['code']} | {r['sqnr_db']:.2f} | {r['adds']} | "
            f"{r['adder_bits']} | {bits_per_add} | {show(r['proc_adders'])} | {show(r['luts'])} "
            f"| {show(r['carry4'])} | {show(r['cells'])} | {per_add} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sqnr", type=float, default=40.0, help="target SQNR in dB (default 40)")
    p.add_argument("--shapes", nargs="+", default=["64x64", "256x64"], help="OUTxIN shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lcc-algorithm", default="dmp")
    p.add_argument("--jobs", type=int, default=2, help="yosys runs in parallel")
    p.add_argument(
        "--synth-max-adds",
        type=int,
        default=10**9,
        help="run synth_xilinx only for matrices whose CSD code has at most this many adds",
    )
    p.add_argument("--out", default="benchmarks/results/hardware.md")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fewops_bench_hw_") as tmp:
        jobs, notes = build_jobs(
            shapes, args.sqnr, args.seed, args.lcc_algorithm, Path(tmp), args.synth_max_adds
        )
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = []
            for row in pool.map(run_job, jobs):
                rows.append(row)
                print(row, flush=True)
    command = "python benchmarks/hardware.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            "# Hardware: yosys LUTs and cells at equal SQNR",
            "",
            f"Command: `{command.strip()}`  ",
            f"Machine: {machine()}  ",
            f"Total time: {time.perf_counter() - t0:.0f} s",
            "",
            f"Gaussian matrices (seed {args.seed}), target SQNR {args.sqnr} dB; {INPUT_BITS}-bit "
            "signed inputs, combinational designs. `adds` is the cost model's count "
            "(fewops.cost.count_graph; for da4ml, its add/sub operations); `adder bits` sums the "
            "adders' output widths (exact widths, no truncation; da4ml's from its own "
            "intervals); `yosys proc` counts "
            "$add+$sub cells before any optimisation (ours only); LUTs, CARRY4 and cells come "
            "from `synth_xilinx -flatten` (xc7). da4ml codes the same integer matrix as CSD and "
            "is synthesised from its own Verilog output.",
            "",
            table(rows),
            "",
            *notes,
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
