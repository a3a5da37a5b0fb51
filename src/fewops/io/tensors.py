"""Model weights on disk: safetensors files written atomically, read back with clear errors.

Nothing here unpickles: safetensors holds raw tensors plus a string-to-string header, which
carries JSON for everything else (a format tag, settings, histories).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` and move the result to ``path`` with ``os.replace``.

    The temporary file sits in the same folder (so the move is atomic) and is synced to disk
    first: a crash leaves either the old file or the complete new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous()


class UnhashedFileError(ValueError):
    """A safetensors file written before content hashes were recorded: it cannot be checked."""


# The metadata key holding :func:`content_hash` of a file's tensors.
HASH_KEY = "content_sha256"


def content_hash(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order, and over the
    metadata (besides the hash itself): the settings and inputs the file was made from."""
    h = hashlib.sha256()
    h.update(
        json.dumps({k: v for k, v in metadata.items() if k != HASH_KEY}, sort_keys=True).encode()
    )
    for name in sorted(tensors):
        t = cpu_copy(tensors[name])
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            flat = t.reshape(-1).clone(memory_format=torch.contiguous_format)
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
    """Write ``tensors`` and string ``metadata`` as one safetensors file, atomically.

    The metadata gains ``content_sha256`` (:func:`content_hash`), which :func:`read_tensors`
    checks, so a flipped byte or a file pieced together from two runs is refused.
    """
    tensors = {k: cpu_copy(v) for k, v in tensors.items()}
    metadata = {**metadata, HASH_KEY: content_hash(tensors, metadata)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_tensors(
    path: str | Path, *, expected_format: str, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file whose ``format`` tag must match.

    ``what`` names the kind of file in error messages ("training checkpoint", ...). The tensors
    must match the content hash recorded when the file was written (:func:`save_tensors`).
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"The {what} {path} is corrupt or unreadable ({exc}). Delete it to start afresh."
        ) from exc
    if meta.get("format") != expected_format:
        raise ValueError(
            f"The file {path} is not a fewops {what} (format {meta.get('format')!r}, "
            f"expected {expected_format!r})."
        )
    recorded = meta.get(HASH_KEY)
    if recorded is None:
        raise UnhashedFileError(
            f"The {what} {path} records no content hash (an older fewops wrote it), so it "
            "cannot be checked. Delete it to start afresh."
        )
    if recorded != content_hash(tensors, meta):
        raise ValueError(
            f"The {what} {path} is corrupt or unreadable (it fails its content hash: changed or "
            "torn since it was written). Delete it to start afresh."
        )
    return tensors, {k: v for k, v in meta.items() if k != HASH_KEY}


def load_module_state(
    path: str | Path, module: nn.Module, tensors: dict[str, torch.Tensor], *, prefix: str = ""
) -> None:
    """Load the entries of ``tensors`` that start with ``prefix`` into ``module`` (strictly)."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"The weights in {path} do not fit this model: {exc}") from exc
