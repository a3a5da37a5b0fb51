"""Coding ResNet-34's layers with 1 and 2 local workers and on a local 2-worker Dask cluster.

    python benchmarks/parallel.py                         # all 37 coded layers (minutes)
    python benchmarks/parallel.py --layers 8 --max-entries 300000 --out benchmarks/results/parallel.md

Every run codes the same layers (random He-initialised weights, seed 0, every layer at
``--target-db`` with ``--algorithm``, no column sharing) through
``fewops.methods.lcc.search.code_layers``, the step of the network pipeline that runs in
parallel, and must give identical codes. Printed: the wall time of each run, the speedup of 2
local workers over 1 (target >= 1.7x on 2 idle cores) and the Dask overhead against 2 local
workers (target <= 10%). The local pool and the Dask cluster are started and warmed up before
their timed runs (their start-up is printed apart).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fewops.methods.lcc import LCCCode, LCCConfig
from fewops.methods.lcc.search import code_layers
from fewops.models import build
from fewops.nn.coded import layer_matrix
from fewops.parallel import cluster, pmap
from fewops.parallel.loopback import loopback_cluster


def resnet34_layers(count: int | None, max_entries: int | None) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = build("resnet34", (3, 224, 224), 1000).eval()
    names = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)
    ]
    mats = {n: layer_matrix(model.get_submodule(n)).numpy().astype(np.float64) for n in names}
    if max_entries is not None:
        mats = {n: w for n, w in mats.items() if w.size <= max_entries}
    if count is not None and count < len(mats):
        keep = np.linspace(0, len(mats) - 1, count).round().astype(int)
        names = list(mats)
        mats = {names[i]: mats[names[i]] for i in keep}
    return mats


def _noop(i: int) -> int:
    return i


def timed(mats, cfg, workers):
    levels = dict.fromkeys(mats, cfg.code.target_db)
    t0 = time.perf_counter()
    coded, _ = code_layers(mats, levels, cfg, workers=workers)
    return time.perf_counter() - t0, coded


def same(a: dict, b: dict) -> bool:
    return all(
        np.array_equal(getattr(a[n].graph, k), getattr(b[n].graph, k))
        for n in a
        for k in ("op", "a", "b", "sa", "sb", "const")
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=None, help="a spread subset of this many layers")
    p.add_argument("--max-entries", type=int, default=None, help="only layers this small")
    p.add_argument("--target-db", type=float, default=40.0)
    p.add_argument("--algorithm", default="dmp")
    p.add_argument("--out", type=Path, default=None, help="write the results (markdown) here")
    args = p.parse_args(argv)
    mats = resnet34_layers(args.layers, args.max_entries)
    entries = sum(w.size for w in mats.values())
    cfg = LCCConfig(code=LCCCode(target_db=args.target_db, algorithm=args.algorithm), share=False)
    print(
        f"{len(mats)} ResNet-34 layers, {entries:,} entries, {args.algorithm} at "
        f"{args.target_db} dB; load {os.getloadavg()}",
        flush=True,
    )

    t1, c1 = timed(mats, cfg, 1)
    print(f"1 local worker:   {t1:8.2f} s", flush=True)
    t0 = time.perf_counter()
    pmap(_noop, range(2), workers=2)  # start (and warm) the loky pool
    pool_start = time.perf_counter() - t0
    t2, c2 = timed(mats, cfg, 2)
    print(
        f"2 local workers:  {t2:8.2f} s  (pool start {pool_start:.2f} s, not counted)", flush=True
    )
    t0 = time.perf_counter()
    with loopback_cluster(workers=2) as lc, cluster(lc.address):
        dask_start = time.perf_counter() - t0
        pmap(_noop, range(2))  # warm the workers' imports
        td, cd = timed(mats, cfg, None)
    print(
        f"Dask, 2 workers:  {td:8.2f} s  (cluster start {dask_start:.2f} s, not counted)",
        flush=True,
    )
    identical = same(c1, c2) and same(c1, cd)
    speedup, overhead = t1 / t2, td / t2 - 1
    lines = [
        f"speedup 2 local workers vs 1: {speedup:.2f}x (target >= 1.7x)",
        f"Dask overhead vs 2 local workers: {100 * overhead:+.1f}% (target <= +10%)",
        f"identical codes in all three runs: {identical}",
        f"load average at the end: {os.getloadavg()}",
    ]
    print("\n".join(lines))
    if args.out is not None:
        command = "python benchmarks/parallel.py " + " ".join(argv or sys.argv[1:])
        machine = (
            f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        text = [
            "# parallel results",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine}",
            "",
            "```",
            f"{len(mats)} ResNet-34 layers, {entries:,} entries, {args.algorithm} at "
            f"{args.target_db} dB",
            f"1 local worker:  {t1:.2f} s",
            f"2 local workers: {t2:.2f} s (pool start {pool_start:.2f} s, not counted)",
            f"Dask, 2 workers: {td:.2f} s (cluster start {dask_start:.2f} s, not counted)",
            *lines,
            "```",
            "",
        ]
        args.out.write_text("\n".join(text))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
