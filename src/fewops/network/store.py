"""Saving a :class:`~fewops.network.network.Network` as is, and reading it back without torch.

Two files in a folder: ``network.json`` (the steps, their settings, calibrated scales and
integer biases) and ``network.safetensors`` (each coded step's graph arrays and float bias),
each carrying the other's content hash. Nothing is unpickled; every size, exponent and shape is
checked against :class:`NetworkLimits` before memory is taken, and the rebuilt network is
checked step by step (:func:`fewops.network.network.infer_values`), so a file can neither run
code nor make the reader allocate without bounds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from fewops.graph.graph import Graph
from fewops.graph.io import GRAPH_KEYS, GraphLimits, check_graph_arrays, check_graph_width
from fewops.network.network import Network, infer_values
from fewops.network.steps import (
    Add,
    Coded,
    ConvGeometry,
    Flatten,
    Input,
    MaxPool,
    Pad,
    Requantize,
    Reshape,
    Slice,
    Step,
    SumPool,
)

FORMAT = "fewops-network"
VERSION = 1
JSON_FILE = "network.json"
TENSOR_FILE = "network.safetensors"
KINDS = {
    Input: "input",
    Coded: "coded",
    Requantize: "requantize",
    Add: "add",
    MaxPool: "maxpool",
    SumPool: "sumpool",
    Flatten: "flatten",
    Reshape: "reshape",
    Pad: "pad",
    Slice: "slice",
}


@dataclass(frozen=True)
class NetworkLimits:
    """Bounds a saved network must meet (raise one by passing another value)."""

    max_json_bytes: int = 64 << 20
    """Largest network.json (64 MiB)."""
    max_tensor_bytes: int = 4 << 30
    """Largest network.safetensors (4 GiB)."""
    max_steps: int = 100_000
    """Most steps."""
    max_elements: int = 1 << 24
    """Most values in one step's per-sample output."""
    max_exponent: int = 512
    """Largest magnitude of a binary exponent (scale_e, frac)."""
    max_int_bits: int = 256
    """Widest integer (scale_m, bias_int, clip bounds), in bits."""
    max_act_bits: int = 32
    """Widest activation (input bits, requantize bits)."""
    max_conv: int = 1 << 16
    """Largest geometry entry (kernel, stride, padding, dilation, channels, pad widths)."""
    graph: GraphLimits = field(default_factory=GraphLimits)
    """Limits on each coded step's graph."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "graph" and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"The limit {f.name} must be a positive integer; got {value!r}.")


# -- saving -------------------------------------------------------------------------------------


def save_network(net: Network, folder: str | os.PathLike[str]) -> Path:
    """Write ``net`` (calibrated) to ``folder``/network.json and network.safetensors."""
    if not net.calibrated:
        raise ValueError("Only a calibrated network can be saved (compile_network calibrates).")
    out = Path(folder)
    tensors: dict[str, np.ndarray] = {}
    records = [_record(i, step, tensors) for i, step in enumerate(net.steps)]
    body = {
        "format": FORMAT,
        "version": VERSION,
        "act_bits": int(net.act_bits),
        "output": net.output,
        "steps": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "json_sha256": json_hash(body)}
    _atomic(out / TENSOR_FILE, lambda tmp: save_file(tensors, tmp, metadata=meta))
    body["tensors_sha256"] = tensors_hash(tensors)
    text = json.dumps(body, indent=1)
    _atomic(out / JSON_FILE, lambda tmp: Path(tmp).write_text(text))
    return out


def _record(i: int, step: Step, tensors: dict) -> dict:
    rec: dict = {"kind": KINDS[type(step)], "name": step.name}
    if isinstance(step, Input):
        rec.update(shape=list(step.shape), bits=step.bits, frac=step.frac)
    elif isinstance(step, Coded):
        g = step.graph
        big = None
        for key in GRAPH_KEYS:
            arr = np.asarray(getattr(g, key))
            if key == "const" and arr.dtype == object:
                big = [str(int(v)) for v in arr.tolist()]  # beyond int64: exact, as text
                arr = np.zeros(arr.shape, dtype=np.int64)
            tensors[f"{i}/{key}"] = np.ascontiguousarray(arr)
        tensors[f"{i}/bias"] = np.ascontiguousarray(step.bias, dtype=np.float64)
        conv = None
        if step.conv is not None:
            c = step.conv
            conv = {
                "kernel": list(c.kernel),
                "stride": list(c.stride),
                "padding": list(c.padding),
                "dilation": list(c.dilation),
                "in_channels": c.in_channels,
            }
        rec.update(
            src=step.src,
            scale_m=int(step.scale_m),
            scale_e=int(step.scale_e),
            bias_int=[int(b) for b in step.bias_int or ()],
            conv=conv,
            big_const=big,
        )
    elif isinstance(step, Requantize):
        rec.update(
            src=step.src,
            bits=step.bits,
            signed=step.signed,
            relu=step.relu,
            cap=step.cap,
            frac=step.frac,
            lo=step.lo,
            hi=step.hi,
        )
    elif isinstance(step, Add):
        rec.update(a=step.a, b=step.b)
    elif isinstance(step, MaxPool):
        rec.update(src=step.src, kernel=step.kernel, stride=step.stride)
    elif isinstance(step, Reshape):
        rec.update(src=step.src, shape=list(step.shape))
    elif isinstance(step, Pad):
        rec.update(src=step.src, widths=[list(w) for w in step.widths])
    elif isinstance(step, Slice):
        rec.update(src=step.src, index=[list(t) for t in step.index])
    else:
        rec.update(src=step.src)
    return rec


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def json_hash(body: dict) -> str:
    plain = {k: v for k, v in body.items() if k != "tensors_sha256"}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def tensors_hash(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# -- loading ------------------------------------------------------------------------------------


def has_network(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / JSON_FILE).exists()


def load_network(folder: str | os.PathLike[str], *, limits: NetworkLimits | None = None) -> Network:
    """Read a network saved by :func:`save_network` (numpy only; every refusal a ValueError
    naming the file and the value)."""
    limits = NetworkLimits() if limits is None else limits
    root = Path(folder)
    json_path, tensor_path = root / JSON_FILE, root / TENSOR_FILE
    for p in (json_path, tensor_path):
        if not p.is_file():
            raise FileNotFoundError(f"No saved network file {p} (save the model again).")
    _size_ok(json_path, limits.max_json_bytes, "max_json_bytes")
    _size_ok(tensor_path, limits.max_tensor_bytes, "max_tensor_bytes")
    try:
        body = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"The network file {json_path} is corrupt or unreadable ({exc}).") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"The file {json_path} is not a fewops network (format {FORMAT!r}).")
    if body.get("version") != VERSION:
        raise ValueError(
            f"The network {json_path} has version {body.get('version')!r}; this fewops reads "
            f"version {VERSION}."
        )
    try:
        with safe_open(str(tensor_path), framework="np") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ValueError(
            f"The network file {tensor_path} is corrupt or unreadable ({exc})."
        ) from exc
    if body.get("tensors_sha256") != tensors_hash(tensors) or meta.get("json_sha256") != json_hash(
        body
    ):
        raise ValueError(
            f"The network files {json_path} and {tensor_path} do not match (their content "
            "hashes differ: changed since saved, or from two different models). Save it again."
        )
    reader = _Reader(json_path, tensors, limits)
    steps = body.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= limits.max_steps:
        raise ValueError(
            f"The network file {json_path} needs 1 to max_steps={limits.max_steps} steps."
        )
    built = tuple(reader.step(i, rec) for i, rec in enumerate(steps))
    act_bits = reader.integer(body, "act_bits", 2, limits.max_act_bits)
    try:
        net = Network(built, act_bits, str(body.get("output")))
        for name, info in infer_values(net).items():
            if int(np.prod(info.shape)) > limits.max_elements:
                raise ValueError(
                    f"step {name!r} makes {int(np.prod(info.shape))} values, beyond "
                    f"max_elements={limits.max_elements}"
                )
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"The network in {json_path} is invalid: {exc}") from exc
    return net


def _size_ok(path: Path, limit: int, name: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"The file {path} has {size} bytes, beyond the limit {name}={limit}.")


class _Reader:
    def __init__(self, path: Path, tensors: dict, limits: NetworkLimits):
        self.path, self.tensors, self.limits = path, tensors, limits

    def fail(self, what: str):
        return ValueError(f"The network file {self.path} has {what}.")

    def integer(self, rec: dict, key: str, lo: int, hi: int) -> int:
        value = rec.get(key) if isinstance(rec, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{key}={value!r} (expected an integer in {lo}..{hi})")
        return value

    def big(self, value, key: str) -> int:
        bound = 1 << self.limits.max_int_bits
        if isinstance(value, bool) or not isinstance(value, int) or not -bound <= value <= bound:
            raise self.fail(f"{key}={str(value)[:40]!r} (beyond max_int_bits)")
        return value

    def ints(self, rec: dict, key: str, n: int, lo: int, hi: int) -> tuple[int, ...]:
        value = rec.get(key)
        if not isinstance(value, list) or len(value) != n:
            raise self.fail(f"{key}={str(value)[:60]!r} (expected {n} integers)")
        return tuple(self.integer({key: v}, key, lo, hi) for v in value)

    def name(self, rec: dict, key: str) -> str:
        value = rec.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= 256:
            raise self.fail(f"a step {key} {str(value)[:40]!r} that is not a short string")
        return value

    def step(self, i: int, rec) -> Step:
        if not isinstance(rec, dict):
            raise self.fail(f"step {i} that is not an object")
        kind, name = rec.get("kind"), self.name(rec, "name")
        lim = self.limits
        e, c = lim.max_exponent, lim.max_conv
        if kind == "input":
            shape = rec.get("shape")
            if not isinstance(shape, list) or not 1 <= len(shape) <= 3:
                raise self.fail(f"input shape {str(shape)[:40]!r}")
            dims = self.ints(rec, "shape", len(shape), 1, lim.max_elements)
            if int(np.prod(dims, dtype=object)) > lim.max_elements:
                raise self.fail(
                    f"an input of shape {list(dims)}: step {name!r} makes "
                    f"{int(np.prod(dims, dtype=object))} values, beyond "
                    f"max_elements={lim.max_elements}"
                )
            return Input(
                name,
                dims,
                self.integer(rec, "bits", 1, lim.max_act_bits),
                self.integer(rec, "frac", -e, e),
            )
        if kind == "coded":
            return self.coded(i, rec, name)
        if kind == "requantize":
            bits = self.integer(rec, "bits", 2, lim.max_act_bits)
            cap = rec.get("cap")
            if cap is not None and (not isinstance(cap, int | float) or not 0 < cap < 2.0**64):
                raise self.fail(f"cap={cap!r} in step {name!r}")
            signed, relu = rec.get("signed"), rec.get("relu")
            if not isinstance(signed, bool) or not isinstance(relu, bool):
                raise self.fail(f"signed/relu flags {signed!r}/{relu!r} in step {name!r}")
            lo = self.integer(rec, "lo", -(1 << bits), 1 << bits)
            hi = self.integer(rec, "hi", -(1 << bits), 1 << bits)
            return Requantize(
                name,
                self.name(rec, "src"),
                bits,
                signed,
                relu,
                cap,
                self.integer(rec, "frac", -e, e),
                lo,
                hi,
            )
        if kind == "add":
            return Add(name, self.name(rec, "a"), self.name(rec, "b"))
        if kind == "maxpool":
            k, s = self.integer(rec, "kernel", 1, c), self.integer(rec, "stride", 1, c)
            return MaxPool(name, self.name(rec, "src"), k, s)
        if kind == "sumpool":
            return SumPool(name, self.name(rec, "src"))
        if kind == "flatten":
            return Flatten(name, self.name(rec, "src"))
        if kind == "reshape":
            shape = rec.get("shape")
            if not isinstance(shape, list) or not 1 <= len(shape) <= 3:
                raise self.fail(f"reshape shape {str(shape)[:40]!r} in step {name!r}")
            dims = self.ints(rec, "shape", len(shape), 1, lim.max_elements)
            return Reshape(name, self.name(rec, "src"), dims)
        if kind == "pad":
            widths = rec.get("widths")
            if not isinstance(widths, list) or not 1 <= len(widths) <= 3:
                raise self.fail(f"pad widths {str(widths)[:40]!r} in step {name!r}")
            pairs = tuple(self.ints({"widths": w}, "widths", 2, 0, c) for w in widths)
            return Pad(name, self.name(rec, "src"), pairs)  # type: ignore[arg-type]
        if kind == "slice":
            index = rec.get("index")
            if not isinstance(index, list) or not 1 <= len(index) <= 3:
                raise self.fail(f"slice index {str(index)[:40]!r} in step {name!r}")
            triples = tuple(self.ints({"index": t}, "index", 3, -c, c) for t in index)
            if any(t[2] < 1 for t in triples):
                raise self.fail(f"a slice step below 1 in step {name!r}")
            return Slice(name, self.name(rec, "src"), triples)  # type: ignore[arg-type]
        raise self.fail(f"step {i} of unknown kind {str(kind)[:40]!r}")

    def coded(self, i: int, rec: dict, name: str) -> Coded:
        lim = self.limits
        arrays = {}
        for key in GRAPH_KEYS:
            if f"{i}/{key}" not in self.tensors:
                raise self.fail(f"no graph array {i}/{key} for step {name!r}")
            arrays[key] = self.tensors[f"{i}/{key}"]
        source = f"{self.path.with_name(TENSOR_FILE)} (step {name!r})"
        check_graph_arrays(arrays, source, lim.graph)
        big = rec.get("big_const")
        if big is not None:
            if not isinstance(big, list) or len(big) != arrays["const"].shape[0]:
                raise self.fail(f"big_const of step {name!r} without one value per node")
            try:
                arrays["const"] = np.array(
                    [self.big(int(v), "big_const") for v in big], dtype=object
                )
            except (TypeError, ValueError) as exc:
                raise self.fail(f"big_const of step {name!r} that is not integers ({exc})") from exc
        try:
            graph = Graph.from_arrays(*(arrays[k] for k in GRAPH_KEYS))
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.fail(f"an invalid graph for step {name!r} ({exc})") from exc
        check_graph_width(graph, source, lim.graph)
        bias = self.tensors.get(f"{i}/bias")
        if bias is None or bias.shape != (graph.num_outputs,) or not np.isfinite(bias).all():
            raise self.fail(f"no finite bias of {graph.num_outputs} values for step {name!r}")
        bias_int = rec.get("bias_int")
        if not isinstance(bias_int, list) or len(bias_int) != graph.num_outputs:
            raise self.fail(f"bias_int of step {name!r} without one integer per output")
        conv = None
        if rec.get("conv") is not None:
            g = rec["conv"]
            if not isinstance(g, dict):
                raise self.fail(f"conv settings of step {name!r} that are not an object")
            c = lim.max_conv
            conv = ConvGeometry(
                self.ints(g, "kernel", 2, 1, c),  # type: ignore[arg-type]
                self.ints(g, "stride", 2, 1, c),  # type: ignore[arg-type]
                self.ints(g, "padding", 2, 0, c),  # type: ignore[arg-type]
                self.ints(g, "dilation", 2, 1, c),  # type: ignore[arg-type]
                self.integer(g, "in_channels", 1, c),
            )
        e = lim.max_exponent
        return Coded(
            name,
            self.name(rec, "src"),
            graph,
            self.big(rec.get("scale_m"), "scale_m"),
            self.integer(rec, "scale_e", -e, e),
            np.array(bias, dtype=np.float64),
            conv,
            tuple(self.big(b, "bias_int") for b in bias_int),
        )
