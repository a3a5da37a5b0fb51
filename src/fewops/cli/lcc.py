"""``fewops lcc W.npy --target-db 48 --algorithm best --json out.json``: LCC of one matrix."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np

from fewops.codes.csd import bits_for_sqnr, encode
from fewops.codes.lcc import decompose
from fewops.codes.lcc.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from fewops.graph.io import save_graph
from fewops.io.matrix import load_matrix
from fewops.parallel import cluster


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``lcc`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "lcc",
        help="linear computation coding of one matrix (.npy)",
        description="Decompose a matrix into power-of-two wiring layers (LCC) and count its adds.",
    )
    p.add_argument("matrix", type=Path, help="the matrix W (out x in) as a .npy file")
    p.add_argument("--target-db", type=float, required=True, help="target SQNR in dB")
    p.add_argument("--algorithm", choices=sorted(ALGORITHMS), default=DEFAULT_ALGORITHM)
    p.add_argument("-S", "--terms", dest="S", type=int, default=2, help="terms per wiring row")
    p.add_argument("--mem", type=int, default=8, help="beam width of the RS algorithm")
    p.add_argument("--slice-width", type=int, default=None, help="columns per slice")
    p.add_argument("--batch", type=float, default=None, help="grow: fraction of rows per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument(
        "--cluster",
        default=None,
        help="Dask scheduler tcp://HOST:PORT to code the slices on (see docs/parallel.md)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the summary as JSON here")
    p.add_argument("--save-matrix", type=Path, default=None, help="write W_hat (.npy) here")
    p.add_argument(
        "--save-graph",
        type=Path,
        default=None,
        help="write the shift-add graph (.npz) here, for `fewops export --graph`",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""

    path = Path(args.matrix)
    w = load_matrix(path)
    options = {}
    if args.batch is not None:
        options["batch"] = args.batch
    with cluster(args.cluster) if args.cluster else contextlib.nullcontext():
        res = decompose(
            w,
            args.target_db,
            algorithm=args.algorithm,
            S=args.S,
            mem=args.mem,
            slice_width=args.slice_width,
            seed=args.seed,
            workers=args.workers,
            progress=not args.no_progress,
            **options,
        )
    summary = res.summary()
    try:
        unit = np.ldexp(res.weight, -res.scale_e)  # CSD bits do not depend on a 2**k scale
        bits = bits_for_sqnr(unit, min(res.sqnr_db, 190.0))
        csd_adds = encode(unit, bits).layer_cost("csd").graph.adds
        summary["csd"] = {"bits": bits, "adds": csd_adds}
    except ValueError:
        summary["csd"] = None
    rows = [
        ("matrix", f"{res.shape[0]} x {res.shape[1]} ({len(res.slices)} slices)"),
        ("algorithm", res.algorithm),
        ("SQNR", f"{res.sqnr_db:.2f} dB (target {res.target_sqnr_db:g})"),
        ("adds", f"{res.adds} ({res.adds_per_entry:.3f} per entry, {res.combine_adds} slice sums)"),
        ("adder depth", str(summary["adder_depth"])),
        (
            "datapath",
            f"{summary['datapath_bits']} bits for 8-bit inputs (finest bit 2^{summary['finest_bit']})",
        ),
        ("time", f"{res.seconds:.2f} s"),
    ]
    if summary["csd"]:
        c = summary["csd"]
        ratio = c["adds"] / res.adds if res.adds else float("inf")
        rows.append(("dense CSD", f"{c['adds']} adds at {c['bits']} bits ({ratio:.2f}x ours)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json is not None:
        summary["slices_detail"] = [s.to_dict() for s in res.slices]
        Path(args.json).write_text(json.dumps(summary, indent=2, default=float))
    if args.save_matrix is not None:
        np.save(args.save_matrix, res.matrix())
    if args.save_graph is not None:
        print(f"graph written to {save_graph(res.graph, args.save_graph)}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m fewops.cli.lcc``) until the main CLI wires it in."""
    parser = argparse.ArgumentParser(prog="fewops")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
