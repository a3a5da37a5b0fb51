"""Graph files: a shift-add graph's arrays in an ``.npz`` (no pickle), validated on reading.

Every declared size is checked before memory is taken (:class:`GraphLimits`): each member's
uncompressed size, its ``.npy`` header (integer dtype, one dimension, at most ``max_nodes``
entries), the shifts (at most ``max_shift`` in magnitude) and, once the graph is built, an upper
bound of its widest integer for 8-bit inputs (at most ``max_bits``). Raise a limit by passing
``limits=GraphLimits(...)`` (``fewops export --limit max_bits=4096``).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import level_groups, operand_shifts, trunc_drops

GRAPH_KEYS = ("op", "a", "b", "sa", "sb", "const")


class _Refused(ValueError):
    """A member refused before it is read (passed through the archive's own error handling)."""


@dataclass(frozen=True)
class GraphLimits:
    """Bounds a graph read from a file must meet (each raisable by passing other values)."""

    max_nodes: int = 1 << 22
    """Most nodes in one graph (4,194,304)."""
    max_shift: int = 256
    """Largest shift magnitude of an operand (|sa|, |sb|)."""
    max_bits: int = 1024
    """Widest node integer for 8-bit signed inputs (an upper bound, checked before any Verilog)."""

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_shift", "max_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"The limit {name} must be a positive integer; got {value!r}.")


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph``'s arrays to an ``.npz`` file that ``--graph`` reads."""
    path = Path(path)
    if graph.const.dtype == object:
        raise ValueError("Graphs with constants beyond 64 bits cannot be saved as .npz.")
    np.savez(path, **{k: getattr(graph, k) for k in GRAPH_KEYS})
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def check_graph_arrays(arrays: dict, source: str, limits: GraphLimits) -> None:
    """Refuse graph arrays of the wrong kind or beyond ``limits`` (before the graph is built)."""
    sizes = set()
    for key in GRAPH_KEYS:
        arr = arrays[key]
        if arr.dtype.kind not in "iu":
            raise ValueError(
                f"The graph array {key!r} in {source} has dtype {arr.dtype}; graph arrays hold "
                "integers."
            )
        if arr.ndim != 1:
            raise ValueError(
                f"The graph array {key!r} in {source} has shape {arr.shape}; graph arrays are "
                "one-dimensional."
            )
        sizes.add(arr.shape[0])
    if len(sizes) != 1:
        shapes = {k: arrays[k].shape[0] for k in GRAPH_KEYS}
        raise ValueError(f"The graph arrays in {source} differ in length: {shapes}.")
    for key in ("sa", "sb"):
        arr = arrays[key]
        if arr.size and int(np.abs(arr.astype(np.float64)).max()) > limits.max_shift:
            worst = int(arr[np.argmax(np.abs(arr.astype(np.float64)))])
            raise ValueError(
                f"The graph in {source} has a shift {key}={worst}, beyond the limit max_shift="
                f"{limits.max_shift}; raise the limit to read it."
            )


def width_bound(graph: Graph, input_width: int = 8) -> int:
    """An upper bound of the widest node integer for signed ``input_width``-bit inputs.

    Integer arithmetic on bit counts only (no wide integers), so a hostile graph whose exact
    widths run to millions of bits is bounded in milliseconds: an add or subtract needs one bit
    more than its wider aligned operand, a product the operand's bits plus the constant's.
    """
    bits = np.zeros(graph.num_nodes, dtype=np.int64)
    bits[graph.input_nodes] = int(input_width)
    consts = np.flatnonzero(graph.op == Op.CONST)
    if consts.size:
        bits[consts] = [int(abs(int(c))).bit_length() + 1 for c in graph.const[consts]]
    la, lb = operand_shifts(graph)
    drop = trunc_drops(graph)
    op = graph.op
    cap = np.int64(1) << 40  # far beyond any limit; keeps the sums inside int64
    for nodes in level_groups(graph)[1:]:
        wa = bits[graph.a[nodes]] + la[nodes]
        has_b = graph.b[nodes] >= 0
        wb = np.where(has_b, bits[np.maximum(graph.b[nodes], 0)] + lb[nodes], 0)
        kind = op[nodes]
        new = np.maximum(wa, wb) + 1
        new = np.where(kind == Op.TRUNC, np.maximum(wa - drop[nodes], 1), new)
        new = np.where((kind == Op.OUTPUT) | (kind == Op.SHIFT), wa, new)
        mul = kind == Op.MUL
        if mul.any():
            cbits = np.array(
                [int(abs(int(c))).bit_length() + 1 for c in graph.const[nodes][mul]],
                dtype=np.int64,
            )
            new[mul] = wa[mul] + cbits
        bits[nodes] = np.minimum(new, cap)
    return int(bits.max(initial=0))


