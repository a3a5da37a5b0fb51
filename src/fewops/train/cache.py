"""Trained float models, cached on disk so that a second request does not train again.

The reference models that compression starts from are trained once per setting and kept as
safetensors files (weights, plus the settings and training history as JSON metadata).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from fewops.data import default_root, load
from fewops.io.tensors import UnhashedFileError, load_module_state, read_tensors, save_tensors
from fewops.models.registry import build
from fewops.train.distributed import setup_from_env
from fewops.train.fit import fit

MODEL_CACHE_FORMAT = "fewops-trained-model-1"


class CacheEntryRebuilt(UserWarning):
    """A cached model failed its checks (hash, settings, finite weights) and is trained again."""


def _trusted_entry(path: Path, key_json: str) -> tuple[dict | None, dict]:
    """The cache entry's tensors and metadata, or (None, {}) after a warning saying why the
    entry is not trusted (it is then trained again and replaced)."""
    try:
        tensors, meta = read_tensors(path, expected_format=MODEL_CACHE_FORMAT, what="cached model")
    except UnhashedFileError:
        return None, {}  # written before content hashes: trained again, never trusted
    except ValueError as exc:
        # read_tensors names the file and tells the user to delete it: here we rebuild instead.
        reason = (
            str(exc)
            .removeprefix(f"The cached model {path} is ")
            .removesuffix(" Delete it to start afresh.")
        )
        reason = "it is " + reason.rstrip(".")
    else:
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
        if meta.get("key") != key_json:
            reason = "it was trained with other settings than its name says"
        elif bad:
            reason = f"its tensor {bad[0]!r} holds NaN or inf values"
        else:
            return tensors, meta
    warnings.warn(
        f"Not trusting the cached model {path}: {reason}; training it again.",
        CacheEntryRebuilt,
        stacklevel=3,
    )
    return None, {}


def train_or_load(
    model_name: str,
    dataset_name: str,
    *,
    epochs: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    dataset: object | None = None,
    hidden: tuple[int, ...] | None = None,
    model_options: dict | None = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    lr_schedule: str | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> tuple[nn.Module, dict]:
    """A trained float model from the cache, training (and caching) it on first use.

    The cache key covers the model and its options (``hidden`` for mlp), the data set and its
    train/test sizes, epochs, seed and the optimizer settings; the file is
    ``cache_dir/<model>-<data>-e<epochs>-s<seed>-<hash>.safetensors`` (cache_dir defaults to
    ``~/.cache/fewops/models``). Interrupted training resumes from a ``.partial`` checkpoint.
    ``dataset`` may pass the already loaded data set. Returns (model in eval mode, info) with
    info keys "path", "cached", "history", "test_accuracy", "key".
    """
    data = dataset if dataset is not None else load(dataset_name, data_root, seed=seed)
    options = dict(model_options or {})
    if hidden is not None:
        options["hidden"] = tuple(int(h) for h in hidden)
    key = {
        "format": MODEL_CACHE_FORMAT,
        "model": model_name,
        "model_options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "dataset": dataset_name,
        "num_train": int(len(data.y_train)),
        "num_test": int(len(data.y_test)),
        "epochs": int(epochs),
        "seed": int(seed),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "optimizer": optimizer,
        "weight_decay": float(weight_decay),
        "lr_schedule": lr_schedule,
    }
    key_json = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(key_json.encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else default_root() / "models"
    # The names only make the file name readable (the hash keys it); keep them path-safe.
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{model_name}-{dataset_name}")
    path = folder / f"{label}-e{epochs}-s{seed}-{digest}.safetensors"

    torch.manual_seed(seed)  # same key, same initial weights
    model = build(model_name, data.input_shape, data.num_classes, **options)
    tensors, meta = _trusted_entry(path, key_json) if path.exists() else (None, {})
    if tensors is not None:
        load_module_state(path, model, tensors)
        info = {"history": json.loads(meta.get("history", "{}")), "cached": True}
    else:
        partial = path.with_name(path.stem + ".partial.safetensors")
        history = fit(
            model,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            optimizer=optimizer,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            checkpoint=partial,
            progress=progress,
            num_threads=num_threads,
        )
        if setup_from_env().is_main:
            metadata = {
                "format": MODEL_CACHE_FORMAT,
                "key": key_json,
                "history": json.dumps(history),
            }
            save_tensors(path, model.state_dict(), metadata)
            partial.unlink(missing_ok=True)
        info = {"history": history, "cached": False}
    accuracies = info["history"].get("test_accuracy") or [None]
    info.update(path=path, test_accuracy=accuracies[-1], key=key)
    return model.eval(), info
