"""``fewops compress --method M``: train or load a float model, code it, simulate it, report.

The method's options are generated from its config dataclass (:mod:`fewops.cli.options`), on top
of a named preset (``--preset``, default ``default``), so every API field has its option and the
two cannot drift. ``fewops compress --method M --help`` lists them; without ``--method`` the help
lists every method's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewops.cli.options import add_config_options, config_from_options, refuse_unknown
from fewops.methods.registry import METHODS, method
from fewops.nn.api import check_overrides
from fewops.report.jobs import run_compress, summary


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=list(METHODS), help="the coding method")
    parser.add_argument(
        "--preset", default="default", help="named method settings to start from (default default)"
    )
    parser.add_argument(
        "--model", default="mlp", help="mlp, lenet5, mnist-cnn, resnet20, resnet34, vgg16"
    )
    parser.add_argument(
        "--data", default="digits", help="digits, mnist, fashion-mnist, cifar10, ..."
    )
    parser.add_argument(
        "--data-root", default=None, help="data cache folder (default ~/.cache/fewops)"
    )
    parser.add_argument("--out", help="output folder (report.json, report.md, the coded model)")
    parser.add_argument(
        "--float-epochs", type=int, default=10, help="float model training epochs (default 10)"
    )
    parser.add_argument(
        "--float-lr", type=float, default=1e-3, help="float model learning rate (default 1e-3)"
    )
    parser.add_argument("--hidden", type=int, nargs="*", default=None, help="mlp hidden sizes")
    parser.add_argument(
        "--float-seed", type=int, default=0, help="seed of the data split and float model"
    )
    parser.add_argument(
        "--act-bits", type=int, default=8, help="activation width in simulation (default 8)"
    )
    parser.add_argument(
        "--no-simulate", action="store_true", help="count only (skip the integer simulation)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _methods_epilog() -> str:
    lines = ["method options (see fewops compress --method M --help):"]
    for entry in METHODS.values():
        probe = argparse.ArgumentParser(add_help=False)
        add_config_options(probe, entry.config())
        flags = [a.option_strings[0] for a in probe._actions if a.option_strings]
        lines.append(f"  {entry.name} ({entry.summary}): {' '.join(flags)}")
        lines.append(f"      presets: {', '.join(entry.presets)}")
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compress",
        allow_abbrev=False,
        help="train or load a float model, code it, simulate it, report (method options follow)",
        epilog=_methods_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    return p


def build_parser(method_name: str | None, preset: str = "default") -> argparse.ArgumentParser:
    """The full parser of ``fewops compress``, with ``method_name``'s options when given."""
    parser = argparse.ArgumentParser(
        prog="fewops compress" + (f" --method {method_name}" if method_name else ""),
        allow_abbrev=False,  # a misspelt option must be refused, not matched to a prefix
        description=__doc__.split("\n\n")[0],
        epilog=None if method_name else _methods_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    if method_name:
        group = parser.add_argument_group(f"{method_name} options (defaults: preset {preset!r})")
        add_config_options(group, method(method_name).config(preset))
    return parser


def main(argv: list[str]) -> int:
    first = argparse.ArgumentParser(prog="fewops compress", add_help=False, allow_abbrev=False)
    first.add_argument("--method", choices=list(METHODS))
    first.add_argument("--preset", default="default")
    known, _ = first.parse_known_args(argv)
    if known.method:
        method(known.method).config(known.preset)  # an unknown preset: one clear error first
    parser = build_parser(known.method, known.preset)
    args, extra = parser.parse_known_args(argv)
    refuse_unknown(parser, extra)
    if not args.method:
        parser.error("the following arguments are required: --method")
    if not args.out:
        parser.error("the following arguments are required: --out")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} is a file; give a folder (it is created if missing).")
    config = config_from_options(method(args.method).config(args.preset), args)
    check_overrides(config)  # a bad --layer-overrides key fails now, not after training
    report = run_compress(
        args.method,
        config,
        out,
        model_name=args.model,
        data=args.data,
        data_root=args.data_root,
        float_epochs=args.float_epochs,
        float_lr=args.float_lr,
        hidden=tuple(args.hidden) if args.hidden else None,
        seed=args.float_seed,
        act_bits=args.act_bits,
        simulate=not args.no_simulate,
        progress=not args.quiet,
    )
    print(summary(report))
    print(f"\nwrote {out}/report.json, report.md, pareto.png and the coded model {out}/model/")
    return 0
