"""Weight matrices from ``.npy`` files (``fewops lcc``, ``fewops export --matrix``), checked.

The header is read and checked before any data: only real numeric dtypes, at most
``max_entries`` entries, and no more than the file holds; numpy never unpickles (object arrays
are refused by name). Every error names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewops.graph.io import read_npy_header

# Largest matrix read by default: 2^26 entries (512 MiB as float64). Raise it with
# ``load_matrix(path, max_entries=...)``.
MAX_MATRIX_ENTRIES = 1 << 26


def load_matrix(path, *, max_entries: int = MAX_MATRIX_ENTRIES) -> np.ndarray:
    """The real-valued array in the ``.npy`` file at ``path`` (float64 for floats and ints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No matrix file at {path}.")
    with open(path, "rb") as handle:
        try:
            shape, fortran, dtype = read_npy_header(handle)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
            raise ValueError(f"Matrix file {path} is not a .npy array file ({exc}).") from exc
        if dtype.hasobject:
            raise ValueError(
                f"Matrix file {path} holds Python objects (dtype {dtype}); fewops reads only "
                "numeric arrays and never unpickles."
            )
        if dtype.kind not in "biuf":
            raise ValueError(
                f"Matrix file {path} holds {dtype} values; a weight matrix must be real "
                "(integer or floating point)."
            )
        entries = int(np.prod(shape, dtype=object))
        if entries > max_entries:
            raise ValueError(
                f"Matrix file {path} declares {entries:,} entries (shape {tuple(shape)}); the "
                f"limit is {max_entries:,} (raise it with max_entries)."
            )
        available = path.stat().st_size - handle.tell()
        if entries * dtype.itemsize > available:
            raise ValueError(
                f"Matrix file {path} declares shape {tuple(shape)} of {dtype} but holds only "
                f"{available:,} bytes of data; it is truncated."
            )
        data = np.fromfile(handle, dtype=dtype, count=entries)
    array = data.reshape(shape, order="F" if fortran else "C")
    return array.astype(np.float64) if dtype.kind in "biu" else array
