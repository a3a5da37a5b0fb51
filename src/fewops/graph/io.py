"""Graph files: a shift-add graph's arrays in an ``.npz`` (no pickle), validated on reading."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from fewops.graph.graph import Graph

GRAPH_KEYS = ("op", "a", "b", "sa", "sb", "const")


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph``'s arrays to an ``.npz`` file that ``--graph`` reads."""
    path = Path(path)
    if graph.const.dtype == object:
        raise ValueError("Graphs with constants beyond 64 bits cannot be saved as .npz.")
    np.savez(path, **{k: getattr(graph, k) for k in GRAPH_KEYS})
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a graph written by :func:`save_graph` (validated like any new graph)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No graph file at {path}.")
    # Open the file here so that it is closed even when numpy fails on a damaged archive.
    with open(path, "rb") as handle:
        try:
            data = np.load(handle, allow_pickle=False)
            arrays = {k: data[k] for k in GRAPH_KEYS if k in data.files}
        except (OSError, EOFError, ValueError, AttributeError, zipfile.BadZipFile) as exc:
            # AttributeError: a single .npy array has no .files.
            raise ValueError(
                f"Graph file {path} is corrupt or not an .npz of graph arrays ({exc})."
            ) from exc
    missing = [k for k in GRAPH_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"Graph file {path} lacks the arrays {missing}; it needs {GRAPH_KEYS}.")
    try:
        return Graph.from_arrays(*(arrays[k] for k in GRAPH_KEYS))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"Graph file {path} holds an invalid graph: {exc}") from exc
