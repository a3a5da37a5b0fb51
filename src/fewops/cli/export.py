"""``fewops export --verilog DIR``: Verilog (and optionally a testbench and tool runs).

The source is a saved graph (``--graph G.npz``, arrays op/a/b/sa/sb/const as written by
:func:`save_graph` or ``fewops lcc --save-graph``), a matrix coded on the spot (``--matrix W.npy
--code csd|dense|lcc|auto`` with ``--bits`` or ``--target-db``: a measured output SQNR, reached with
rounding inside the graph, see :mod:`fewops.codes.hardware`), or a
model saved by ``fewops compress --out DIR`` (``--model DIR``: every layer, plus the whole MLP as
one top module; see :mod:`fewops.cli.export_model`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from fewops.cli.export_model import export_model
from fewops.cli.export_stream import export_stream, stream_options
from fewops.codes import csd, dense
from fewops.codes.hardware import code_for_hardware
from fewops.codes.lcc import decompose
from fewops.cost import count_graph
from fewops.graph.graph import Graph
from fewops.graph.io import load_graph
from fewops.hw.emit import ModuleInfo, write_verilog
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import ToolNotFoundError, run_iverilog, run_yosys
from fewops.io.limits import limits_from
from fewops.io.matrix import load_matrix
from fewops.sim.evaluate import evaluate

CODES = ("csd", "dense", "lcc", "auto")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``export`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "export",
        help="write Verilog for a coded layer or a saved compressed model",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--verilog", type=Path, required=True, help="output folder (new or empty)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--graph", type=Path, help="a saved shift-add graph (.npz)")
    src.add_argument("--matrix", type=Path, help="a matrix W (out x in) as .npy, coded here")
    src.add_argument(
        "--model", type=Path, help="a model saved by `fewops compress --out DIR` (DIR or DIR/model)"
    )
    p.add_argument(
        "--code",
        choices=CODES,
        default="csd",
        help="code for --matrix (default csd); auto: the fewest estimated LUTs among csd and lcc",
    )
    p.add_argument("--bits", type=int, default=None, help="weight width for csd/dense")
    p.add_argument(
        "--target-db",
        type=float,
        default=None,
        help="output SQNR against float W @ x, measured on uniform inputs: codes the matrix and "
        "rounds inside the graph for the fewest estimated LUTs (fewops.codes.hardware)",
    )
    p.add_argument("--algorithm", default="dmp", help="LCC algorithm (default dmp)")
    p.add_argument(
        "--name", default=None, help="module name (default layer; mlp for a --model's network)"
    )
    p.add_argument("--input-width", type=int, default=8, help="signed input bits (default 8)")
    p.add_argument("--pipeline-every", type=int, default=None, help="registers every N adders")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument(
        "--testbench", type=int, default=0, metavar="N", help="also write a bench of N vectors"
    )
    p.add_argument("--simulate", action="store_true", help="run the bench in iverilog")
    p.add_argument(
        "--yosys",
        choices=("proc", "generic", "xilinx", "xilinx-fast"),
        default=None,
        help="report yosys cell counts after this flow",
    )
    p.add_argument(
        "--style",
        choices=("assign", "always"),
        default=None,
        help="one wire per node (read fastest by yosys) or one always block (up to 100x faster "
        "in iverilog); default: always with --simulate and no --yosys, else assign",
    )
    p.add_argument("--data", default=None, help="--model: bench the network on these test images")
    p.add_argument("--seed", type=int, default=0)
    stream_options(p)
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="raise a limit on what --graph/--model files may declare (e.g. max_bits=4096; "
        "names and defaults in docs/reliability.md); repeatable",
    )
    p.set_defaults(run=run)
    return p


def _graph_from_args(args) -> Graph:
    if args.graph is not None:
        return load_graph(args.graph, limits=limits_from(args.limit).graph)
    path = Path(args.matrix)
    w = load_matrix(path)
    if args.target_db is not None:
        found = code_for_hardware(w, args.code, args.target_db, input_width=args.input_width)
        args.scale = found.scale
        print(
            f"{found.code}: output SQNR {found.measured_db:.2f} dB measured (target "
            f"{found.target_db} dB, weights {found.weight_db:.2f} dB); rounding noise "
            f"{found.predicted_noise:.4g} predicted, {found.measured_noise:.4g} measured, "
            f"worst case {found.worst_case:.4g}; {found.luts_est:,} LUTs (est.), "
            f"{found.adder_bits:,} adder bits"
        )
        return found.graph
    if args.code == "auto":
        raise ValueError("--code auto needs --target-db (it picks the code by measured SQNR).")
    if args.code == "lcc":
        if args.target_db is None:
            raise ValueError("--code lcc needs --target-db.")
        return decompose(w, args.target_db, algorithm=args.algorithm).graph
    if args.code == "dense":
        return dense.encode(w, args.bits or 16).graph
    if args.bits is None and args.target_db is None:
        raise ValueError("--code csd needs --bits or --target-db.")
    bits = args.bits if args.bits is not None else csd.bits_for_sqnr(w, args.target_db)
    return csd.encode(w, bits).graph


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status (2 with a message when a tool is missing)."""
    try:
        return _run(args)
    except ToolNotFoundError as exc:
        print(f"fewops: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.style is None:
        # iverilog is the slow step of a simulated export (600 s against 3.6 s for a 64x64 LCC
        # layer written as wires); yosys reads the wire form fastest.
        args.style = "always" if args.simulate and not args.yosys else "assign"
    if args.simulate and not args.testbench:
        args.testbench = 1000
    if args.testbench < 0:
        raise ValueError(f"--testbench needs a vector count of at least 1; got {args.testbench}.")
    stream_only = [
        flag
        for flag, given in (
            ("--parallel", args.parallel != 1),
            ("--stall-percent", args.stall_percent is not None),
            ("--pnr", args.pnr is not None),
            ("--simulator", args.simulator != "iverilog"),
        )
        if given
    ]
    if stream_only and not args.stream:
        raise ValueError(f"{', '.join(stream_only)} only apply to --stream.")
    if args.stream:
        if args.model is None:
            raise ValueError("--stream needs --model DIR (a saved compressed network).")
        return export_stream(args)
    if args.model is not None:
        return export_model(args)
    if args.data is not None:
        raise ValueError("--data only applies to --model (a network bench on test images).")
    graph = _graph_from_args(args)
    v_path, json_path = write_verilog(
        graph,
        args.verilog,
        name=args.name or "layer",
        input_width=args.input_width,
        pipeline_every=args.pipeline_every,
        overwrite=args.overwrite,
        style=args.style,
    )
    info = ModuleInfo.from_json(json_path)
    if getattr(args, "scale", None) is not None and args.scale != info.scale:
        # The code's own power-of-two step: y stands for y * 2**-scale of W @ x itself.
        info = replace(info, scale=args.scale)
        json_path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    cost = count_graph(graph)
    print(f"wrote {v_path} and {json_path}")
    print(
        f"{info.inputs} inputs x {info.input_width} bits -> {info.outputs} outputs x "
        f"{info.output_width} bits; {cost.adds} adds, adder depth {cost.adder_depth}, "
        f"latency {info.latency}, scale 2**-{info.scale}"
    )
    if args.testbench:
        top = 1 << (info.input_width - 1)
        x = make_vectors(info.inputs, args.testbench, lo=-top, hi=top - 1, seed=args.seed)
        tb = write_testbench(info, x, evaluate(graph, x), args.verilog)
        print(f"wrote {tb} ({x.shape[0]} vectors)")
        if args.simulate:
            result = run_iverilog([v_path, tb], tb.stem, args.verilog)
            print(f"iverilog: {result.passed} passed, {result.failed} failed")
            if not result.ok:
                return 1
    if args.yosys is not None:
        stats = run_yosys(v_path, info.module, target=args.yosys)
        print(f"yosys {args.yosys}: " + json.dumps(stats.cells, sort_keys=True))
        if args.yosys.startswith("xilinx"):
            print(f"LUTs {stats.luts}, CARRY4 {stats.carries}")
    return 0
