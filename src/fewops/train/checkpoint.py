"""Training checkpoints: model and optimizer state (and a weight average) in one safetensors file.

Tensors hold the model and optimizer state; JSON in the header metadata holds the epoch, the
training settings and the history. The file is written to a temporary file in the same folder and
moved into place with ``os.replace`` (:func:`fewops.io.tensors.save_tensors`), so a crash leaves
either the previous checkpoint or the new one, never half a file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from fewops.io.tensors import load_module_state, read_tensors, save_tensors
from fewops.train.averaging import WeightAverage

CHECKPOINT_FORMAT = "fewops-train-checkpoint-1"


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    config: dict,
    history: dict,
    average: WeightAverage | None = None,
) -> None:
    """Write model and optimizer state (and a weight average) atomically as one safetensors
    file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update(average.tensors())
    opt_state = optimizer.state_dict()
    state_json: dict[str, dict] = {}
    for param_id, state in opt_state["state"].items():
        entry = {}
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value
                entry[key] = {"tensor": f"optimizer.{param_id}.{key}"}
            else:
                entry[key] = {"value": value}
        state_json[str(param_id)] = entry
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "epoch": str(int(epoch)),
        "config": json.dumps(config, sort_keys=True),
        "history": json.dumps(history),
        "optimizer": json.dumps({"state": state_json, "param_groups": opt_state["param_groups"]}),
    }
    if average is not None:
        metadata["ema_updates"] = str(average.updates)
    save_tensors(path, tensors, metadata)


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    config: dict | None = None,
    average: WeightAverage | None = None,
) -> tuple[int, dict[str, list]]:
    """Restore model (and optimizer, and weight average) state from ``path``; return (epochs
    done, history).

    With ``config``, every setting in it must equal the one the checkpoint was written with.
    """
    path = Path(path)
    tensors, meta = read_tensors(path, expected_format=CHECKPOINT_FORMAT, what="checkpoint")
    try:
        epoch = int(meta["epoch"])
        saved_config = json.loads(meta["config"])
        history = json.loads(meta["history"])
        opt_json = json.loads(meta["optimizer"])
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"The checkpoint {path} has corrupt metadata ({exc}).") from exc
    kinds = {"config": saved_config, "history": history, "optimizer": opt_json}
    for name, value in kinds.items():
        if not isinstance(value, dict):
            raise ValueError(
                f"The checkpoint {path} has corrupt metadata ({name} is a "
                f"{type(value).__name__}, not an object)."
            )
    for key, value in (config or {}).items():
        if saved_config.get(key) != value:
            raise ValueError(
                f"The checkpoint {path} was written with {key}={saved_config.get(key)!r}, but "
                f"this run has {key}={value!r}; resuming would mix two different runs. Pass "
                "resume=False to start over, or use another checkpoint path."
            )
    load_module_state(path, model, tensors, prefix="model.")
    if optimizer is not None:
        try:
            state = {
                int(pid): {
                    k: tensors[v["tensor"]] if "tensor" in v else v["value"]
                    for k, v in entry.items()
                }
                for pid, entry in opt_json["state"].items()
            }
            optimizer.load_state_dict({"state": state, "param_groups": opt_json["param_groups"]})
        except (KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as exc:
            raise ValueError(
                f"The optimizer state in checkpoint {path} does not fit this optimizer ({exc})."
            ) from exc
    if average is not None:
        try:
            updates = int(meta["ema_updates"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"The checkpoint {path} has no weight-average step count.") from exc
        average.load(tensors, updates, str(path))
    return epoch, history
