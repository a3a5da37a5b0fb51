"""``fewops export --verilog OUT --model DIR --stream``: a whole saved network as one streaming top.

The saved integer network (``network.json`` of the model folder, exactly as simulated) becomes
the AXI-Stream top of :mod:`fewops.hw.stream.network`: OUT/NAME.v, one file per stage, and
OUT/network.json (the port contract and the cycle model). Every step or setting the streaming
top cannot build is listed in one error before any file is written.

``--testbench N --simulate`` streams the first N test images of ``--data`` (or N random images)
back to back through iverilog (or verilator) and compares every logit with the integer
simulator's, with ``--stall-percent`` random tvalid gaps and tready back-pressure after the first
images; the measured latency and II are checked against the cycle model. ``--pnr ecp5|ice40``
places and routes the top (yosys + nextpnr) and reports fmax, LUTs, flip-flops and multiplier
blocks; ``--yosys xilinx`` reports the xc7 cells.
"""

from __future__ import annotations

import json

import numpy as np

from fewops.hw.emit import check_name, check_pipeline_every
from fewops.hw.pnr import place_and_route
from fewops.hw.stream.network import emit_stream_network, unsupported
from fewops.hw.stream.network_bench import run_network_bench
from fewops.hw.tools import run_yosys
from fewops.io.limits import limits_from

CLEAN_IMAGES = 2  # images streamed without stalls first, so the cycle model is checked too


def export_stream(args) -> int:
    """Write (and optionally bench, synthesise, place and route) the streaming top."""
    # lazy: the saved-model reader needs torch; `fewops --help` and graph exports do not
    from fewops.io.coded_model import load_coded_model

    name = args.name or "network"
    check_name(name)
    check_pipeline_every(args.pipeline_every)
    if args.stall_percent is not None and not 0 <= args.stall_percent < 100:
        raise ValueError(f"--stall-percent must be in 0..99; got {args.stall_percent}.")
    saved = load_coded_model(args.model, limits=limits_from(getattr(args, "limit", None)))
    net = saved.integer_network()
    problems = unsupported(net, args.parallel)
    if problems:
        raise ValueError("The network cannot be streamed: " + "; ".join(problems) + ".")
    images = _images(net, args) if args.simulate else None
    if args.testbench and not args.simulate:
        print("note: the streaming bench is written and run together; add --simulate to run it")
    info = emit_stream_network(
        net,
        args.verilog,
        name=name,
        parallel=args.parallel,
        pipeline_every=args.pipeline_every,
        style=args.style,
        overwrite=args.overwrite,
    )
    out = info.out_dir
    c = info.contract
    print(
        f"wrote {out / (name + '.v')} and {info.json_path}: {len(info.sources) - 1} stages, "
        f"input {c['input_shape']} x {c['input_bits']} bits, {c['num_outputs']} logits x "
        f"{c['output_bits']} bits; latency {info.latency_cycles} cycles, II {info.ii_cycles} "
        "cycles per image"
    )
    manifest: dict = {"model": str(saved.path), "network": c}
    failed = False
    if images is not None:
        run = run_network_bench(
            net,
            images,
            out / "bench",
            info=info,
            clean_images=min(CLEAN_IMAGES, len(images)),
            stall_percent=args.stall_percent or 0,
            seed=args.seed,
            simulator=args.simulator,
        )
        ok = run.result.ok and run.clean_cycles_match
        failed |= not ok
        manifest["bench"] = {
            "images": len(images),
            "simulator": args.simulator,
            "passed": run.result.passed,
            "failed": run.result.failed,
            "stall_percent": args.stall_percent or 0,
            "cycle_model_matches": run.clean_cycles_match,
            "measured_latency_cycles": int(run.latencies[0]),
        }
        print(
            f"{args.simulator} {name}: {run.result.passed} images passed, {run.result.failed} "
            f"failed; cycle model {'matches' if run.clean_cycles_match else 'DIFFERS'}"
        )
        for line in run.result.mismatches[:3]:
            print(f"  {line}")
    if args.yosys is not None:
        stats = run_yosys(info.paths, name, target=args.yosys)
        manifest["yosys"] = {"target": args.yosys, "cells": stats.cells}
        print(f"yosys {args.yosys} {name}: " + json.dumps(stats.cells, sort_keys=True))
    if args.pnr is not None:
        result = place_and_route(info.paths, name, out / "pnr", target=args.pnr, freq_mhz=args.freq)
        manifest["pnr"] = result.to_dict()
        print(
            f"{args.pnr} place and route {name}: fmax {result.fmax_mhz} MHz (target "
            f"{result.constraint_mhz}), {result.luts} LUT4, {result.ffs} FF, {result.multipliers} "
            f"multiplier blocks; {result.tools['nextpnr']}"
        )
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out / 'export.json'}")
    return 1 if failed else 0


def _images(net, args) -> np.ndarray:
    """The bench's float images: the first N test images of --data, else N random ones."""
    n = args.testbench
    shape = tuple(net.input.shape)
    if args.data:
        from fewops.data import load  # lazy: data sets pull in torch and file readers

        x = load(args.data, seed=args.seed).x_test[:n]
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"Data set {args.data!r} has images of shape {tuple(x.shape[1:])}, but the "
                f"network reads {shape}."
            )
        return np.asarray(x, dtype=np.float64)
    return np.random.default_rng(args.seed).random((n, *shape))


def stream_options(p) -> None:
    """The --stream options of ``fewops export``."""
    p.add_argument(
        "--stream",
        action="store_true",
        help="--model: the whole network as one AXI-Stream top (CNNs too), with network.json",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="P",
        help="--stream: kernel copies per layer (only 1 is built; II is one cycle per pixel)",
    )
    p.add_argument(
        "--stall-percent",
        type=int,
        default=None,
        metavar="PCT",
        help="--stream bench: random tvalid gaps and tready stalls, percent per cycle (default 0)",
    )
    p.add_argument(
        "--simulator",
        choices=("iverilog", "verilator"),
        default="iverilog",
        help="--stream bench simulator (default iverilog)",
    )
    p.add_argument(
        "--pnr",
        choices=("ecp5", "ice40"),
        default=None,
        help="--stream: place and route (yosys + nextpnr): fmax, LUT4, FF, multiplier blocks",
    )
    p.add_argument("--freq", type=float, default=100.0, help="--pnr target clock in MHz")
