"""Streaming CNN tops (issue 20): bit-exactness on real test images, cycles, synthesis, P&R.

    python benchmarks/stream_network.py --model /tmp/run_lenet_lcc --data mnist --images 1000 \
        --stall-percent 10 --out benchmarks/results/stream_network.md
    python benchmarks/stream_network.py --model DIR --pnr-stages ecp5 --pipeline 0 2 ...

For each saved model (``fewops compress --out DIR``): the streaming top is generated from the
saved integer network (timed), the first N test images stream back to back through the simulator
twice, without and with random tvalid gaps / tready stalls, and every logit is compared with
``Network.run``; the measured latency and II of the clean images are compared with the cycle
model. ``--pnr-stages`` places and routes each kernel stage on its own (the whole design when
``--pnr-whole``), once per ``--pipeline`` setting (0: combinational kernels), to show what
pipelining does to fmax. Results name the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from fewops.data import load
from fewops.hw.pnr import place_and_route
from fewops.hw.stream.network import emit_stream_network
from fewops.hw.stream.network_bench import run_network_bench
from fewops.io.coded_model import load_coded_model
from fewops.network.cost import count_network


def bench_model(folder: str, args, lines: list[str], record: dict) -> None:
    saved = load_coded_model(folder)
    net = saved.integer_network()
    data = load(args.data, seed=0)
    x, y = data.x_test[: args.images], data.y_test[: args.images]
    cost = count_network(net)
    kernel_adds = sum(layer.graph.adds for layer in cost.layers)
    kernel_luts = sum(layer.graph.luts_est for layer in cost.layers)
    lines.append(f"\n## {folder} ({saved.method}), {len(x)} {args.data} test images\n")
    lines.append(
        f"Network: {cost.totals()['adds']:,} adds per inference; the streaming top builds each "
        f"layer's kernel once: {kernel_adds:,} adders, {kernel_luts:,} estimated xc7 LUTs."
    )
    entry: dict = {"model": folder, "method": saved.method, "images": len(x), "runs": []}
    with tempfile.TemporaryDirectory(prefix="fewops_stream_") as tmp:
        start = time.perf_counter()
        info = emit_stream_network(net, Path(tmp) / "rtl", style="always")
        gen = time.perf_counter() - start
        lines.append(
            f"\nGenerated in {gen:.1f} s: {len(info.sources) - 1} stages, latency "
            f"{info.latency_cycles} cycles, II {info.ii_cycles} cycles per image (input pixels "
            f"per image: {info.pixels}).\n"
        )
        lines.append("| stalls | images | passed | failed | cycle model | accuracy | sim s |")
        lines.append("|---|---|---|---|---|---|---|")
        t = net.run(x)
        accuracy = float((t.argmax(1) == y).mean())
        for stall in (0, args.stall_percent):
            start = time.perf_counter()
            run = run_network_bench(
                net,
                x,
                Path(tmp) / f"bench{stall}",
                info=info,
                clean_images=min(2, len(x)),
                stall_percent=stall,
                simulator=args.simulator,
                timeout=args.timeout,
            )
            secs = time.perf_counter() - start
            lines.append(
                f"| {stall}% | {len(x)} | {run.result.passed} | {run.result.failed} | "
                f"{'equal' if run.clean_cycles_match else 'DIFFERS'} | {accuracy:.2%} | {secs:.0f} |"
            )
            entry["runs"].append(
                {
                    "stall_percent": stall,
                    "passed": run.result.passed,
                    "failed": run.result.failed,
                    "cycle_model_matches": run.clean_cycles_match,
                    "measured_latency": int(run.latencies[0]),
                    "seconds": round(secs, 1),
                }
            )
            print(lines[-1], flush=True)
        entry.update(latency=info.latency_cycles, ii=info.ii_cycles, generate_s=round(gen, 2))
        if args.pnr_stages:
            entry["pnr"] = pnr_table(net, args, lines, Path(tmp))
    record["models"].append(entry)


def pnr_table(net, args, lines: list[str], tmp: Path) -> list[dict]:
    lines.append(
        f"\nPlace and route ({args.pnr_stages}, yosys + nextpnr, target {args.freq} MHz), per "
        "kernel stage alone (kernel, scale, bias, requantize, FIFO), or the whole top "
        "(--pnr-whole):\n"
    )
    lines.append("| design | pipeline_every | fmax MHz | LUT4 | FF | multiplier blocks | s |")
    lines.append("|---|---|---|---|---|---|---|")
    out = []
    for every in args.pipeline:
        pe = every or None
        info = emit_stream_network(net, tmp / f"pnr{every}", pipeline_every=pe)
        if args.pnr_whole:
            designs = [(info.module, info.paths)]
        else:
            designs = [
                (s.text.module, [info.out_dir / f"{s.text.module}.v"])
                for s in info.stages
                if s.text.module.endswith("kernel")
            ][: args.pnr_kernels]
        for module, paths in designs:
            try:
                r = place_and_route(
                    paths,
                    module,
                    tmp / f"pnr{every}_{module}",
                    target=args.pnr_stages,
                    freq_mhz=args.freq,
                )
            except RuntimeError as exc:  # e.g. more cells than the device has: say so, go on
                lines.append(f"| {module} | {pe} | failed: {str(exc).splitlines()[0][:80]} |")
                print(lines[-1], flush=True)
                continue
            lines.append(
                f"| {module} | {pe} | {r.fmax_mhz} | {r.luts:,} | {r.ffs:,} | {r.multipliers} | "
                f"{r.seconds:.0f} |"
            )
            print(lines[-1], flush=True)
            out.append({"design": module, "pipeline_every": pe, **r.to_dict()})
    if out:
        lines.append(f"\nTools: {out[0]['tools']}.")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="a saved model folder")
    p.add_argument("--data", default="mnist")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--stall-percent", type=int, default=10)
    p.add_argument("--simulator", choices=("iverilog", "verilator"), default="iverilog")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--pnr-stages", choices=("ecp5", "ice40"), default=None)
    p.add_argument("--pnr-whole", action="store_true")
    p.add_argument(
        "--pnr-kernels", type=int, default=None, help="place and route only the first N kernels"
    )
    p.add_argument("--pipeline", type=int, nargs="+", default=[0, 2])
    p.add_argument("--freq", type=float, default=100.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    lines = [
        "# Streaming CNN tops: bit-exact on test images, cycles, place and route",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{platform.python_version()}, {platform.node()}",
    ]
    record: dict = {"command": " ".join(sys.argv), "models": []}
    for folder in args.model:
        bench_model(folder, args, lines, record)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
