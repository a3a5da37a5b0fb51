"""CIFAR-10/100 binary readers on small files written here."""

import re

import numpy as np
import pytest

from fewops.data import load
from fewops.data.cifar import read_cifar_binary


def _records(labels, seed, label_bytes=1):
    """Records with known pixels: label byte(s) then R, G, B planes."""
    rng = np.random.default_rng(seed)
    n = len(labels) // label_bytes
    pixels = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    label_block = np.asarray(labels, dtype=np.uint8).reshape(n, label_bytes)
    return np.concatenate([label_block, pixels.reshape(n, -1)], axis=1).tobytes(), pixels


def _write_cifar10(folder, per_file=3):
    folder.mkdir(parents=True, exist_ok=True)
    train_pixels = []
    for i in range(1, 6):
        data, pixels = _records([(i + k) % 10 for k in range(per_file)], seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(data)
        train_pixels.append(pixels)
    data, test_pixels = _records([9, 8], seed=99)
    (folder / "test_batch.bin").write_bytes(data)
    return np.concatenate(train_pixels), test_pixels


def test_cifar10_reads_channels_planar_and_labels(tmp_path):
    train_pixels, test_pixels = _write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-bin")
    data = load("cifar10", tmp_path)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(data.y_train[:3], [1, 2, 3])
    np.testing.assert_array_equal(data.y_test, [9, 8])
    np.testing.assert_array_equal(np.round(data.x_train * 255).astype(np.uint8), train_pixels)
    np.testing.assert_array_equal(np.round(data.x_test * 255).astype(np.uint8), test_pixels)


def test_cifar10_files_directly_in_the_data_set_folder(tmp_path):
    _write_cifar10(tmp_path / "cifar10")
    assert load("cifar10", tmp_path).num_train == 15


def test_cifar100_uses_the_fine_label(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    train, pixels = _records([3, 77, 19, 42], seed=1, label_bytes=2)  # (coarse, fine) pairs
    (folder / "train.bin").write_bytes(train)
    test, _ = _records([0, 99], seed=2, label_bytes=2)
    (folder / "test.bin").write_bytes(test)
    data = load("cifar100", tmp_path)
    assert data.num_classes == 100
    np.testing.assert_array_equal(data.y_train, [77, 42])
    np.testing.assert_array_equal(data.y_test, [99])
    np.testing.assert_array_equal(np.round(data.x_train * 255).astype(np.uint8), pixels)


def test_wrong_length_names_the_file(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    data, _ = _records([1, 2], seed=0)
    path.write_bytes(data[:-1])
    message = (
        f"The CIFAR binary file {path} has the wrong length: 6145 bytes is not a positive "
        "multiple of the 3073-byte record (1 label byte(s) + 3072 pixel bytes)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)


def test_label_out_of_range_suggests_the_wrong_file(tmp_path):
    path = tmp_path / "test_batch.bin"
    data, _ = _records([12], seed=0)
    path.write_bytes(data)
    message = (
        f"The CIFAR binary file {path} holds label 12, but the data set has 10 classes: "
        "is it the right file for this data set?"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)


def test_missing_cifar_lists_the_expected_files(tmp_path):
    root = tmp_path / "cifar10"
    message = (
        "cifar10 was not found: expected the binary files data_batch_1.bin, data_batch_2.bin, "
        "data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin in "
        f"{root}/cifar-10-batches-bin or {root}. With internet access run "
        "`fewops data fetch cifar10`, or unpack the official binary archive into "
        f"{root}."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("cifar10", tmp_path)
    root = tmp_path / "cifar100"
    message = (
        "cifar100 was not found: expected the binary files train.bin, test.bin in "
        f"{root}/cifar-100-binary or {root}. With internet access run "
        "`fewops data fetch cifar100`, or unpack the official binary archive into "
        f"{root}."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("cifar100", tmp_path)
