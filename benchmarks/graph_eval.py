"""Graph evaluation speed: a CSD-coded 1024 x 1024 matrix on 1,000 vectors (target: under 5 s).

Prints the time of the bit-exact integer simulator beside a numpy float matmul of the same size,
and checks the simulator's outputs against an exact integer matmul.

    python benchmarks/graph_eval.py [--size 1024] [--vectors 1000] [--bits 8]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from fewops.codes import csd
from fewops.cost import count_graph
from fewops.sim.evaluate import evaluate


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--vectors", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=8, help="CSD weight width")
    parser.add_argument("--input-bits", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.size, args.size))
    t0 = time.perf_counter()
    coded = csd.encode(w, args.bits)
    t_encode = time.perf_counter() - t0
    cost = count_graph(coded.graph)
    top = 2 ** (args.input_bits - 1)
    x = rng.integers(-top, top, size=(args.vectors, args.size))

    xf = x.astype(np.float64)
    t_float = min(_timed(lambda: xf @ w.T) for _ in range(3))

    evaluate(coded.graph, x[:2], threads=args.threads)  # builds the evaluation plan once
    t0 = time.perf_counter()
    y = evaluate(coded.graph, x, threads=args.threads)
    t_sim = time.perf_counter() - t0

    xf = x.astype(np.float64)
    t0 = time.perf_counter()
    ref = xf @ coded.matrix.T
    t_float = time.perf_counter() - t0
    exact = np.array_equal(
        np.ldexp(y.astype(np.float64), -coded.graph.output_scale) * coded.scale, ref
    )

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    print(
        f"CSD {args.bits}-bit {args.size}x{args.size}: {cost.adds:,} adds, {coded.graph.num_nodes:,} nodes "
        f"(encode {t_encode:.2f} s)"
    )
    print(
        f"integer simulation of {args.vectors} vectors: {t_sim:.2f} s "
        f"({cost.adds * args.vectors / t_sim / 1e9:.2f} G adds/s)  target < 5 s: "
        f"{'met' if t_sim < 5 else 'MISSED'}"
    )
    print(
        f"numpy float64 matmul, same size: {t_float:.4f} s  (ratio sim/float {t_sim / t_float:.0f}x)"
    )
    print(f"simulation equals W_hat @ x exactly: {exact}")
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
