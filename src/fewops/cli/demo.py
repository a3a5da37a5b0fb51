"""``fewops demo``: train an MLP on digits, code it with every method, simulate it, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewops.report.jobs import run_demo, summary


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="train an MLP on digits, code it with every method, report"
    )
    p.add_argument("--out", default="fewops-demo", help="output folder (default fewops-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of training and coding (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    report = run_demo(Path(args.out), seed=args.seed, progress=not args.quiet)
    print(summary(report))
    print(f"\nwrote {args.out}/report.json, report.md, pareto.png in {report['seconds']} s")
    return 0
