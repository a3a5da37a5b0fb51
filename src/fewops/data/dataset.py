"""The in-memory data set every loader returns, and helpers shared by the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def default_root() -> Path:
    """Where data sets are cached when no ``root`` is given: ``~/.cache/fewops``.

    Each data set lives in its own folder below it, e.g. ``~/.cache/fewops/mnist/``.
    Computed on each call (not at import) so that a changed home directory is honoured.
    """
    return Path.home() / ".cache" / "fewops"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image classification data set held in memory.

    ``x_*`` are float32 arrays shaped (N, C, H, W) with values in [0, 1]; ``y_*`` are int64
    class indices in ``range(num_classes)``. ``source`` says in words where the arrays came
    from and how they were split, so reports can cite it.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    input_shape: tuple[int, int, int]
    source: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.dtype != np.float32 or x.ndim != 4:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} must be a float32 array shaped "
                    f"(N, C, H, W), got dtype {x.dtype} and shape {x.shape}."
                )
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} images have shape {tuple(x.shape[1:])}, "
                    f"but input_shape is {tuple(self.input_shape)}."
                )
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} must be an int64 array of length "
                    f"{x.shape[0]}, got dtype {y.dtype} and shape {y.shape}."
                )
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} holds labels from {y.min()} to {y.max()}, "
                    f"outside range(num_classes={self.num_classes})."
                )

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])


def uint8_to_unit_float(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels 0..255 to float32 in [0, 1] (the scaling all loaders share)."""
    return (images.astype(np.float32) / np.float32(255.0)).astype(np.float32, copy=False)


def stratified_split(
    x: np.ndarray, y: np.ndarray, *, test_size: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out a test set with the same class proportions as the whole, reproducibly."""
    from sklearn.model_selection import train_test_split  # slow import, only needed here

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed, shuffle=True
    )
    return x_train, y_train, x_test, y_test
