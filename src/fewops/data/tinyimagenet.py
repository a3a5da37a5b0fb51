"""Tiny ImageNet (200 classes, 64x64 RGB) from its standard folder layout.

Expected under ``root/tinyimagenet/tiny-imagenet-200/`` (the folder the official zip unpacks
to) or ``root/tinyimagenet/`` directly::

    wnids.txt                         one WordNet id per line; line order = class index
    train/<wnid>/images/*.JPEG        500 training images per class
    val/images/*.JPEG                 10,000 validation images
    val/val_annotations.txt           "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per line

The official test images have no labels, so the labelled validation set is used as the test
set. Grayscale images (a few hundred in the training set) are converted to RGB. The full set in
float32 needs about 4.9 GB for training and 0.5 GB for test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewops.data.dataset import Dataset, default_root, uint8_to_unit_float

_FOLDER = "tiny-imagenet-200"


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        # optional: Pillow, needed only to decode the Tiny ImageNet JPEGs
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Decoding Tiny ImageNet needs Pillow: install it with `pip install pillow`."
        ) from exc
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"The Tiny ImageNet image {path} could not be decoded: {exc}") from exc
    if rgb.shape != (size, size, 3):
        raise ValueError(
            f"The Tiny ImageNet image {path} is {rgb.shape[1]}x{rgb.shape[0]} pixels, "
            f"expected {size}x{size}."
        )
    return rgb.transpose(2, 0, 1)


def _decode_all(paths: list[Path], size: int) -> np.ndarray:
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = _decode(path, size)
    return out


def find_tinyimagenet(root: Path | None) -> Path:
    base = (default_root() if root is None else Path(root)) / "tinyimagenet"
    for folder in (base / _FOLDER, base):
        if (folder / "wnids.txt").is_file():
            return folder
    raise FileNotFoundError(
        f"Tiny ImageNet was not found: expected wnids.txt, train/ and val/ in {base / _FOLDER} "
        f"or {base}. With internet access run `fewops data fetch tinyimagenet`, or unzip the "
        f"official {_FOLDER}.zip into {base}."
    )


def read_tinyimagenet(
    folder: Path, *, image_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """uint8 train images, train labels, val images, val labels, and the class wnids."""
    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines()]
    wnids = [w for w in wnids if w]
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(f"{folder / 'wnids.txt'} must list distinct class ids, one a line.")
    index = {wnid: i for i, wnid in enumerate(wnids)}

    train_paths, train_labels = [], []
    for wnid in wnids:
        images_dir = folder / "train" / wnid / "images"
        paths = sorted(images_dir.glob("*.JPEG"))
        if not paths:
            raise FileNotFoundError(f"Tiny ImageNet class {wnid} has no images in {images_dir}.")
        train_paths += paths
        train_labels += [index[wnid]] * len(paths)

    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"Tiny ImageNet validation labels {annotations} are missing.")
    val_paths, val_labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(
                f"Line {number} of {annotations} should be '<file>\\t<wnid>...' with a wnid "
                f"from wnids.txt, got {line!r}."
            )
        val_paths.append(folder / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])

    return (
        _decode_all(train_paths, image_size),
        np.asarray(train_labels, dtype=np.int64),
        _decode_all(val_paths, image_size),
        np.asarray(val_labels, dtype=np.int64),
        wnids,
    )


def load_tinyimagenet(root: Path | None, *, seed: int) -> Dataset:
    del seed  # official split (validation set used as test set)
    folder = find_tinyimagenet(root)
    train_images, y_train, val_images, y_val, wnids = read_tinyimagenet(folder)
    return Dataset(
        name="tinyimagenet",
        x_train=uint8_to_unit_float(train_images),
        y_train=y_train,
        x_test=uint8_to_unit_float(val_images),
        y_test=y_val,
        num_classes=len(wnids),
        input_shape=(3, 64, 64),
        source=f"image folders in {folder} (train split; labelled val split used as test)",
    )
