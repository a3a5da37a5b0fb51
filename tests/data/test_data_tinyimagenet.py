"""Tiny ImageNet folder reader on a few generated JPEGs."""

import re

import numpy as np
import pytest
from PIL import Image

from fewops.data import load

WNIDS = ["n01443537", "n01629819", "n01641577"]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def _make_folder(base, *, size=64):
    root = base / "tinyimagenet" / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid, colour in zip(WNIDS, COLOURS, strict=True):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (size, size), colour).save(images / f"{wnid}_{k}.JPEG", quality=95)
    # One grayscale training image, as the real set has.
    Image.new("L", (size, size), 128).save(root / "train" / WNIDS[0] / "images" / "gray.JPEG")
    lines = []
    for k, (wnid, colour) in enumerate(zip(reversed(WNIDS), reversed(COLOURS), strict=True)):
        Image.new("RGB", (size, size), colour).save(root / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_loads_train_and_val_with_wnid_order_labels(tmp_path):
    _make_folder(tmp_path)
    data = load("tinyimagenet", tmp_path)
    assert data.input_shape == (3, 64, 64) and data.num_classes == 3
    assert data.x_train.shape == (7, 3, 64, 64) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.y_train, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.y_test, [2, 1, 0])
    # Solid colours survive JPEG almost exactly; channel order is R, G, B.
    red = data.x_train[data.y_train == 1][0].reshape(3, -1).mean(axis=1) * 255
    np.testing.assert_allclose(red, COLOURS[1], atol=3)
    blue_val = data.x_test[0].reshape(3, -1).mean(axis=1) * 255
    np.testing.assert_allclose(blue_val, COLOURS[2], atol=3)
    gray = data.x_train[0]  # "gray.JPEG" sorts first in class 0
    np.testing.assert_allclose(gray * 255, 128, atol=3)


def test_unknown_wnid_in_annotations_is_reported(tmp_path):
    root = _make_folder(tmp_path)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    message = (
        f"Line 1 of {root / 'val' / 'val_annotations.txt'} should be '<file>\\t<wnid>...' with a "
        "wnid from wnids.txt, got 'val_0.JPEG\\tn99999999\\t0\\t0\\t1\\t1'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load("tinyimagenet", tmp_path)


def test_wrong_image_size_is_reported(tmp_path):
    root = _make_folder(tmp_path)
    Image.new("RGB", (32, 32)).save(root / "train" / WNIDS[1] / "images" / "small.JPEG")
    small = root / "train" / WNIDS[1] / "images" / "small.JPEG"
    message = f"The Tiny ImageNet image {small} is 32x32 pixels, expected 64x64."
    with pytest.raises(ValueError, match=re.escape(message)):
        load("tinyimagenet", tmp_path)


def test_undecodable_image_names_the_file(tmp_path):
    root = _make_folder(tmp_path)
    broken = root / "train" / WNIDS[2] / "images" / "broken.JPEG"
    broken.write_bytes(b"not a jpeg")
    # The sentence ends with Pillow's own reason, which differs between versions.
    message = f"The Tiny ImageNet image {broken} could not be decoded: "
    with pytest.raises(ValueError, match=re.escape(message)):
        load("tinyimagenet", tmp_path)


def test_missing_folder_says_how_to_get_it(tmp_path):
    base = tmp_path / "tinyimagenet"
    message = (
        f"Tiny ImageNet was not found: expected wnids.txt, train/ and val/ in "
        f"{base / 'tiny-imagenet-200'} or {base}. With internet access run "
        "`fewops data fetch tinyimagenet`, or unzip the official tiny-imagenet-200.zip into "
        f"{base}."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("tinyimagenet", tmp_path)
