"""A compressed (coded) model on disk, without pickle: JSON for structure, safetensors for arrays.

``fewops compress --out DIR`` writes ``DIR/model/``:

- ``model.json``: format tag and version, the coding method, the input shape, the module tree
  (``sequence``; ``null`` when the model is not a plain ``nn.Sequential`` of supported modules, with
  ``sequence_note`` saying why), one record per coded layer (scale, bit and parameter counts,
  geometry of convolutions, JSON-able parts of its config) and, when the model was simulated, the
  sha256 of ``network.json`` (below).
- ``tensors.safetensors``: per coded layer ``NAME/op``, ``NAME/a``, ``NAME/b``, ``NAME/sa``,
  ``NAME/sb``, ``NAME/const`` (the shift-add graph) and ``NAME/bias`` (float32, as trained).
- ``network.json`` + ``network.safetensors`` (when simulated): the calibrated integer network
  exactly as simulated (:mod:`fewops.network.store`), readable without torch; the simulator and
  the Verilog generators read it as is.

Loading reads JSON and raw tensors only (``safe_open``, numpy), validates every graph like a new
one and names the file in every error. Constants beyond 64 bits (rare) go into the JSON as decimal
strings, since safetensors has no integer type wider than int64.

The two files vouch for each other: ``model.json`` records ``tensors_sha256`` (the hash of every
tensor's name, dtype, shape and bytes) and the tensor file's header records ``structure_sha256``
(the hash of model.json without that entry). A flipped byte in either, or a tensor file from
another run placed beside a model.json, is refused with the file named. Every number that sizes
memory or an exponent is checked against :class:`fewops.io.limits.ModelLimits` first.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import safe_open, save_file
from torch import nn

from fewops.codes.base import CodedMatrix
from fewops.graph.graph import Graph
from fewops.graph.io import check_graph_arrays, check_graph_width
from fewops.io.json_values import json_safe_dict
from fewops.io.limits import ModelLimits, check_structure, file_size_ok
from fewops.io.tensors import atomic_write
from fewops.network.network import Network
from fewops.network.store import JSON_FILE as NETWORK_FILE
from fewops.network.store import NetworkLimits, load_network, save_network
from fewops.network.store import tensors_hash as network_tensors_hash
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.nn.to_network import compile_network

FORMAT = "fewops-coded-model"
TENSOR_FORMAT = "fewops-coded-model-tensors"
VERSION = 3  # 2: content hashes of both files; 3: the integer network saved as is
STRUCTURE_FILE = "model.json"
TENSOR_FILE = "tensors.safetensors"
GRAPH_KEYS = ("op", "a", "b", "sa", "sb", "const")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class SavedModel:
    """What :func:`load_coded_model` returns.

    ``layers``: (name, CodedLinear or CodedConv2d) in model order, always present. ``model``: the
    rebuilt ``nn.Sequential`` (None when the saved model was not one). ``has_network``: whether
    the calibrated integer network was saved (the model was simulated).
    """

    path: Path
    method: str
    input_shape: tuple[int, ...] | None
    layers: list[tuple[str, nn.Module]]
    model: nn.Sequential | None
    has_network: bool
    meta: dict = field(default_factory=dict)
    limits: ModelLimits = field(default_factory=ModelLimits)

    def integer_network(self) -> Network:
        """The calibrated :class:`fewops.network.Network`, exactly as it was simulated."""
        if not self.has_network:
            raise ValueError(
                f"The model in {self.path} was saved without its integer network (it was not "
                "simulated, e.g. --no-simulate); only its layers can be exported."
            )
        lim = self.limits  # --limit NAME=VALUE reaches the network's bounds too
        net = load_network(
            self.path,
            limits=NetworkLimits(
                max_json_bytes=lim.max_json_bytes,
                max_tensor_bytes=lim.max_tensor_bytes,
                max_elements=lim.max_input_elements,
                max_exponent=lim.max_exponent,
                max_act_bits=lim.max_act_bits,
                max_conv=lim.max_conv,
                graph=lim.graph,
            ),
        )
        text = (self.path / NETWORK_FILE).read_bytes()
        if hashlib.sha256(text).hexdigest() != self.meta.get("network_sha256"):
            raise ValueError(
                f"The network file {self.path / NETWORK_FILE} does not match "
                f"{self.path / STRUCTURE_FILE} (its content hash differs from the one recorded "
                "there). Save the model again."
            )
        if self.input_shape is not None and tuple(net.input.shape) != tuple(self.input_shape):
            raise ValueError(
                f"The network in {self.path / NETWORK_FILE} reads inputs of shape "
                f"{tuple(net.input.shape)} but {self.path / STRUCTURE_FILE} says "
                f"{tuple(self.input_shape)}. Save the model again."
            )
        return net


# -- saving -------------------------------------------------------------------------------------


def save_coded_model(
    model: nn.Module,
    out_dir,
    *,
    method: str,
    input_shape=None,
    network=None,
) -> Path:
    """Write ``model``'s coded layers (and its module tree when it is a Sequential) to ``out_dir``.

    ``network`` is the calibrated :class:`fewops.network.Network` of the model (optional); it is
    saved as is (network.json + network.safetensors), so :meth:`SavedModel.integer_network`
    returns exactly the simulated network, without data or torch. Returns the folder.
    """
    if network is not None and not isinstance(network, Network):
        raise TypeError(f"network must be a fewops.network.Network; got {type(network).__name__}.")
    out = Path(out_dir)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, CodedLinear | CodedConv2d)]
    if not layers:
        raise ValueError("The model has no coded layer to save; code it (compress_) first.")
    tensors: dict[str, np.ndarray] = {}
    records = {}
    for name, module in layers:
        records[name] = _layer_record(name, module, tensors)
    try:
        sequence, note = _tree(model, ""), None
    except _Unsupported as exc:
        sequence, note = None, str(exc)
    structure: dict = {
        "format": FORMAT,
        "version": VERSION,
        "method": str(method),
        "input_shape": None if input_shape is None else [int(v) for v in input_shape],
        "sequence": sequence,
        "sequence_note": note,
        "layers": records,
        "network_sha256": None,
    }
    out.mkdir(parents=True, exist_ok=True)
    if network is not None:
        save_network(network, out)
        structure["network_sha256"] = hashlib.sha256((out / NETWORK_FILE).read_bytes()).hexdigest()
    meta = {"format": TENSOR_FORMAT, "structure_sha256": structure_hash(structure)}
    atomic_write(out / TENSOR_FILE, lambda tmp: save_file(tensors, tmp, metadata=meta))
    structure["tensors_sha256"] = tensors_hash(tensors)
    text = json.dumps(structure, indent=1)
    atomic_write(out / STRUCTURE_FILE, lambda tmp: Path(tmp).write_text(text))
    return out


def tensors_hash(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order (the one content
    hash of saved arrays, shared with the saved network)."""
    return network_tensors_hash(tensors)


