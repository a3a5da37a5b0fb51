"""Reproducible, resumable training of float models, alone or data-parallel under torchrun.

``fit`` seeds torch, numpy and ``random`` from (seed, epoch, rank) at the start of every
epoch and draws the epoch's sample order from (seed, epoch) alone, so an epoch's result depends
only on the weights and optimizer state it starts from. That is what makes a run that was
stopped after epoch k and resumed from its checkpoint end with exactly the weights of a run
that never stopped.

Checkpoints are single safetensors files: tensors for the model and optimizer state, and
JSON in the header metadata for the epoch, the training settings and the history. They are
written to a temporary file in the same folder and moved into place with ``os.replace``, so a
crash leaves either the previous checkpoint or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from fewops.io.tensors import load_module_state, read_tensors, save_tensors
from fewops.train.averaging import WeightAverage, check_decay
from fewops.train.cache import train_or_load
from fewops.train.distributed import (
    DistContext,
    barrier,
    broadcast_module_state,
    setup_from_env,
    sum_across,
)
from fewops.train.recipe import LR_SCHEDULES, OPTIMIZERS

CHECKPOINT_FORMAT = "fewops-train-checkpoint-1"
HISTORY_KEYS = ("epoch", "loss", "train_accuracy", "test_accuracy", "lr", "seconds")

__all__ = [
    "distillation_loss",
    "evaluate",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
    "train_or_load",
]

Regularizer = Callable[[nn.Module], torch.Tensor]
AfterStep = Callable[[nn.Module], None]
Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Run:
    """The settings of one ``fit`` call, checked."""

    epochs: int
    lr: float
    batch_size: int
    seed: int
    optimizer: str
    weight_decay: float
    momentum: float
    lr_schedule: str | None
    regularizer: Regularizer | None
    after_step: AfterStep | None
    augment: Augment | None
    distill_T: float = 4.0
    distill_alpha: float = 0.0
    ema_decay: float | None = None

    def config(self, world_size: int) -> dict:
        """The settings a checkpoint must share with a run that resumes it."""
        config = {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "lr_schedule": self.lr_schedule,
            "world_size": world_size,
        }
        if self.lr_schedule is not None:
            config["epochs"] = self.epochs  # the schedule's shape depends on the total
        if self.distill_alpha > 0:  # only then, so older checkpoints still resume
            config["distill_T"] = self.distill_T
            config["distill_alpha"] = self.distill_alpha
        # Always present: an older checkpoint lacks the key, which reads as None (no average).
        config["ema_decay"] = self.ema_decay
        return config

    def lr_at(self, epoch: int) -> float:
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.lr


def evaluate(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    batch_size: int = 512,
    *,
    device: torch.device | str | None = None,
) -> float:
    """Fraction of the samples in ``x`` whose arg-max prediction equals ``y``.

    The model runs in eval mode without gradients; its previous mode is restored afterwards.
    """
    x_t, y_t = _as_tensor(x, torch.float32), _as_tensor(y, torch.int64)
    if x_t.shape[0] == 0 or x_t.shape[0] != y_t.shape[0]:
        raise ValueError(
            f"evaluate needs as many labels as samples, and at least one: got {x_t.shape[0]} "
            f"samples and {y_t.shape[0]} labels."
        )
    correct = _count_correct(model, x_t, y_t, _positive("batch_size", batch_size), device)
    return correct / x_t.shape[0]


def fit(
    model: nn.Module,
    dataset: object,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    lr_schedule: str | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    regularizer: Regularizer | None = None,
    after_step: AfterStep | None = None,
    augment: Augment | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
    teacher: nn.Module | np.ndarray | torch.Tensor | None = None,
    distill_T: float = 4.0,
    distill_alpha: float = 0.5,
    ema_decay: float | None = None,
) -> dict[str, list]:
    """Train ``model`` in place on ``dataset.x_train``/``y_train`` with cross-entropy.

    ``optimizer`` is "adam", "adamw" or "sgd" (with ``momentum``); ``lr_schedule`` None keeps
    ``lr``, "cosine" anneals it per epoch towards 0. ``regularizer(model)`` returns a scalar
    tensor added to every batch's loss; ``after_step(model)`` runs under ``torch.no_grad()``
    after every optimizer step (e.g. to project weights); ``augment(x_batch)`` transforms each
    training batch and may draw from torch's generator (seeded per epoch).

    With ``checkpoint`` a file is written after every epoch; with ``resume`` an existing one
    is continued from its epoch (a ValueError if its settings differ from these). Under
    torchrun the model is wrapped in DistributedDataParallel, each process takes its share of
    every epoch (``batch_size`` is per process) and only rank 0 writes and shows progress.
    ``num_threads`` sets torch's intra-op threads for the call (restored afterwards); None
    keeps the current setting. Small models on a busy machine train much faster with 1.

    Knowledge distillation: with ``teacher`` (a model, or its logits on ``x_train`` as an
    (N, classes) array) each batch's loss is ``(1 - distill_alpha) * cross_entropy +
    distill_alpha * distill_T**2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton
    et al. 2015; the T**2 keeps the soft-target gradients on the scale of the hard ones).
    Without ``augment`` a teacher model runs once over ``x_train`` in eval mode before
    training (its logits are reused every epoch); with ``augment`` it runs on every augmented
    batch. ``teacher=None`` (the default) trains on the labels alone, as before.

    Weight averaging: with ``ema_decay`` (e.g. 0.998) an exponential moving average of the
    trainable parameters is kept after every step (``after_step`` included, so a projected
    model's average is projected too); "test_accuracy" scores the average, the checkpoint
    holds it, and the model ends with the averaged parameters.

    Returns the history: per epoch "epoch", "loss", "train_accuracy", "test_accuracy" (None
    without test data), "lr", "seconds".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit trains a torch.nn.Module, got {type(model).__name__}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}.")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"Unknown lr_schedule {lr_schedule!r}; use None or 'cosine'.")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if teacher is not None and not isinstance(teacher, nn.Module | np.ndarray | torch.Tensor):
        raise TypeError(
            f"teacher must be a torch.nn.Module or an array of its training-set logits, got "
            f"{type(teacher).__name__}."
        )
    if teacher is not None:
        if (
            isinstance(distill_T, bool)
            or not isinstance(distill_T, int | float)
            or not (distill_T > 0)
        ):
            raise ValueError(f"distill_T must be a positive number, got {distill_T!r}.")
        if (
            isinstance(distill_alpha, bool)
            or not isinstance(distill_alpha, int | float)
            or not (0 < distill_alpha <= 1)
        ):
            raise ValueError(f"distill_alpha must be in (0, 1], got {distill_alpha!r}.")
    run = _Run(
        epochs=_positive("epochs", epochs),
        lr=float(lr),
        batch_size=_positive("batch_size", batch_size),
        seed=seed,
        optimizer=optimizer,
        weight_decay=float(weight_decay),
        momentum=float(momentum),
        lr_schedule=lr_schedule,
        regularizer=regularizer,
        after_step=after_step,
        augment=augment,
        distill_T=float(distill_T),
        distill_alpha=float(distill_alpha) if teacher is not None else 0.0,
        ema_decay=check_decay(ema_decay),
    )
    arrays = _training_arrays(dataset)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(_positive("num_threads", num_threads))
    try:
        checkpoint = None if checkpoint is None else Path(checkpoint)
        return _train(model, arrays, run, checkpoint, resume, progress, device, teacher)
    finally:
        if num_threads is not None:
            torch.set_num_threads(previous_threads)


