"""IDX reader: round trips, every kind of damage, and the real Fashion-MNIST files."""

import gzip
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewops.data import parse_idx, read_idx, write_idx
from fewops.data.mnist import DEBIAN_FASHION_MNIST_DIR

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_keeps_values_shape_and_dtype(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    data = _idx_bytes(array)
    parsed = parse_idx(data)
    assert parsed.dtype == np.dtype(dtype)
    assert parsed.shape == tuple(shape)
    np.testing.assert_array_equal(parsed, array)


def _idx_bytes(array):
    codes = {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12, np.float32: 13, np.float64: 14}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_write_then_read_file_plain_and_gzip(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / name
    write_idx(path, images)
    assert path.read_bytes().startswith(b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), images)


def test_big_endian_values_are_decoded():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + bytes([0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(data), [258, -2])


def _write(tmp_path, data, name="bad-idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bad_magic_names_the_file(tmp_path):
    path = _write(tmp_path, bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]))
    message = f"The IDX file {path} has a bad magic number 01000801: an IDX file starts with two zero bytes."
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


def test_unknown_type_byte_is_a_bad_magic_number(tmp_path):
    path = _write(tmp_path, bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 7]))
    message = (
        f"The IDX file {path} has a bad magic number 00000701: type byte 0x07 is not one of "
        "0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


def test_truncated_data_reports_wrong_length(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    data = _idx_bytes(images)
    path = _write(tmp_path, data[:-10])
    message = (
        f"The IDX file {path} has the wrong length: its header declares shape (3, 28, 28) of "
        "uint8, which needs 2368 bytes, but it has 2358 bytes."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


def test_trailing_bytes_are_a_wrong_length(tmp_path):
    path = _write(tmp_path, _idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00")
    message = (
        f"The IDX file {path} has the wrong length: its header declares shape (4,) of uint8, "
        "which needs 12 bytes, but it has 13 bytes."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The IDX file {path} is 0 bytes long, too short for the 4-byte magic number."),
        (
            bytes([0, 0, 8, 3, 0, 0]),
            "The IDX file {path} is 6 bytes long, too short for its header of 16 bytes "
            "(3 dimensions).",
        ),
        (bytes([0, 0, 8, 0]), "The IDX file {path} declares 0 dimensions; at least 1 is needed."),
    ],
)
def test_short_or_empty_headers(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=re.escape(message.format(path=path))):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    packed = gzip.compress(_idx_bytes(np.arange(1000, dtype=np.int32)))
    path = _write(tmp_path, packed[: len(packed) // 2], "labels.gz")
    # The sentence ends with zlib's own reason, which differs between Python versions.
    message = (
        f"The IDX file {path} is gzip-compressed but could not be decompressed (truncated or "
        "corrupt): "
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(
        TypeError, match=re.escape("An IDX file cannot hold values of dtype complex128.")
    ):
        write_idx(tmp_path / "x", np.zeros(2, dtype=np.complex128))


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_test_files():
    images = read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
