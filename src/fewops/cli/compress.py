"""``fewops compress --method M``: train or load a float model, code it, simulate it, report.

The method's options are generated from its config dataclass (:mod:`fewops.cli.options`), on top
of a named preset (``--preset``, default ``default``), so every API field has its option and the
two cannot drift. ``fewops compress --method M --help`` lists them; without ``--method`` the help
lists every method's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from fewops.cli.options import add_config_options, config_from_options, refuse_unknown
from fewops.data import load
from fewops.data.adapt import load_npz
from fewops.methods.registry import METHODS, method
from fewops.nn.api import check_overrides
from fewops.parallel import cluster
from fewops.report.jobs import run_compress, summary
from fewops.train.fit import fit


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=list(METHODS), help="the coding method")
    parser.add_argument(
        "--preset",
        default=None,
        help="named method settings to start from (default: the preset measured best for "
        "--model and --data, else 'default'; presets are listed below)",
    )
    parser.add_argument(
        "--model",
        default="mlp",
        help="mlp, lenet5, mnist-cnn, resnet20, resnet34, vgg16, or your own nn.Module as "
        "package.module:factory (factory() returns it; the current folder is importable)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="trained weights of --model package.module:factory, a .safetensors state dict "
        "(without it the model is trained for --float-epochs)",
    )
    parser.add_argument(
        "--data",
        default="digits",
        help="digits, mnist, fashion-mnist, cifar10, ..., or a .npz file holding x_train, "
        "y_train, x_test, y_test (no pickles)",
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
    parser.add_argument(
        "--workers", type=int, default=None, help="processes coding layers (default: CPU count)"
    )
    parser.add_argument(
        "--cluster",
        default=None,
        help="Dask scheduler tcp://HOST:PORT to code layers on (see docs/parallel.md)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run with other settings in --out (default: refuse; the same settings "
        "resume it)",
    )


def _methods_epilog() -> str:
    lines = ["method options (see fewops compress --method M --help):"]
    for entry in METHODS.values():
        probe = argparse.ArgumentParser(add_help=False)
        add_config_options(probe, entry.config())
        flags = [a.option_strings[0] for a in probe._actions if a.option_strings]
        lines.append(f"  {entry.name} ({entry.summary}): {' '.join(flags)}")
        lines.append(f"      presets: {', '.join(entry.presets)}")
        if entry.family_defaults:
            picks = ", ".join(f"{k} -> {v}" for k, v in entry.family_defaults.items())
            lines.append(f"      default per model[/data]: {picks}")
    return "\n".join(lines)


def is_custom_model(name: str) -> bool:
    """Whether ``--model`` names a factory (``package.module:factory``) rather than a zoo model."""
    return ":" in name


def custom_model(spec: str, weights: str | None) -> nn.Module:
    """The nn.Module that ``package.module:factory`` builds, with ``weights`` loaded (safetensors,
    strict: every tensor must match)."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"--model {spec!r} must be package.module:factory.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own module, next to where they run fewops
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--model {spec!r}: cannot import {module_name!r} ({exc}).") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: {module_name!r} has no callable {factory_name!r}.")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"--model {spec!r}: {factory_name}() returned {type(model).__name__}, not an nn.Module."
        )
    if weights is not None:
        try:
            state = load_file(weights)
        except (OSError, SafetensorError) as exc:
            raise ValueError(
                f"--weights {weights!r} is not a readable .safetensors file ({exc})."
            ) from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"--weights {weights!r} do not fit --model {spec!r}: {exc}") from None
    return model.eval()


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


# What the refusal of an unmeasured default adds: how to go ahead on purpose.
BLIND_DEFAULT_HINT = "To code with the generic default anyway, pass --preset default."


def main(argv: list[str]) -> int:
    first = argparse.ArgumentParser(prog="fewops compress", add_help=False, allow_abbrev=False)
    first.add_argument("--method", choices=list(METHODS))
    first.add_argument("--preset", default=None)
    first.add_argument("--model", default="mlp")
    first.add_argument("--data", default="digits")
    known, _ = first.parse_known_args(argv)
    preset = known.preset
    if known.method:
        preset = preset or method(known.method).preset_for(known.model, known.data)
        method(known.method).config(preset)  # an unknown preset: one clear error first
    parser = build_parser(known.method, preset or "default")
    args, extra = parser.parse_known_args(argv)
    refuse_unknown(parser, extra)
    if not args.method:
        parser.error("the following arguments are required: --method")
    if not args.out:
        parser.error("the following arguments are required: --out")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} is a file; give a folder (it is created if missing).")
    if args.weights is not None and not is_custom_model(args.model):
        parser.error("--weights goes with --model package.module:factory (your own model).")
    entry = method(args.method)
    base = entry.config(preset)
    config = config_from_options(base, args)
    if args.preset is None and preset == "default" and entry.fallback_note:
        if config == base:
            # Nothing measured and nothing asked for: coding blind would report chance.
            parser.error(f"{entry.fallback_note} {BLIND_DEFAULT_HINT}")
        print(f"fewops compress: note: {entry.fallback_note}", file=sys.stderr)
    check_overrides(config)  # a bad --layer-overrides key fails now, not after training
    dataset = model = None
    try:
        if args.data.endswith(".npz"):
            dataset = load_npz(args.data)
        if is_custom_model(args.model):
            torch.manual_seed(args.float_seed)  # the factory's initial weights, reproducibly
            model = custom_model(args.model, args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    if model is not None and args.weights is None:
        data = (
            dataset
            if dataset is not None
            else load(args.data, args.data_root, seed=args.float_seed)
        )
        model.train()
        fit(
            model,
            data,
            epochs=args.float_epochs,
            lr=args.float_lr,
            seed=args.float_seed,
            progress=not args.quiet,
        )
        model.eval()
    with cluster(args.cluster) if args.cluster else contextlib.nullcontext():
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
            model=model,
            dataset=dataset,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    print(summary(report))
    print(f"\nwrote {out}/report.json, report.md, pareto.png and the coded model {out}/model/")
    return 0
