"""Toy 3-class data on 1x4x4 images for the LCC pipeline tests (prototypes plus noise)."""

import numpy as np

from fewops.data import Dataset


def toy_data(n=600, seed=0, noise=0.15, dead_pixels=0):
    """Half train, half test; the first ``dead_pixels`` pixels are always zero."""
    rng = np.random.default_rng(seed)
    proto = rng.uniform(0, 1, size=(3, 16)).astype(np.float32)
    proto[:, :dead_pixels] = 0
    y = rng.integers(0, 3, size=n).astype(np.int64)
    x = np.clip(proto[y] + noise * rng.standard_normal((n, 16)), 0, 1).astype(np.float32)
    x[:, :dead_pixels] = 0
    x = x.reshape(n, 1, 4, 4)
    return Dataset(
        name="toy",
        x_train=x[: n // 2],
        y_train=y[: n // 2],
        x_test=x[n // 2 :],
        y_test=y[n // 2 :],
        num_classes=3,
        input_shape=(1, 4, 4),
    )