def _train(
    model, arrays, run: _Run, checkpoint, resume, progress, device, teacher=None
) -> dict[str, list]:
    x_train, y_train, x_test, y_test = arrays
    device = _resolve_device(model, device)
    model.to(device)
    soft = _Teacher(teacher, x_train, run, device) if teacher is not None else None
    ctx = setup_from_env(device)
    config = run.config(ctx.world_size)
    opt = _make_optimizer(model, run)
    average = WeightAverage(model, run.ema_decay) if run.ema_decay is not None else None
    history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
    start = 0
    if checkpoint is not None and resume and checkpoint.exists():
        start, history = load_checkpoint(checkpoint, model, opt, config=config, average=average)
        if start > run.epochs:
            raise ValueError(
                f"The checkpoint {checkpoint} holds {start} trained epochs, more than the "
                f"{run.epochs} asked for; pass a larger epochs, resume=False, or another path."
            )

    net: nn.Module = model
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    # The sampler shards each epoch's permutation (drawn from seed + epoch) across processes;
    # in one process it is simply that permutation.
    sampler = DistributedSampler(
        range(len(y_train)),
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=run.seed,
    )
    steps = math.ceil(len(sampler) / run.batch_size)
    show = progress and ctx.is_main
    with tqdm(total=(run.epochs - start) * steps, disable=not show, unit="batch") as bar:
        for epoch in range(start, run.epochs):
            started = time.perf_counter()
            _seed_everything(run.seed, epoch, ctx.rank)
            for group in opt.param_groups:
                group["lr"] = run.lr_at(epoch)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.int64)
            bar.set_description(f"epoch {epoch + 1}/{run.epochs}")
            loss_sum, correct = _run_epoch(
                net, model, opt, x_train, y_train, order, run, bar, soft, average
            )
            broadcast_module_state(ctx, model)
            with average.swapped_in(model) if average else contextlib.nullcontext():
                test_accuracy = _sharded_accuracy(ctx, model, x_test, y_test, device)
            loss_sum, correct, seen = sum_across(ctx, [loss_sum, correct, len(order)], device)
            row = {
                "epoch": epoch + 1,
                "loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "test_accuracy": test_accuracy,
                "lr": run.lr_at(epoch),
                "seconds": time.perf_counter() - started,
            }
            for key in HISTORY_KEYS:
                history[key].append(row[key])
            bar.set_postfix({k: f"{row[k]:.4f}" for k in ("loss", "test_accuracy") if row[k]})
            if checkpoint is not None and ctx.is_main:
                save_checkpoint(checkpoint, model, opt, epoch=epoch + 1, config=config,
                                history=history, average=average)  # fmt: skip
            barrier(ctx)
    if average is not None:
        average.copy_to(model)
    return history


