"""Your own data, in any of the forms people have it: ``as_dataset(obj)`` -> one data set type.

Every place where data enters fewops (``compress_`` of the methods that retrain, ``run_method``,
``fewops compress --data file.npz``) goes through :func:`as_dataset`, which accepts

* a fewops data set (:class:`~fewops.data.dataset.Dataset`, :class:`ArrayDataset`) or its name
  (``"digits"``, ``"mnist"``, ...);
* training data alone: ``(x, y)`` as numpy arrays or torch tensors, a torch ``Dataset`` of
  ``(x, y)`` pairs, or a ``DataLoader`` yielding ``(x, y)`` batches;
* training and test data: a pair of those, ``((x_train, y_train), (x_test, y_test))`` (or
  ``(train_loader, test_loader)``), or any object with ``x_train, y_train`` (and optionally
  ``x_test, y_test``) attributes;
* a ``.npz`` file through :func:`load_npz` (arrays ``x_train, y_train, x_test, y_test``).

Inputs keep their per-sample shape (flat vectors (N, F) or images (N, C, H, W)) and become
float32; labels become int64 class indices. Without a test split the test arrays are empty:
enough to retrain, not to report an accuracy (``run_method`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from fewops.data.dataset import Dataset
from fewops.data.registry import load

ACCEPTED = (
    "a fewops Dataset or data set name, (x, y) arrays or tensors, a torch Dataset or DataLoader "
    "of (x, y), a pair ((x_train, y_train), (x_test, y_test)) of those, or an object with "
    "x_train and y_train"
)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled data set of any per-sample shape, held in memory (the fewops Dataset's fields).

    ``x_*`` are float32 arrays shaped (N, *input_shape); ``y_*`` int64 labels in
    ``range(num_classes)``. The test split may be empty (N = 0).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    input_shape: tuple[int, ...]
    source: str = ""

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])


def as_dataset(obj, *, name: str = "data") -> Dataset | ArrayDataset:
    """The data set ``obj`` stands for (see the module docstring for the accepted forms).

    A TypeError names the type that is not data; a ValueError names inconsistent arrays.
    """
    if isinstance(obj, Dataset | ArrayDataset):
        return obj
    if isinstance(obj, str):
        return load(obj)
    if isinstance(obj, Path) or obj is None:
        raise TypeError(f"Data must be {ACCEPTED}; got {type(obj).__name__} {obj!r}.")
    if hasattr(obj, "x_train") and hasattr(obj, "y_train"):
        train = _checked(obj.x_train, obj.y_train, "x_train", "y_train")
        x_test, y_test = getattr(obj, "x_test", None), getattr(obj, "y_test", None)
        has_test = x_test is not None and y_test is not None
        test = _checked(x_test, y_test, "x_test", "y_test") if has_test else None
        return _build(train, test, getattr(obj, "name", name), f"{type(obj).__name__} arrays")
    if isinstance(obj, tuple | list) and len(obj) == 2:
        first, second = obj
        if _is_array(first):
            return _build(_checked(first, second, "x", "y"), None, name, "(x, y) arrays")
        train = _pairs(first, "the training data")
        test = _pairs(second, "the test data")
        return _build(train, test, name, "train and test pairs")
    if isinstance(obj, DataLoader | TorchDataset):
        return _build(_pairs(obj, "the data"), None, name, type(obj).__name__)
    raise TypeError(f"Data must be {ACCEPTED}; got {type(obj).__name__}.")


def load_npz(path: str | Path) -> ArrayDataset:
    """A data set from a ``.npz`` file holding ``x_train, y_train, x_test, y_test`` (no pickles:
    object arrays are refused)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No data file at {str(path)!r} (expected a .npz with {NPZ_KEYS}).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise ValueError(
                    f"Data file {str(path)!r} lacks {', '.join(missing)}; it holds "
                    f"{', '.join(archive.files) or 'no arrays'} (expected {', '.join(NPZ_KEYS)})."
                )
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except (OSError, EOFError) as exc:  # not a zip, truncated
        raise ValueError(
            f"Data file {str(path)!r} is not a readable .npz archive ({exc})."
        ) from None
    except ValueError as exc:
        if "lacks" in str(exc):
            raise
        raise ValueError(
            f"Data file {str(path)!r} cannot be read without pickle ({exc})."
        ) from None
    train = _checked(arrays["x_train"], arrays["y_train"], "x_train", "y_train")
    test = _checked(arrays["x_test"], arrays["y_test"], "x_test", "y_test")
    return _build(train, test, path.stem, f"{path.name}")


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray | torch.Tensor)


def _pairs(part, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays of one split given as arrays, a torch Dataset or a DataLoader."""
    if isinstance(part, tuple | list) and len(part) == 2 and _is_array(part[0]):
        return _checked(part[0], part[1], "x", "y")
    if isinstance(part, DataLoader):
        batches = [_sample(batch, what, "batch") for batch in part]
        if not batches:
            raise ValueError(f"The DataLoader of {what} yields no batch.")
        xs = [np.asarray(_numpy(b[0])) for b in batches]
        ys = [np.asarray(_numpy(b[1])).reshape(-1) for b in batches]
        return _checked(np.concatenate(xs), np.concatenate(ys), "x", "y")
    if isinstance(part, TorchDataset) and hasattr(part, "__len__"):
        items = [_sample(part[i], what, "item") for i in range(len(part))]
        if not items:
            raise ValueError(f"The torch Dataset of {what} is empty.")
        x = np.stack([np.asarray(_numpy(item[0])) for item in items])
        y = np.array([int(np.asarray(_numpy(item[1])).reshape(())) for item in items])
        return _checked(x, y, "x", "y")
    raise TypeError(
        f"{what[0].upper() + what[1:]} must be (x, y) arrays or tensors, a torch Dataset or a "
        f"DataLoader of (x, y); got {type(part).__name__}."
    )


def _sample(item, what: str, kind: str):
    if not (isinstance(item, tuple | list) and len(item) >= 2):
        raise TypeError(f"Each {kind} of {what} must be an (x, y) pair; got {type(item).__name__}.")
    return item


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _checked(x, y, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(_numpy(x))
    y = np.asarray(_numpy(y))
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{x_name} must hold numbers; got dtype {x.dtype}.")
    if x.ndim < 2:
        raise ValueError(
            f"{x_name} must be shaped (N, features) or (N, C, H, W); got shape {x.shape}."
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{y_name} must hold one label per sample of {x_name} ({x.shape[0]}); "
            f"got shape {y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                f"{y_name} must hold integer class indices; got dtype {y.dtype} "
                f"(e.g. {y.reshape(-1)[:3].tolist()})."
            )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{y_name} holds a negative label ({int(y.min())}); labels are 0, 1, ...")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{x_name} holds NaN or infinite values.")
    return x, y


def _build(train, test, name: str, source: str) -> ArrayDataset:
    x_train, y_train = train
    if x_train.shape[0] == 0:
        raise ValueError("The training data hold no sample.")
    if test is None:
        x_test = np.zeros((0, *x_train.shape[1:]), np.float32)
        y_test = np.zeros(0, np.int64)
    else:
        x_test, y_test = test
        if x_test.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                f"Test samples are shaped {x_test.shape[1:]}, training samples "
                f"{x_train.shape[1:]}; they must match."
            )
    top = max(int(y_train.max()), int(y_test.max()) if y_test.size else 0)
    return ArrayDataset(
        name=str(name),
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=top + 1,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        source=f"{source}: {len(y_train)} train / {len(y_test)} test",
    )
