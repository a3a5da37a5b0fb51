"""Yosys LUTs and cells of one matrix coded three ways, at equal SQNR.

For each shape, a Gaussian matrix W (seeded) is coded by
  - dense fixed point in CSD (fewops.codes.csd) at the smallest width reaching the target SQNR,
  - LCC (fewops.codes.lcc.decompose) at the same target SQNR,
  - da4ml (PyPI) on the very same integer matrix as CSD (so the same SQNR), from its own Verilog,
and each design (8-bit signed inputs, combinational) goes through ``yosys proc`` (adder cells, ours
only) and a 7-series flow (LUTs, CARRY4, cells): ``--flow xilinx-fast`` (default) is
``synth_xilinx -flatten`` up to and including its abc LUT mapping, with the last 1:1 techmap of
$lut cells to LUT primitives done by counting (fewops.hw.tools.XILINX_FAST; identical cell counts
on small designs, at most 5 LUTs apart at 64x64); ``--flow xilinx`` runs the whole script. Run:

    python benchmarks/hardware.py --sqnr 40 --shapes 64x64 256x64

and it writes benchmarks/results/hardware.md (or --out). ``--workdir DIR`` keeps the designs and
their figures (job.json) and reuses them on the next run, so a synthesis can be repeated without
re-solving da4ml (minutes at 256x64). Missing tools or packages are reported in the table, not
silently skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fewops.codes import csd
from fewops.codes.common import dyadic_value, sqnr_db
from fewops.cost import count_graph
from fewops.hw import adder_bits, run_yosys, write_verilog
from fewops.parallel import pmap

INPUT_BITS = 8


def gaussian(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def cached(workdir: Path, shape, code: str) -> dict | None:
    """The design figures a previous run left in ``workdir/job.json`` (same shape and code)."""
    path = workdir / "job.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if (data.get("shape"), data.get("code")) == (shape, code) else None


def synthesise(row: dict, sources, top: str, flow: str | None) -> dict:
    if flow is not None:
        t0 = time.perf_counter()
        xil = run_yosys(sources, top, target=flow, timeout=6 * 3600)  # 256x64: ~40 min loaded
        row.update(luts=xil.luts, carry4=xil.carries, cells=xil.num_cells, flow=flow)
        row["synth_seconds"] = time.perf_counter() - t0
    return row


def job_ours(code: str, graph, sqnr: float, adds: int, shape, workdir: Path, flow) -> dict:
    t0 = time.perf_counter()
    row = cached(workdir, shape, code)
    if row is None:
        v_path, _ = write_verilog(
            graph, workdir, name="layer", input_width=INPUT_BITS, overwrite=True
        )
        proc = run_yosys(v_path, "layer", target="proc")
        row = {
            "shape": shape,
            "code": code,
            "sqnr_db": sqnr,
            "adds": adds,
            "adder_bits": adder_bits(graph, INPUT_BITS),
            "proc_adders": proc.adders,
        }
        (workdir / "job.json").write_text(json.dumps(row))
    row = synthesise(row, [workdir / "layer.v"], "layer", flow)
    row["seconds"] = time.perf_counter() - t0
    return row


def job_da4ml(w_int: np.ndarray, sqnr: float, shape, workdir: Path, flow) -> dict:
    t0 = time.perf_counter()
    row = cached(workdir, shape, "da4ml")
    if row is None:
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
        row = {
            "shape": shape,
            "code": "da4ml",
            "sqnr_db": sqnr,
            "adds": len(adders),
            "adder_bits": int(bits),
            "proc_adders": None,
        }
        (workdir / "job.json").write_text(json.dumps(row))
    sources = sorted((workdir / "src").glob("*.v")) + sorted((workdir / "src/static").glob("*.v"))
    sources = [s for s in sources if not s.name.endswith("_wrapper.v")]
    memfiles = workdir / "src/memfiles"
    if not memfiles.is_dir() or not any(memfiles.iterdir()):  # no tables: skip the ROM template
        sources = [s for s in sources if s.name != "lookup_table.v"]
    row = synthesise(row, sources, "da4ml_layer", flow)
    row["seconds"] = time.perf_counter() - t0
    return row


def run_job(args):
    kind, payload, workdir, flow = args
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "da4ml":
            return job_da4ml(*payload, workdir, flow)
        return job_ours(kind, *payload, workdir, flow)
    except Exception as exc:  # reported in the table, never hidden
        return {"shape": payload[-1], "code": kind, "error": f"{type(exc).__name__}: {exc}"}


def build_jobs(
    shapes, sqnr: float, seed: int, lcc_algorithm: str, tmp: Path, synth_max_adds: int, flow: str
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
        synth = flow if csd_adds <= synth_max_adds else None
        if not synth:
            notes.append(
                f"{label}: synthesis not run (CSD has {csd_adds} adds > --synth-max-adds "
                f"{synth_max_adds}); LUT columns empty, adder bits and proc counts still exact."
            )
        jobs.append(
            (f"csd{bits}", (coded.graph, q_sqnr, csd_adds, label), tmp / f"{label}_csd", synth)
        )
        try:
            import fewops.codes.lcc as lcc

            res = lcc.decompose(w, sqnr, algorithm=lcc_algorithm, workers=1)
            jobs.append(
                (
                    f"lcc-{lcc_algorithm}",
                    (res.graph, float(res.sqnr_db), count_graph(res.graph).adds, label),
                    tmp / f"{label}_lcc",
                    synth,
                )
            )
        except ImportError as exc:
            notes.append(f"LCC skipped for {label}: fewops.codes.lcc is not available ({exc}).")
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
        "| LUTs | CARRY4 | cells | LUTs/add | LUTs/adder bit | synth s |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['code']} | error: {r['error']} |||||||||||")
            continue

        def show(v, fmt="{}"):
            return "-" if v is None else fmt.format(v)

        luts = r.get("luts")
        per_add = f"{luts / r['adds']:.2f}" if luts and r["adds"] else "-"
        per_bit = f"{luts / r['adder_bits']:.2f}" if luts and r["adder_bits"] else "-"
        bits_per_add = f"{r['adder_bits'] / r['adds']:.1f}" if r["adds"] else "-"
        lines.append(
            f"| {r['shape']} | {r['code']} | {r['sqnr_db']:.2f} | {r['adds']} | "
            f"{r['adder_bits']} | {bits_per_add} | {show(r.get('proc_adders'))} | {show(luts)} "
            f"| {show(r.get('carry4'))} | {show(r.get('cells'))} | {per_add} | {per_bit} "
            f"| {show(r.get('synth_seconds'), '{:.0f}')} |"
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
        help="synthesise only matrices whose CSD code has at most this many adds",
    )
    p.add_argument(
        "--flow",
        choices=("xilinx-fast", "xilinx", "generic"),
        default="xilinx-fast",
        help="yosys flow for LUTs and cells (default xilinx-fast; see the module docstring)",
    )
    p.add_argument("--workdir", default=None, help="keep (and reuse) the designs here")
    p.add_argument(
        "--codes", nargs="+", default=None, help="only these codes (csd, lcc, da4ml; default all)"
    )
    p.add_argument("--out", default="benchmarks/results/hardware.md")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fewops_bench_hw_") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        jobs, notes = build_jobs(
            shapes,
            args.sqnr,
            args.seed,
            args.lcc_algorithm,
            root,
            args.synth_max_adds,
            args.flow,
        )
        if args.codes:
            jobs = [j for j in jobs if any(j[0].startswith(c) for c in args.codes)]
        rows = pmap(
            run_job, jobs, workers=args.jobs, on_result=lambda _, row: print(row, flush=True)
        )
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
            f"from the yosys flow `{args.flow}` (xc7; see docs/hardware.md). da4ml codes the same integer matrix as CSD and "
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