def structure_hash(structure: dict) -> str:
    """sha256 of model.json's content (canonical JSON), without its own ``tensors_sha256``."""
    body = {k: v for k, v in structure.items() if k != "tensors_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _layer_record(name: str, module: nn.Module, tensors: dict) -> dict:
    coded: CodedMatrix = module.coded
    g = coded.graph
    big = None
    for key in GRAPH_KEYS:
        arr = np.asarray(getattr(g, key))
        if key == "const" and arr.dtype == object:
            # Beyond int64: keep the exact values as decimal strings in the JSON.
            big = [str(int(v)) for v in arr.tolist()]
            arr = np.zeros(arr.shape, dtype=np.int64)
        tensors[f"{name}/{key}"] = np.ascontiguousarray(arr)
    if module.bias is not None:
        tensors[f"{name}/bias"] = module.bias.detach().cpu().float().numpy().copy()
    record = {
        "kind": "conv" if isinstance(module, CodedConv2d) else "linear",
        "method": coded.method,
        "shape": list(coded.shape),
        "scale_m": int(coded.scale_m),
        "scale_e": int(coded.scale_e),
        "weight_bits": int(coded.weight_bits),
        "params": int(coded.params),
        "table_reads": int(coded.table_reads),
        "config": json_safe_dict(coded.config),
        "extra": json_safe_dict(coded.extra),
        "bias": module.bias is not None,
        "big_const": big,
    }
    if isinstance(module, CodedConv2d):
        record["conv"] = {
            "in_channels": module.in_channels,
            "kernel_size": list(module.kernel_size),
            "stride": list(module.stride),
            "padding": list(module.padding),
            "dilation": list(module.dilation),
        }
    return record


class _Unsupported(ValueError):
    pass


def _tree(module: nn.Module, path: str) -> dict:
    """The module tree of a Sequential as JSON, or _Unsupported naming the first odd module."""
    where = path or "the model"
    if isinstance(module, nn.Sequential):
        return {
            "kind": "sequential",
            "children": [
                [n, _tree(m, f"{path}.{n}" if path else n)] for n, m in module.named_children()
            ],
        }
    if isinstance(module, CodedLinear | CodedConv2d):
        return {"kind": "coded", "layer": path}
    if isinstance(module, nn.ReLU):
        return {"kind": "relu"}
    if isinstance(module, nn.Flatten):
        return {"kind": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, nn.Dropout):
        return {"kind": "dropout", "p": float(module.p)}
    if isinstance(module, nn.Identity):
        return {"kind": "identity"}
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
        if kind == "maxpool" and (module.dilation not in (1, (1, 1)) or module.ceil_mode):
            raise _Unsupported(f"{where} is a MaxPool2d with dilation or ceil_mode")
        return {
            "kind": kind,
            "kernel_size": _plain(module.kernel_size),
            "stride": _plain(module.stride),
            "padding": _plain(module.padding),
        }
    raise _Unsupported(f"{where} is a {type(module).__name__}, which is not saved as structure")


def _plain(v):
    return list(v) if isinstance(v, tuple | list) else v


# -- loading ------------------------------------------------------------------------------------


def load_coded_model(path, *, limits: ModelLimits | None = None) -> SavedModel:
    """Read a folder written by :func:`save_coded_model` (or a ``compress --out`` folder).

    Sizes, exponents and shapes are checked against ``limits`` (default
    :class:`fewops.io.limits.ModelLimits`) before anything is built, and the two files' content
    hashes against each other; every refusal is a ValueError naming the file.
    """
    limits = ModelLimits() if limits is None else limits
    root = Path(path)
    if (root / "model" / STRUCTURE_FILE).exists() and not (root / STRUCTURE_FILE).exists():
        root = root / "model"  # the compress output folder itself
    structure_path = root / STRUCTURE_FILE
    tensor_path = root / TENSOR_FILE
    if not root.is_dir():
        raise FileNotFoundError(f"No saved model folder at {root}.")
    for p in (structure_path, tensor_path):
        if not p.exists():
            raise FileNotFoundError(
                f"The saved model {root} lacks {p.name} (expected {p}); save it again with "
                "`fewops compress ... --out DIR`."
            )
    file_size_ok(structure_path, limits.max_json_bytes, "max_json_bytes", "model structure file")
    file_size_ok(tensor_path, limits.max_tensor_bytes, "max_tensor_bytes", "model tensor file")
    structure = _read_structure(structure_path)
    records = check_structure(structure, structure_path, limits)
    tensors, meta = _read_tensors(tensor_path)
    for name in records:
        for key in GRAPH_KEYS:
            if f"{name}/{key}" not in tensors:
                raise ValueError(
                    f"The model tensor file {tensor_path} lacks the tensor {name + '/' + key!r}."
                )
    if structure.get("tensors_sha256") != tensors_hash(tensors):
        raise ValueError(
            f"The model tensor file {tensor_path} does not match {structure_path}: its content "
            "hash differs from the one model.json records (changed since it was saved, or a "
            "tensor file of another model). Save the model again."
        )
    if meta.get("structure_sha256") != structure_hash(structure):
        raise ValueError(
            f"The model structure file {structure_path} does not match {tensor_path}: its "
            "content hash differs from the one the tensor file records (model.json was changed "
            "since it was saved, or belongs to another model). Save the model again."
        )
    layers: dict[str, nn.Module] = {}
    for name, record in records.items():
        layers[name] = _build_layer(name, record, tensors, tensor_path, structure_path, limits)
    model = None
    if structure.get("sequence") is not None:
        model = _build_tree(structure["sequence"], layers, structure_path)
        model.eval()
    shape = structure.get("input_shape")
    return SavedModel(
        path=root,
        method=str(structure.get("method", "")),
        input_shape=None if shape is None else tuple(int(v) for v in shape),
        layers=list(layers.items()),
        model=model,
        has_network=structure.get("network_sha256") is not None,
        meta={k: structure.get(k) for k in ("sequence_note", "version", "network_sha256")},
        limits=limits,
    )


def _read_structure(path: Path) -> dict:
    try:
        structure = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer of more digits than Python converts.
        raise ValueError(
            f"The model structure file {path} is corrupt or unreadable ({exc})."
        ) from exc
    if not isinstance(structure, dict) or structure.get("format") != FORMAT:
        found = structure.get("format") if isinstance(structure, dict) else type(structure).__name__
        raise ValueError(
            f"The file {path} is not a fewops coded model (format {found!r}, expected {FORMAT!r})."
        )
    if structure.get("version") != VERSION:
        older = (
            " (saved by an older fewops; save it again)"
            if structure.get("version") in (1, 2)
            else ""
        )
        raise ValueError(
            f"The coded model {path} has version {structure.get('version')!r}{older}; this fewops "
            f"reads version {VERSION}."
        )
    return structure


def _read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
            return {k: handle.get_tensor(k) for k in handle.keys()}, meta  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ValueError(f"The model tensor file {path} is corrupt or unreadable ({exc}).") from exc


def _field(record: dict, key: str, kind, path: Path):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"The model structure file {path} has no valid {key!r} entry.")
    return value


