"""Checked downloads for users with internet access.

A file is fetched from the first URL that answers, hashed while it streams to a temporary file
in the destination folder, and moved into place with ``os.replace`` only when the hash matches.
So the destination either holds a verified file or nothing, even after a crash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's hash differs from the one it must have."""


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> tuple[str, str]:
    if (sha256 is None) == (md5 is None):
        raise ValueError("Give exactly one of sha256= and md5= to check the downloaded file.")
    algorithm, value = ("sha256", sha256) if sha256 is not None else ("md5", md5)
    value = str(value).lower()
    length = hashlib.new(algorithm).digest_size * 2
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"The {algorithm} digest {value!r} is not {length} hexadecimal digits.")
    return algorithm, value


def verify_file(path: str | Path, *, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise ChecksumError naming the file when its digest is not the expected one."""
    algorithm, expected = _expected(sha256, md5)
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"The file {path} has {algorithm} {actual}, but {expected} was expected: it is "
            "corrupt, incomplete or a different version."
        )


def download(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    opener: Callable[..., object] = urllib.request.urlopen,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``dest`` from the first working URL of ``urls`` and check its hash.

    Prefer ``sha256``; ``md5`` exists only for files whose publishers give no other digest.
    If ``dest`` already exists with the right hash nothing is downloaded. A URL that fails or
    serves a file with the wrong hash is skipped for the next one; when none works the errors
    of all are raised together (ChecksumError if any URL served wrong content, else OSError).
    ``opener(url, timeout=...)`` returns a readable response; tests pass their own.
    """
    algorithm, expected = _expected(sha256, md5)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("download() needs at least one URL.")
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    wrong_content = False
    for url in url_list:
        handle, tmp_name = tempfile.mkstemp(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
        )
        try:
            digest = hashlib.new(algorithm)
            with os.fdopen(handle, "wb") as out, opener(url, timeout=timeout) as response:
                total = _content_length(response)
                with _progress_bar(progress, total, dest.name) as bar:
                    for chunk in iter(lambda r=response: r.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != expected:
                wrong_content = True
                failures.append(f"{url}: {algorithm} {actual}, expected {expected}")
                continue
            os.replace(tmp_name, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp_name):
                os.remove(tmp_name)
    message = f"Could not download {dest.name} from any of {len(url_list)} URL(s): " + "; ".join(
        failures
    )
    raise ChecksumError(message) if wrong_content else OSError(message)


def _content_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None


def _progress_bar(enabled: bool, total: int | None, label: str):
    return tqdm(
        total=total, unit="B", unit_scale=True, desc=label, disable=not enabled, leave=False
    )
