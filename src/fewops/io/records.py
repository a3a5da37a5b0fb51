"""Run records: what a long job has finished, kept in its output folder so that it can resume.

A record file is written under a temporary name, synced to disk and renamed
(:func:`fewops.io.tensors.atomic_write`), and carries the sha256 of its own content and of the
inputs it was made from; a file that is torn, changed or made from other inputs is never
trusted: it is done again.

- :class:`RunRecord` keeps ``run.json`` (the run's settings) and ``stages/<stage>.json`` (one per
  finished stage) in the output folder, and refuses a folder that holds a run with other
  settings, naming the first difference, unless told to overwrite it;
- :class:`LayerStore` keeps each finished layer's code (``stages/layers/<key>.npz``, keyed by
  the sha256 of the layer's matrix and coding settings); :func:`recording_layers` makes one
  current, and the LCC pipeline (``fewops.methods.lcc.search.code_layers``) reads and fills it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fewops.codes.base import CodedMatrix
from fewops.graph.graph import Graph
from fewops.graph.io import load_graph, read_npy_header
from fewops.io.tensors import atomic_write

RECORD_FORMAT = "fewops-run-record-1"
LAYER_FORMAT = "fewops-layer-code-1"
GRAPH_ARRAYS = ("op", "a", "b", "sa", "sb", "const")


def _plain(value):
    """JSON's ``default``: numpy scalars and arrays as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"A run record cannot hold a {type(value).__name__}; got {value!r}.")


def canonical_json(value) -> str:
    """``value`` as JSON with sorted keys (inf and NaN kept, as JSON extensions)."""
    return json.dumps(value, sort_keys=True, default=_plain)


def sha256_hex(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    return sha256_hex(str(a.dtype), str(a.shape), a.tobytes())


# A stage record holds settings and hashes (kilobytes); a larger file is not ours.
MAX_RECORD_BYTES = 16 << 20


def write_json_record(path: Path, payload: dict) -> None:
    """Write ``payload`` plus the sha256 of its content (``"sha256"``) atomically."""
    body = canonical_json(payload)
    text = canonical_json({"payload": json.loads(body), "sha256": sha256_hex(body)})
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def read_json_record(path: Path) -> dict | None:
    """The payload of a record written by :func:`write_json_record`; None when it is missing,
    torn or changed (its content hash fails)."""
    try:
        if Path(path).stat().st_size > MAX_RECORD_BYTES:
            return None  # records are small: a huge one is not ours
        data = json.loads(Path(path).read_text())
        payload = data["payload"]
        if data["sha256"] != sha256_hex(canonical_json(payload)):
            return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack (found by fuzzing).
        return None
    return payload if isinstance(payload, dict) else None


def first_difference(old, new, where: str = "") -> tuple[str, object, object] | None:
    """The first (path, old value, new value) at which two JSON-like values differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            path = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                return path, old.get(key, "(absent)"), new.get(key, "(absent)")
            found = first_difference(old[key], new[key], path)
            if found:
                return found
        return None
    if old != new:
        return where or "(settings)", old, new
    return None


class RunRecord:
    """The record of one run in its output ``folder`` (see the module docstring)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / "run.json"
        self.stages = self.folder / "stages"

    def claim(self, settings: dict, *, overwrite: bool = False) -> bool:
        """Make the folder this run's: True when it resumes a run with the same ``settings``.

        A folder holding a run with other settings, or files but no run record, is refused
        (ValueError naming the first difference) unless ``overwrite``, which clears the old
        record and stages first.
        """
        settings = json.loads(canonical_json(settings))
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"The output folder {self.folder} is a file; give a folder.")
        old = read_json_record(self.path)
        if old is not None and old.get("format") == RECORD_FORMAT and not overwrite:
            diff = first_difference(old.get("settings"), settings)
            if diff is None:
                return True
            key, there, here = diff
            raise ValueError(
                f"The folder {self.folder} holds a run with other settings ({key}: {there!r} "
                f"there, {here!r} here); pass --overwrite (overwrite=True) to replace it, or "
                "choose another output folder."
            )
        if old is None and not overwrite and self.folder.is_dir() and any(self.folder.iterdir()):
            raise ValueError(
                f"The folder {self.folder} is not empty and holds no fewops run record; pass "
                "--overwrite (overwrite=True) to write into it anyway, or choose another output "
                "folder."
            )
        if self.stages.exists():
            shutil.rmtree(self.stages)
        write_json_record(self.path, {"format": RECORD_FORMAT, "settings": settings})
        return False

    def finished(self, stage: str) -> dict | None:
        """What stage ``stage`` recorded when it finished, or None (not finished, or a record
        that fails its hash)."""
        return read_json_record(self.stages / f"{stage}.json")

    def finish(self, stage: str, info: dict) -> None:
        """Record stage ``stage`` as finished, with ``info`` (JSON-able), atomically."""
        write_json_record(self.stages / f"{stage}.json", info)

    def layer_store(self) -> LayerStore:
        return LayerStore(self.stages / "layers")


