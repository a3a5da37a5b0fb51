"""Checks shared by the polynomial-code tests (1-D families and multi-axis families)."""

import numpy as np

from fewops.sim import evaluate as simulate


def assert_graph_equals_integer_product(coded, w_hat: np.ndarray, rng) -> None:
    """The coded graph with reuse, simulated bit-exactly, equals x @ W_int.T for random inputs."""
    x = rng.integers(-128, 128, size=(16, w_hat.shape[1]))
    y = simulate(coded.graph, x)
    w_int = np.ldexp(w_hat, -coded.scale_e)
    assert np.array_equal(w_int, np.round(w_int))
    expected = x @ w_int.astype(np.int64).T
    got = np.ldexp(y.astype(np.float64), -coded.graph.output_scale)
    assert np.array_equal(got, expected.astype(np.float64))