def _run_epoch(
    net, model, opt, x_train, y_train, order, run: _Run, bar, soft=None, average=None
) -> tuple[float, float]:
    """One pass over ``order``; returns (summed loss, number correct) for this process."""
    device = _resolve_device(model, None)
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for step, index in enumerate(order.split(run.batch_size)):
        xb = x_train[index].to(device, non_blocking=True)
        yb = y_train[index].to(device, non_blocking=True)
        if run.augment is not None:
            xb = run.augment(xb)
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        if soft is not None:
            loss = distillation_loss(
                logits, yb, soft.logits(index, xb), run.distill_T, run.distill_alpha
            )
        if run.regularizer is not None:
            loss = loss + _check_penalty(run.regularizer(model))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if run.after_step is not None:
            with torch.no_grad():
                run.after_step(model)
        if average is not None:
            average.update(model)
        with torch.no_grad():
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.argmax(dim=1) == yb).sum()
        bar.update(1)
        if step % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return loss_sum.item(), float(correct.item())


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
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"The checkpoint {path} has corrupt metadata ({exc}).") from exc
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
        except (KeyError, ValueError, TypeError) as exc:
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


def distillation_loss(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, T: float, alpha: float
) -> torch.Tensor:
    """``(1 - alpha) * CE(logits, labels) + alpha * T**2 * KL(p_teacher,T || p_student,T)``,
    averaged over the batch."""
    hard = F.cross_entropy(logits, labels)
    if alpha <= 0:
        return hard
    soft = F.kl_div(
        F.log_softmax(logits / T, dim=1),
        F.log_softmax(teacher_logits.to(logits.dtype) / T, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - alpha) * hard + alpha * (T * T) * soft


class _Teacher:
    """Teacher logits per batch: precomputed once over x_train, or computed per (augmented)
    batch when the batches are transformed."""

    def __init__(self, teacher, x_train: torch.Tensor, run: _Run, device) -> None:
        self.model = None
        self.table = None
        if isinstance(teacher, nn.Module):
            if run.augment is not None:
                self.model = teacher
            else:
                self.table = _teacher_logits(teacher, x_train, device)
        else:
            table = _as_tensor(teacher, torch.float32)
            if table.ndim != 2 or table.shape[0] != len(x_train):
                raise ValueError(
                    f"teacher logits must have shape (number of training samples, classes) = "
                    f"({len(x_train)}, classes); got {tuple(table.shape)}."
                )
            if run.augment is not None:
                raise ValueError(
                    "Precomputed teacher logits cannot follow augmented batches; pass the "
                    "teacher model instead."
                )
            self.table = table.to(device)

    def logits(self, index: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            return self.table[index.to(self.table.device)]
        return _teacher_logits(self.model, xb, xb.device)


@torch.no_grad()
def _teacher_logits(teacher: nn.Module, x: torch.Tensor, device, batch_size: int = 512):
    was_training = teacher.training
    teacher.eval()
    try:
        parts = [
            teacher(x[start : start + batch_size].to(device)).float()
            for start in range(0, x.shape[0], batch_size)
        ]
    finally:
        teacher.train(was_training)
    return torch.cat(parts)


# ---------------------------------------------------------------- helpers


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _as_tensor(values: object, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(dtype)
    array = np.asarray(values)
    if not array.flags.writeable:  # torch warns on read-only numpy memory
        array = array.copy()
    return torch.from_numpy(array).to(dtype)


def _training_arrays(dataset: object):
    missing = [a for a in ("x_train", "y_train") if getattr(dataset, a, None) is None]
    if missing:
        raise TypeError(
            f"fit needs a data set with x_train and y_train (e.g. fewops.data.load(...)); "
            f"{type(dataset).__name__} lacks {', '.join(missing)}."
        )
    x_train = _as_tensor(dataset.x_train, torch.float32)
    y_train = _as_tensor(dataset.y_train, torch.int64)
    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise ValueError(
            f"fit needs as many training labels as samples, and at least one: got "
            f"{len(x_train)} samples and {len(y_train)} labels."
        )
    x_test, y_test = getattr(dataset, "x_test", None), getattr(dataset, "y_test", None)
    if x_test is None or y_test is None or len(x_test) == 0:
        return x_train, y_train, None, None
    return x_train, y_train, _as_tensor(x_test, torch.float32), _as_tensor(y_test, torch.int64)


def _resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _make_optimizer(model: nn.Module, run: _Run) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if not params:
        raise ValueError("fit needs a model with parameters to train; this one has none.")
    if run.optimizer == "adam":
        return torch.optim.Adam(params, lr=run.lr, weight_decay=run.weight_decay)
    if run.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=run.lr, weight_decay=run.weight_decay)
    return torch.optim.SGD(params, lr=run.lr, momentum=run.momentum, weight_decay=run.weight_decay)


def _seed_everything(seed: int, epoch: int, rank: int) -> None:
    # SeedSequence mixes the three numbers well, so nearby seeds give unrelated streams.
    value = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _check_penalty(value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""
        raise TypeError(
            f"regularizer(model) must return a scalar tensor, got {type(value).__name__}{shape}."
        )
    return value.reshape(())


@torch.no_grad()
def _count_correct(model: nn.Module, x, y, batch_size: int, device=None) -> int:
    device = _resolve_device(model, device)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start : start + batch_size].to(device))
            correct += int((logits.argmax(dim=1) == y[start : start + batch_size].to(device)).sum())
    finally:
        model.train(was_training)
    return correct


def _sharded_accuracy(ctx: DistContext, model, x_test, y_test, device) -> float | None:
    if x_test is None:
        return None
    # Each process scores its own slice of the test set; the counts are summed.
    x_part, y_part = x_test[ctx.rank :: ctx.world_size], y_test[ctx.rank :: ctx.world_size]
    correct = _count_correct(model, x_part, y_part, 512, device) if len(y_part) else 0
    total_correct, total = sum_across(ctx, [float(correct), float(len(y_part))], device)
    return total_correct / total
