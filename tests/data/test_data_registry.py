"""load() dispatch, the digits default, the Dataset checks and the crop/flip augmentation."""

import re

import numpy as np
import pytest
import torch

from fewops.data import DATASET_INFO, DATASETS, Dataset, load, random_crop_flip


def test_dataset_names():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "tinyimagenet")
    assert DATASET_INFO["tinyimagenet"].num_classes == 200


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        load("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message
    for name in DATASETS:
        assert name in message


def test_non_string_name_and_bad_seed():
    with pytest.raises(TypeError, match=re.escape("A data set name must be a string, got int 3.")):
        load(3)
    with pytest.raises(TypeError, match=re.escape("seed must be an integer, got float 1.5.")):
        load("digits", seed=1.5)


def test_digits_default_is_scaled_and_stratified():
    data = load("digits")
    assert data.name == "digits" and data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert data.x_train.shape == (1437, 1, 8, 8) and data.x_test.shape == (360, 1, 8, 8)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    # x * 16 gives back the original integer intensities 0..16.
    np.testing.assert_array_equal(data.x_test * 16, np.round(data.x_test * 16))
    counts = np.bincount(data.y_test)
    assert counts.min() >= 35 and counts.max() <= 37
    same = load("Digits", seed=0)
    np.testing.assert_array_equal(same.x_test, data.x_test)
    assert not np.array_equal(load("digits", seed=1).y_test, data.y_test)


def test_dataset_checks_its_arrays():
    x = np.zeros((2, 1, 4, 4), dtype=np.float32)
    y = np.zeros(2, dtype=np.int64)
    ok = Dataset("t", x, y, x, y, num_classes=3, input_shape=(1, 4, 4))
    assert ok.num_train == 2 and "x_train" not in repr(ok)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Dataset 't': x_train must be a float32 array shaped (N, C, H, W), got dtype float64 and shape (2, 1, 4, 4)."
        ),
    ):
        Dataset("t", x.astype(np.float64), y, x, y, num_classes=3, input_shape=(1, 4, 4))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Dataset 't': x_train images have shape (1, 4, 4), but input_shape is (1, 5, 4)."
        ),
    ):
        Dataset("t", x, y, x, y, num_classes=3, input_shape=(1, 5, 4))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Dataset 't': y_train holds labels from 3 to 3, outside range(num_classes=3)."
        ),
    ):
        Dataset("t", x, y + 3, x, y, num_classes=3, input_shape=(1, 4, 4))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Dataset 't': y_train must be an int64 array of length 2, got dtype int64 and shape (1,)."
        ),
    ):
        Dataset("t", x, y[:1], x, y, num_classes=3, input_shape=(1, 4, 4))


def test_random_crop_flip_moves_pixels_but_keeps_shape():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    augment = random_crop_flip(padding=2)
    torch.manual_seed(0)
    out = augment(x)
    assert out.shape == x.shape
    torch.manual_seed(0)
    assert torch.equal(augment(x), out)  # reproducible from the seed
    # Every output pixel is either padding (0) or a value of the same image and channel.
    for n in range(2):
        for c in range(3):
            values = set(out[n, c].flatten().tolist()) - {0.0}
            assert values <= set(x[n, c].flatten().tolist())
    # No padding and no flip: identity.
    assert torch.equal(random_crop_flip(padding=0, flip=False)(x), x)
    with pytest.raises(
        ValueError, match=re.escape("padding must be a non-negative integer, got -1.")
    ):
        random_crop_flip(padding=-1)