def check_graph_width(graph: Graph, source: str, limits: GraphLimits) -> None:
    """Refuse a graph whose datapath could be wider than ``limits.max_bits``."""
    bound = width_bound(graph)
    if bound > limits.max_bits:
        raise ValueError(
            f"The graph in {source} may need integers of up to {bound} bits for 8-bit inputs, "
            f"beyond the limit max_bits={limits.max_bits}; raise the limit to read it."
        )


def read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the start of a ``.npy`` stream, read before any data
    so that declared sizes can be checked first (a ValueError for an unknown format version)."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_member(
    archive: zipfile.ZipFile, key: str, source: str, limits: GraphLimits
) -> np.ndarray | None:
    """One ``.npy`` member, after its declared sizes are checked against ``limits``."""
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        return None
    most = limits.max_nodes * 8 + 4096
    if info.file_size > most:
        raise _Refused(
            f"The graph array {key!r} in {source} declares {info.file_size} bytes, beyond the "
            f"{most} bytes max_nodes={limits.max_nodes} allows; raise the limit to read it."
        )
    with archive.open(info) as member:
        shape, _, dtype = read_npy_header(member)
    if dtype.hasobject or dtype.kind not in "iu":
        raise _Refused(
            f"The graph array {key!r} in {source} has dtype {dtype}; graph arrays hold integers."
        )
    if len(shape) != 1:
        raise _Refused(
            f"The graph array {key!r} in {source} has shape {shape}; graph arrays are "
            "one-dimensional."
        )
    if shape[0] > limits.max_nodes:
        raise _Refused(
            f"The graph array {key!r} in {source} declares {shape[0]} nodes, beyond the limit "
            f"max_nodes={limits.max_nodes}; raise the limit to read it."
        )
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def load_graph(path: str | os.PathLike[str], *, limits: GraphLimits | None = None) -> Graph:
    """Read a graph written by :func:`save_graph` (validated like any new graph, within
    ``limits``; see :class:`GraphLimits`)."""
    limits = GraphLimits() if limits is None else limits
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No graph file at {path}.")
    arrays = {}
    # Open the file here so that it is closed even when numpy fails on a damaged archive.
    with open(path, "rb") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                for key in GRAPH_KEYS:
                    arr = _read_member(archive, key, str(path), limits)
                    if arr is not None:
                        arrays[key] = arr
        except _Refused:
            raise
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            NotImplementedError,
            RuntimeError,
            SyntaxError,
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
        ) as exc:
            # SyntaxError: a damaged .npy header; NotImplementedError: an unknown compression.
            raise ValueError(
                f"Graph file {path} is corrupt or not an .npz of graph arrays ({exc})."
            ) from exc
    missing = [k for k in GRAPH_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"Graph file {path} lacks the arrays {missing}; it needs {GRAPH_KEYS}.")
    check_graph_arrays(arrays, str(path), limits)
    try:
        op, a, b, sa, sb, const = (arrays[k] for k in GRAPH_KEYS)
        graph = Graph.from_arrays(op, a, b, sa, sb, const)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ValueError(f"Graph file {path} holds an invalid graph: {exc}") from exc
    check_graph_width(graph, str(path), limits)
    return graph