def _build_layer(name, record, tensors, tensor_path, structure_path, limits) -> nn.Module:
    arrays = {key: tensors[f"{name}/{key}"] for key in GRAPH_KEYS}
    source = f"{tensor_path} (layer {name!r})"
    check_graph_arrays(arrays, source, limits.graph)
    if arrays["op"].shape[0] > limits.graph.max_nodes:
        raise ValueError(
            f"The graph in {source} has {arrays['op'].shape[0]} nodes, beyond the limit "
            f"max_nodes={limits.graph.max_nodes}."
        )
    if record.get("big_const") is not None:
        if len(record["big_const"]) != arrays["const"].shape[0]:
            raise ValueError(
                f"The field 'big_const' of layer {name!r} in {structure_path} "
                "does not have one value per node."
            )
        arrays["const"] = np.array([int(v) for v in record["big_const"]], dtype=object)
    try:
        graph = Graph.from_arrays(*(arrays[k] for k in GRAPH_KEYS))
        check_graph_width(graph, source, limits.graph)
        coded = CodedMatrix(
            method=str(record["method"]),
            graph=graph,
            scale_m=int(record["scale_m"]),
            scale_e=int(record["scale_e"]),
            weight_bits=int(record["weight_bits"]),
            params=int(record["params"]),
            table_reads=int(record["table_reads"]),
            config=dict(record.get("config") or {}),
            extra=dict(record.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(
            f"Layer {name!r} of the saved model ({structure_path}, {tensor_path}) is invalid: {exc}"
        ) from exc
    if list(coded.shape) != list(record.get("shape", coded.shape)):
        raise ValueError(
            f"Layer {name!r} in {tensor_path} has shape {coded.shape} but {structure_path} says "
            f"{record['shape']}."
        )
    bias = None
    if record.get("bias"):
        key = f"{name}/bias"
        if key not in tensors or tensors[key].shape != (coded.shape[0],):
            raise ValueError(
                f"The model tensor file {tensor_path} lacks a bias {key!r} of shape "
                f"({coded.shape[0]},)."
            )
        bias = torch.from_numpy(np.array(tensors[key], dtype=np.float32))
        if not bool(bias.isfinite().all()):
            raise ValueError(
                f"The bias {key!r} in the model tensor file {tensor_path} holds NaN or inf."
            )
    if record.get("kind") == "conv":
        c = record["conv"]
        return CodedConv2d(
            coded,
            bias,
            int(c["in_channels"]),
            tuple(c["kernel_size"]),
            tuple(c["stride"]),
            tuple(c["padding"]),
            tuple(c["dilation"]),
        )
    return CodedLinear(coded, bias)


def _build_tree(node: dict, layers: dict, path: Path) -> nn.Module:
    kind = node.get("kind") if isinstance(node, dict) else None
    if kind == "sequential":
        return nn.Sequential(
            OrderedDict((str(n), _build_tree(child, layers, path)) for n, child in node["children"])
        )
    if kind == "coded":
        if node.get("layer") not in layers:
            raise ValueError(
                f"The module tree in {path} names an unknown layer {node.get('layer')!r}."
            )
        return layers[node["layer"]]
    simple = {
        "relu": lambda: nn.ReLU(),
        "flatten": lambda: nn.Flatten(int(node["start_dim"]), int(node["end_dim"])),
        "dropout": lambda: nn.Dropout(float(node["p"])),
        "identity": lambda: nn.Identity(),
        "maxpool": lambda: nn.MaxPool2d(
            _tuple(node["kernel_size"]), _tuple(node["stride"]), _tuple(node["padding"])
        ),
        "avgpool": lambda: nn.AvgPool2d(
            _tuple(node["kernel_size"]), _tuple(node["stride"]), _tuple(node["padding"])
        ),
    }
    if kind not in simple:
        raise ValueError(f"The module tree in {path} has an unknown module kind {kind!r}.")
    try:
        return simple[kind]()
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"The {kind} module in {path} is invalid ({exc}).") from exc


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def save_compressed(out_dir, model, method: str, dataset, act_bits: int, simulate: bool) -> Path:
    """Save the model of ``fewops compress`` with the integer network its simulation used.

    The calibration is recomputed as :func:`fewops.report.pipeline.run_method` does it (first 512
    training images), which is deterministic, so the saved network is the simulated one. A model
    the integer simulator cannot run is saved without a network (its layers only).
    """
    network = None
    if simulate:
        try:
            network = compile_network(model, dataset.x_train[:512], act_bits=act_bits)
        except ValueError:
            network = None
    return save_coded_model(
        model, out_dir, method=method, input_shape=dataset.input_shape, network=network
    )
