"""CIFAR-10 and CIFAR-100 from their *binary* versions (never the pickled ones).

CIFAR-10 binary: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``; each
record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
32x32). CIFAR-100 binary: ``train.bin`` and ``test.bin``; each record is a coarse label byte,
a fine label byte, then the same 3072 pixel bytes. The fine (100-class) label is used.

Files are looked for in ``root/cifar10/cifar-10-batches-bin/`` (the folder the official
archive unpacks to) or directly in ``root/cifar10/``; likewise ``root/cifar100/`` with
``cifar-100-binary/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewops.data.dataset import Dataset, default_root, uint8_to_unit_float

_IMAGE_BYTES = 3 * 32 * 32
# Largest CIFAR binary file read: 256 MiB (CIFAR-100's train.bin is 154 MB).
CIFAR_MAX_BYTES = 256 << 20

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch.bin",)
CIFAR100_TRAIN_FILES = ("train.bin",)
CIFAR100_TEST_FILES = ("test.bin",)


def read_cifar_binary(
    path: str | Path,
    *,
    label_bytes: int,
    label_index: int,
    num_classes: int,
    max_bytes: int = CIFAR_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary file into uint8 images (N, 3, 32, 32) and int64 labels.

    ``label_bytes`` is 1 for CIFAR-10 and 2 for CIFAR-100; ``label_index`` picks which label
    byte to keep (1 = fine for CIFAR-100).
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"The CIFAR binary file {path} is {size} bytes, beyond the limit max_bytes="
            f"{max_bytes}; pass a larger max_bytes to read it."
        )
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + _IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise ValueError(
            f"The CIFAR binary file {path} has the wrong length: {raw.size} bytes is not a "
            f"positive multiple of the {record}-byte record ({label_bytes} label byte(s) + "
            f"{_IMAGE_BYTES} pixel bytes)."
        )
    records = raw.reshape(-1, record)
    labels = records[:, label_index].astype(np.int64)
    if int(labels.max()) >= num_classes:
        raise ValueError(
            f"The CIFAR binary file {path} holds label {int(labels.max())}, but the data set "
            f"has {num_classes} classes: is it the right file for this data set?"
        )
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, labels


def _find_folder(base: Path, subfolder: str, needed: tuple[str, ...]) -> Path | None:
    for folder in (base / subfolder, base):
        if all((folder / name).is_file() for name in needed):
            return folder
    return None


def _load(
    name: str,
    root: Path | None,
    *,
    subfolder: str,
    train_files: tuple[str, ...],
    test_files: tuple[str, ...],
    label_bytes: int,
    num_classes: int,
) -> Dataset:
    base = (default_root() if root is None else Path(root)) / name
    folder = _find_folder(base, subfolder, train_files + test_files)
    if folder is None:
        raise FileNotFoundError(
            f"{name} was not found: expected the binary files {', '.join(train_files + test_files)} "
            f"in {base / subfolder} or {base}. With internet access run "
            f"`fewops data fetch {name}`, or unpack the official binary archive into {base}."
        )

    def read(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [
            read_cifar_binary(
                folder / f,
                label_bytes=label_bytes,
                label_index=label_bytes - 1,
                num_classes=num_classes,
            )
            for f in files
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_images, y_train = read(train_files)
    test_images, y_test = read(test_files)
    return Dataset(
        name=name,
        x_train=uint8_to_unit_float(train_images),
        y_train=y_train,
        x_test=uint8_to_unit_float(test_images),
        y_test=y_test,
        num_classes=num_classes,
        input_shape=(3, 32, 32),
        source=f"binary files in {folder} (official train/test split)",
    )


def load_cifar10(root: Path | None, *, seed: int) -> Dataset:
    del seed  # official split
    return _load(
        "cifar10",
        root,
        subfolder="cifar-10-batches-bin",
        train_files=CIFAR10_TRAIN_FILES,
        test_files=CIFAR10_TEST_FILES,
        label_bytes=1,
        num_classes=10,
    )


def load_cifar100(root: Path | None, *, seed: int) -> Dataset:
    del seed  # official split
    return _load(
        "cifar100",
        root,
        subfolder="cifar-100-binary",
        train_files=CIFAR100_TRAIN_FILES,
        test_files=CIFAR100_TEST_FILES,
        label_bytes=2,
        num_classes=100,
    )
