"""Yosys LUTs of one matrix coded several ways, at equal measured output SQNR.

For each shape, a Gaussian matrix W (seeded) is coded by
  - CSD, exact: dense fixed point in CSD (fewops.codes.csd) at the smallest width reaching the
    target SQNR on W;
  - CSD, rounded, and LCC, rounded: fewops.codes.hardware.code_for_hardware (the weights' error
    and rounding inside the graph share the budget; fewest estimated LUTs; measured output SQNR
    on uniform inputs at least the target);
  - LCC, exact: fewops.codes.lcc.decompose at the target;
  - da4ml (PyPI) on the very same integer matrix as CSD exact, in its bit-cost mode
    (HWConfig(1, -1, -1), the default of its tracing API, "da4ml-bits") and its adder-count mode
    (HWConfig(-1, -1, -1), "da4ml-adds"), from its own Verilog;
and each design (8-bit signed inputs, combinational) goes through a 7-series flow (LUTs, CARRY4,
flip-flops): ``--flow xilinx-fast`` (default) is ``synth_xilinx -flatten`` up to and including
its abc LUT mapping (fewops.hw.tools.XILINX_FAST); ``--flow xilinx`` runs the whole script. The
output SQNR of every design is measured against float W @ x on 20,000 uniform 8-bit inputs (ours
by the bit-exact simulator, which equals the Verilog; da4ml's arithmetic is exact, so its output
SQNR is that of its integer matrix, measured the same way). Run:

    python benchmarks/hardware.py --sqnr 40 --shapes 32x32 64x64

and it writes benchmarks/results/hardware.md (or --out). Missing tools or packages are reported in
the table, not silently skipped. Ratios against da4ml (its better mode) and CSD exact are printed.
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
from fewops.codes.common import dyadic_value
from fewops.codes.hardware import code_for_hardware, uniform_inputs
from fewops.codes.lcc import decompose
from fewops.cost.bits import bit_cost
from fewops.hw import run_yosys, write_verilog
from fewops.parallel import pmap
from fewops.sim import evaluate

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
        row.update(luts=xil.luts, carry4=xil.carries, ffs=xil.flipflops, flow=flow)
        row["synth_seconds"] = time.perf_counter() - t0
    return row


def job_ours(code: str, graph, sqnr: float, shape, workdir: Path, flow) -> dict:
    t0 = time.perf_counter()
    v_path, _ = write_verilog(graph, workdir, name="layer", input_width=INPUT_BITS, overwrite=True)
    cost = bit_cost(graph, INPUT_BITS)
    row = {
        "shape": shape,
        "code": code,
        "sqnr_db": sqnr,
        "adds": cost.adds,
        "adder_bits": cost.adder_bits,
        "luts_est": cost.luts_est,
    }
    row = synthesise(row, [v_path], "layer", flow)
    row["seconds"] = time.perf_counter() - t0
    return row


def job_da4ml(mode: str, w_int: np.ndarray, sqnr: float, shape, workdir: Path, flow) -> dict:
    t0 = time.perf_counter()
    try:
        # heavy optional benchmark dependency (the bench extra), only for these jobs
        from da4ml.codegen.rtl.rtl_model import RTLModel
        from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
        from da4ml.types import minimal_kif
    except ImportError as exc:
        return {"shape": shape, "code": f"da4ml-{mode}", "error": f"da4ml not importable ({exc})"}
    conf = HWConfig(1, -1, -1) if mode == "bits" else HWConfig(-1, -1, -1)
    inp = FixedVariableArrayInput(w_int.shape[1], hwconf=conf)
    x = inp.quantize(1, INPUT_BITS - 1, 0)  # signed, INPUT_BITS-bit integers
    comb = comb_trace(x, x @ w_int.T.astype(np.float64))
    adders = [op for op in comb.ops if op.opcode in (0, 1)]
    bits = sum(sum(minimal_kif(op.qint)) for op in adders)
    RTLModel(comb, "da4ml_layer", workdir, print_latency=False).write()
    row = {
        "shape": shape,
        "code": f"da4ml-{mode}",
        "sqnr_db": sqnr,
        "adds": len(adders),
        "adder_bits": int(bits),
        "luts_est": None,
        "solve_seconds": time.perf_counter() - t0,
    }
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
        if kind.startswith("da4ml-"):
            return job_da4ml(kind.split("-", 1)[1], *payload, workdir, flow)
        return job_ours(kind, *payload, workdir, flow)
    except Exception as exc:  # reported in the table, never hidden
        return {"shape": payload[-1], "code": kind, "error": f"{type(exc).__name__}: {exc}"}


def measured_db(w: np.ndarray, y: np.ndarray, x: np.ndarray) -> float:
    ref = x.astype(np.float64) @ w.T
    return float(10 * np.log10((ref**2).sum() / ((y - ref) ** 2).sum()))


def build_jobs(shapes, sqnr: float, seed: int, tmp: Path, flow: str) -> tuple[list, list]:
    jobs, notes = [], []
    for shape in shapes:
        w = gaussian(shape, seed)
        label = f"{shape[0]}x{shape[1]}"
        x = uniform_inputs(shape[1], 20000, INPUT_BITS, seed + 7)
        bits = csd.bits_for_sqnr(w, sqnr)
        coded = csd.encode(w, bits)
        w_int, m, e = csd.quantize(w, bits)
        step = dyadic_value(m, e)
        y = np.ldexp(np.asarray(evaluate(coded.graph, x), np.float64), -coded.graph.output_scale)
        csd_db = measured_db(w, y * step, x)
        jobs.append((f"csd{bits}-exact", (coded.graph, csd_db, label), tmp / f"{label}_csd", flow))
        t0 = time.perf_counter()
        res = decompose(w, sqnr, workers=2)
        y = np.ldexp(np.asarray(evaluate(res.graph, x), np.float64), -res.graph.output_scale)
        notes.append(f"{label}: LCC exact coded in {time.perf_counter() - t0:.1f} s.")
        jobs.append(
            ("lcc-exact", (res.graph, measured_db(w, y, x), label), tmp / f"{label}_lcc", flow)
        )
        for code in ("csd", "lcc"):
            t0 = time.perf_counter()
            found = code_for_hardware(w, code, sqnr, input_width=INPUT_BITS, seed=seed)
            y = np.ldexp(np.asarray(evaluate(found.graph, x), np.float64), -found.scale)
            notes.append(
                f"{label}: {code}-rounded coded in {time.perf_counter() - t0:.1f} s (weights "
                f"{found.weight_db:.2f} dB; rounding noise {found.predicted_noise:.4g} predicted, "
                f"{found.measured_noise:.4g} measured, worst-case error bound "
                f"{found.worst_case:.4g})."
            )
            jobs.append(
                (
                    f"{code}-rounded",
                    (found.graph, measured_db(w, y, x), label),
                    tmp / f"{label}_{code}_r",
                    flow,
                )
            )
        y_int = x.astype(np.float64) @ (w_int * step).T
        int_db = measured_db(w, y_int, x)
        for mode in ("bits", "adds"):
            jobs.append((f"da4ml-{mode}", (w_int, int_db, label), tmp / f"{label}_da_{mode}", flow))
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
        "| matrix | code | output SQNR dB | adds | adder bits | bits/add | LUTs (est.) "
        "| yosys LUTs | CARRY4 | FF | est./yosys | synth s |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['code']} | error: {r['error']} ||||||||||")
            continue

        def show(v, fmt="{}"):
            return "-" if v is None else fmt.format(v)

        luts, est = r.get("luts"), r.get("luts_est")
        ratio = f"{est / luts:.2f}" if luts and est else "-"
        bits_per_add = f"{r['adder_bits'] / r['adds']:.1f}" if r["adds"] else "-"
        lines.append(
            f"| {r['shape']} | {r['code']} | {r['sqnr_db']:.2f} | {r['adds']} | "
            f"{r['adder_bits']} | {bits_per_add} | {show(est)} | {show(luts)} "
            f"| {show(r.get('carry4'))} | {show(r.get('ffs'))} | {ratio} "
            f"| {show(r.get('synth_seconds'), '{:.0f}')} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[str]:
    """Per shape: our fewest yosys LUTs against da4ml's better mode and against CSD exact."""
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        ok = [r for r in rows if r["shape"] == shape and r.get("luts")]
        ours = [r for r in ok if r["code"] in ("csd-rounded", "lcc-rounded", "lcc-exact")]
        da = [r for r in ok if r["code"].startswith("da4ml")]
        csd_exact = [r for r in ok if r["code"].endswith("-exact") and r["code"].startswith("csd")]
        if not ours:
            continue
        best = min(ours, key=lambda r: r["luts"])
        line = f"{shape}: our best {best['code']} {best['luts']:,} LUTs"
        if da:
            d = min(da, key=lambda r: r["luts"])
            line += f"; {best['luts'] / d['luts']:.2f}x {d['code']} ({d['luts']:,})"
        if csd_exact:
            c = csd_exact[0]
            line += f"; {best['luts'] / c['luts']:.2f}x {c['code']} ({c['luts']:,})"
        out.append(line + ".")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sqnr", type=float, default=40.0, help="target output SQNR in dB (default 40)")
    p.add_argument("--shapes", nargs="+", default=["32x32", "64x64"], help="OUTxIN shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="yosys runs in parallel")
    p.add_argument(
        "--flow",
        choices=("xilinx-fast", "xilinx", "generic"),
        default="xilinx-fast",
        help="yosys flow for LUTs and cells (default xilinx-fast; see the module docstring)",
    )
    p.add_argument(
        "--codes", nargs="+", default=None, help="only codes starting with these (csd, lcc, da4ml)"
    )
    p.add_argument("--out", default="benchmarks/results/hardware.md")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fewops_bench_hw_") as tmp:
        jobs, notes = build_jobs(shapes, args.sqnr, args.seed, Path(tmp), args.flow)
        if args.codes:
            jobs = [j for j in jobs if any(j[0].startswith(c) for c in args.codes)]
        rows = pmap(
            run_job, jobs, workers=args.jobs, on_result=lambda _, row: print(row, flush=True)
        )
    command = "python benchmarks/hardware.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            "# Hardware: yosys LUTs at equal measured output SQNR",
            "",
            f"Command: `{command.strip()}`  ",
            f"Machine: {machine()}  ",
            f"Total time: {time.perf_counter() - t0:.0f} s",
            "",
            f"Gaussian matrices (seed {args.seed}), target output SQNR {args.sqnr} dB measured "
            f"against float W @ x on 20,000 uniform {INPUT_BITS}-bit signed inputs; combinational "
            "designs. `adds` and `adder bits` (full-adder bits: width minus free low bits) come "
            "from fewops.cost.bits (for da4ml: its add/sub operations and their exact interval "
            "widths); `LUTs (est.)` is the calibrated estimate (ours only); LUTs, CARRY4 and FF "
            f"from the yosys flow `{args.flow}` (xc7; see docs/hardware.md). da4ml codes the same "
            "integer matrix as CSD exact and is synthesised from its own Verilog.",
            "",
            table(rows),
            "",
            "## Ratios (same run)",
            "",
            *[f"- {line}" for line in ratios(rows)],
            "",
            "## Notes",
            "",
            *[f"- {n}" for n in notes],
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
