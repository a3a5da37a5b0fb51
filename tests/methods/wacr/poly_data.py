"""A tiny two-channel image task shared by the polynomial-training tests."""

from types import SimpleNamespace

import numpy as np
import torch


def toy_images(n: int = 64) -> SimpleNamespace:
    """n 2x6x6 images; the label says whether channel 0's top half outweighs channel 1's bottom."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 2, 6, 6, generator=g).numpy()
    y = (x[:, 0, :3].sum(axis=(1, 2)) > x[:, 1, 3:].sum(axis=(1, 2))).astype(np.int64)
    return SimpleNamespace(x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
