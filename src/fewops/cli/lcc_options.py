"""Command-line options of ``fewops compress --method lcc`` and the demo's LCC config."""

from __future__ import annotations

import argparse

from fewops.methods.lcc.config import ALGORITHMS, LCCConfig


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``fewops compress --method lcc``."""
    parser.add_argument(
        "--algorithm", choices=ALGORITHMS, default="dmp", help="LCC algorithm (fs = fs-LCC)"
    )
    parser.add_argument("--S", type=int, default=2, help="terms per wiring row (dmp/rs)")
    parser.add_argument("--mem", type=int, default=8, help="beam width (rs)")
    parser.add_argument("--slice-width", type=int, default=None, help="columns per slice")
    parser.add_argument(
        "--target-db", type=float, default=None, help="one SQNR for every layer (no search)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="accuracy loss allowed, in points (default 0.5)",
    )
    parser.add_argument("--db-min", type=float, default=8.0)
    parser.add_argument("--db-max", type=float, default=40.0)
    parser.add_argument("--db-step", type=float, default=2.0)
    parser.add_argument(
        "--prune-lambda", type=float, default=0.0, help="group-lasso strength (0: no pruning)"
    )
    parser.add_argument(
        "--prune-layers", nargs="*", default=None, help="layers to prune (default all)"
    )
    parser.add_argument(
        "--prune-absolute",
        action="store_true",
        help="one group-lasso threshold lr*lambda for all layers (default: relative per layer)",
    )
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--prune-lr", type=float, default=1e-3)
    parser.add_argument(
        "--prune-cache", default=None, help="folder to keep and reuse pruned models in"
    )
    parser.add_argument(
        "--code-finetune-epochs",
        type=int,
        default=0,
        help="progressive coding: fine-tune the float rest this many epochs after each group",
    )
    parser.add_argument(
        "--code-groups",
        type=int,
        default=None,
        help="progressive coding: groups (default: 1 per layer)",
    )
    parser.add_argument("--code-finetune-lr", type=float, default=None)
    parser.add_argument(
        "--code-finetune-slack",
        type=float,
        default=1.0,
        help="extra proxy loss (points) allowed for a group that fine-tuning follows",
    )
    parser.add_argument(
        "--no-share", action="store_true", help="no affinity-propagation column sharing"
    )
    parser.add_argument(
        "--no-fold-batchnorm",
        action="store_true",
        help="keep BatchNorm as a per-channel affine after coded layers (default: fold it in)",
    )
    parser.add_argument("--share-margin-db", type=float, default=6.0)
    parser.add_argument(
        "--max-datapath-bits",
        type=int,
        default=64,
        help="recode a layer with grow when dmp/rs/mixed needs a wider exact datapath (0: keep)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes coding layers")
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=3,
        help="progressive coding: codings of a group (each db-step higher) before settling",
    )
    parser.add_argument(
        "--train-threads", type=int, default=None, help="torch threads while training"
    )


def config_from_args(args: argparse.Namespace) -> LCCConfig:
    """The :class:`LCCConfig` that parsed CLI options describe."""
    return LCCConfig(
        algorithm=args.algorithm,
        S=args.S,
        mem=args.mem,
        slice_width=args.slice_width,
        target_db=args.target_db,
        tolerance=args.tolerance / 100.0,
        db_min=args.db_min,
        db_max=args.db_max,
        db_step=args.db_step,
        prune_lambda=args.prune_lambda,
        prune_layers=None if args.prune_layers is None else tuple(args.prune_layers),
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        prune_relative=not args.prune_absolute,
        lr=args.prune_lr,
        prune_cache=getattr(args, "prune_cache", None),
        code_finetune_epochs=getattr(args, "code_finetune_epochs", 0),
        code_groups=getattr(args, "code_groups", None),
        code_finetune_lr=getattr(args, "code_finetune_lr", None),
        code_finetune_slack=getattr(args, "code_finetune_slack", 1.0) / 100.0,
        share=not args.no_share,
        fold_batchnorm=not getattr(args, "no_fold_batchnorm", False),
        share_margin_db=args.share_margin_db,
        max_datapath_bits=getattr(args, "max_datapath_bits", 64) or None,
        workers=args.workers,
        max_rounds=getattr(args, "max_rounds", 3),
        train_threads=getattr(args, "train_threads", None),
        seed=getattr(args, "seed", 0),
    )


def demo_config() -> LCCConfig:
    """The LCC entry of ``fewops demo`` (small MLP on digits): search, sharing, no pruning."""
    return LCCConfig(algorithm="dmp", tolerance=0.005, workers=1, search_samples=1000)