# The JSON description of one stored layer is small; a larger one is not ours.
MAX_INFO_BYTES = 1 << 20


def read_layer_info(path: Path) -> dict:
    """The ``info`` member of a layer record, its declared size checked before it is read."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("info.npy")
        if member.file_size > MAX_INFO_BYTES:
            raise ValueError(f"The layer record {path} has an info member of {member.file_size} B.")
        with archive.open(member) as handle:
            shape, _, dtype = read_npy_header(handle)
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > member.file_size:
                raise ValueError(f"The layer record {path} has a malformed info member.")
            blob = np.frombuffer(handle.read(int(shape[0])), dtype=np.uint8)
    info = json.loads(blob.tobytes().decode())
    if not isinstance(info, dict) or not isinstance(info.get("fields"), dict):
        raise ValueError(f"The layer record {path} has a malformed info member.")
    return info


class LayerStore:
    """Finished layer codes, one ``.npz`` (no pickles) per layer, keyed by their inputs."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(w: np.ndarray, db: float, settings: dict) -> str:
        """The sha256 of a layer's inputs: its matrix, SQNR and coding settings."""
        return sha256_hex(LAYER_FORMAT, array_digest(w), repr(float(db)), canonical_json(settings))

    def get(self, key: str) -> tuple[CodedMatrix, float] | None:
        """The stored (code, seconds) under ``key``, or None (missing, torn or changed)."""
        path = self.folder / f"{key}.npz"
        if not path.exists():
            return None
        try:
            # The graph goes through the bounded graph reader (sizes checked before reading).
            loaded = load_graph(path)
            info = read_layer_info(path)
            arrays = {k: getattr(loaded, k) for k in GRAPH_ARRAYS}
            digest = sha256_hex(*(array_digest(arrays[k]) for k in GRAPH_ARRAYS))
            if info.get("key") != key or info.get("arrays_sha256") != digest:
                return None
            graph = Graph.from_arrays(*(arrays[k] for k in GRAPH_ARRAYS), meta=info["meta"])
            coded = CodedMatrix(graph=graph, **info["fields"])
            seconds = float(info["seconds"])
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
            zipfile.BadZipFile,
        ):
            return None  # torn, changed or not ours: coded again
        return coded, seconds

    def put(self, key: str, coded: CodedMatrix, seconds: float) -> None:
        """Store a finished layer's code atomically."""
        g = coded.graph
        arrays = {k: np.ascontiguousarray(getattr(g, k)) for k in GRAPH_ARRAYS}
        fields = {
            "method": coded.method,
            "scale_m": coded.scale_m,
            "scale_e": coded.scale_e,
            "weight_bits": coded.weight_bits,
            "params": coded.params,
            "table_reads": coded.table_reads,
            "config": coded.config,
            "extra": coded.extra,
        }
        info = {
            "format": LAYER_FORMAT,
            "key": key,
            "arrays_sha256": sha256_hex(*(array_digest(arrays[k]) for k in GRAPH_ARRAYS)),
            "meta": g.meta,
            "fields": fields,
            "seconds": float(seconds),
        }
        # key order kept (not sorted): a resumed run's report reads exactly like the first
        blob = np.frombuffer(json.dumps(info, default=_plain).encode(), dtype=np.uint8)

        def write(tmp: str) -> None:
            buffer = io.BytesIO()
            np.savez(buffer, info=blob, **arrays)
            with open(tmp, "wb") as fh:
                fh.write(buffer.getvalue())

        atomic_write(self.folder / f"{key}.npz", write)


CURRENT_STORE: contextvars.ContextVar[LayerStore | None] = contextvars.ContextVar(
    "fewops_layer_store", default=None
)


def current_layer_store() -> LayerStore | None:
    """The layer store made current by :func:`recording_layers`, or None."""
    return CURRENT_STORE.get()


@contextlib.contextmanager
def recording_layers(store: LayerStore | None) -> Iterator[LayerStore | None]:
    """Within this block, coded layers are read from and written to ``store`` (None: off)."""
    token = CURRENT_STORE.set(store)
    try:
        yield store
    finally:
        CURRENT_STORE.reset(token)
