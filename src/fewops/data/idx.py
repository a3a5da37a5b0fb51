"""Reader for the IDX format of MNIST and Fashion-MNIST, plain or gzip-compressed.

An IDX file is: two zero bytes, one type byte, one byte giving the number of dimensions, then
one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

# Type byte -> big-endian numpy dtype, as defined by the format.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Largest IDX content read (after decompression): 256 MiB, five times the 60,000 MNIST training
# images. Raise it with ``read_idx(path, max_bytes=...)``.
IDX_MAX_BYTES = 256 << 20


def _too_big(path: Path, what: str, max_bytes: int) -> ValueError:
    return ValueError(
        f"The IDX file {path} {what} more than {max_bytes} bytes, the limit max_bytes; pass a "
        "larger max_bytes to read it."
    )


def gunzip_prefix(raw: bytes, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` decompressed bytes of gzip ``raw`` (every member) and whether more
    follow. Decompressed in bounded steps, so a small bomb costs no more than ``limit``. Raises
    zlib.error or EOFError on a damaged stream."""
    parts: list[bytes] = []
    size = 0
    data = raw
    while data:
        inflater = zlib.decompressobj(wbits=31)
        chunk = inflater.decompress(data, limit + 1 - size)
        while True:
            parts.append(chunk)
            size += len(chunk)
            if size > limit or not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, limit + 1 - size)
        if size > limit:
            return b"".join(parts)[:limit], True
        if not inflater.eof:
            raise EOFError("the compressed stream ends before its end marker")
        data = inflater.unused_data.lstrip(b"\x00")  # members may follow; padding may too
    return b"".join(parts), False


def declared_size(head: bytes) -> int | None:
    """The total length an IDX header declares (header plus values), or None when ``head`` does
    not start with a complete, valid header (parse_idx then says what is wrong)."""
    if len(head) < 4 or head[0] or head[1] or head[2] not in IDX_DTYPES or head[3] == 0:
        return None
    header_len = 4 + 4 * head[3]
    if len(head) < header_len:
        return None
    dims = np.frombuffer(head, dtype=">u4", count=head[3], offset=4)
    return header_len + math.prod(int(d) for d in dims) * IDX_DTYPES[head[2]].itemsize


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise _too_big(path, "has", max_bytes)
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        head, _ = gunzip_prefix(raw, 4 + 4 * 255)
        declared = declared_size(head)
        if declared is not None and declared > max_bytes:
            raise ValueError(
                f"The IDX file {path} declares {declared} bytes of content, beyond the limit "
                f"max_bytes={max_bytes}; pass a larger max_bytes to read it."
            )
        limit = max_bytes if declared is None else declared
        data, more = gunzip_prefix(raw, limit)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(
            f"The IDX file {path} is gzip-compressed but could not be decompressed "
            f"(truncated or corrupt): {exc}."
        ) from exc
    if more:
        if declared is None:
            raise _too_big(path, "decompresses to", max_bytes)
        raise ValueError(
            f"The IDX file {path} decompresses to more than the {declared} bytes its header "
            "declares."
        )
    return data


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into an array with the file's shape.

    Raises ValueError naming ``source`` when the magic number, type byte or length is wrong.
    """
    if len(data) < 4:
        raise ValueError(
            f"The IDX file {source} is {len(data)} bytes long, too short for the 4-byte magic "
            "number."
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"The IDX file {source} has a bad magic number {data[:4].hex()}: an IDX file "
            "starts with two zero bytes."
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(
            f"The IDX file {source} has a bad magic number {data[:4].hex()}: type byte "
            f"0x{type_code:02X} is not one of {known}."
        )
    if ndim == 0:
        raise ValueError(f"The IDX file {source} declares 0 dimensions; at least 1 is needed.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"The IDX file {source} is {len(data)} bytes long, too short for its header of "
            f"{header_len} bytes ({ndim} dimensions)."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = header_len + math.prod(dims) * dtype.itemsize  # Python ints: no wrap-around
    if len(data) != expected:
        raise ValueError(
            f"The IDX file {source} has the wrong length: its header declares shape {dims} of "
            f"{dtype.name}, which needs {expected} bytes, but it has {len(data)} bytes."
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order, and a copy so the array owns writable memory.
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path, *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain; detected from the content) into a numpy array.

    Files (or decompressed contents) over ``max_bytes`` are refused before they are read.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path, int(max_bytes)), source=str(path))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip it when ``compress`` is true or the name ends in .gz.

    Used by tests and by anyone converting data to the MNIST layout.
    """
    path = Path(path)
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():
        if dtype.kind == array.dtype.kind and dtype.itemsize == array.dtype.itemsize:
            type_code = code
            break
    else:
        raise TypeError(f"An IDX file cannot hold values of dtype {array.dtype}.")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"An IDX file holds 1 to 255 dimensions, got {array.ndim}.")
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
