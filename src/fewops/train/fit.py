"""Reproducible, resumable training of float models, alone or data-parallel under torchrun.

``fit`` seeds torch, numpy and ``random`` from (seed, epoch, rank) at the start of every
epoch and draws the epoch's sample order from (seed, epoch) alone, so an epoch's result depends
only on the weights and optimizer state it starts from. That is what makes a run that was
stopped after epoch k and resumed from its checkpoint end with exactly the weights of a run
that never stopped.

The training settings come as keywords or as one :class:`~fewops.train.recipe.Recipe`
(``fit(model, data, recipe=Recipe(epochs=5, lr=3e-3))``). Checkpoints are in
:mod:`fewops.train.checkpoint`, distillation in :mod:`fewops.train.distill`, the trained-model
cache in :mod:`fewops.train.cache`.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from fewops.train.arrays import as_tensor, count_correct, resolve_device, training_arrays
from fewops.train.averaging import WeightAverage, check_decay
from fewops.train.checkpoint import load_checkpoint, save_checkpoint
from fewops.train.distill import TeacherLogits, check_distillation, distillation_loss
from fewops.train.distributed import (
    DistContext,
    barrier,
    broadcast_module_state,
    setup_from_env,
    sum_across,
)
from fewops.train.recipe import LR_SCHEDULES, OPTIMIZERS, Recipe
from fewops.train.settings import (
    AfterStep,
    Augment,
    FitSettings,
    Regularizer,
    make_optimizer,
    positive_int,
    recipe_settings,
)

HISTORY_KEYS = ("epoch", "loss", "train_accuracy", "test_accuracy", "lr", "seconds")

__all__ = ["evaluate", "fit"]


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
    x_t, y_t = as_tensor(x, torch.float32), as_tensor(y, torch.int64)
    if x_t.shape[0] == 0 or x_t.shape[0] != y_t.shape[0]:
        raise ValueError(
            f"evaluate needs as many labels as samples, and at least one: got {x_t.shape[0]} "
            f"samples and {y_t.shape[0]} labels."
        )
    correct = count_correct(model, x_t, y_t, positive_int("batch_size", batch_size), device)
    return correct / x_t.shape[0]


def fit(
    model: nn.Module,
    dataset: object,
    recipe: Recipe | None = None,
    *,
    epochs: int | None = None,
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

    The settings ``epochs`` ... ``ema_decay`` come either as keywords or all from ``recipe``
    (``Recipe.fit_kwargs()``); passing a recipe and one of its settings as a keyword (other than
    its default) is a TypeError, so no setting is silently dropped. Without a recipe,
    ``epochs`` is required.

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
    if recipe is not None:
        settings = recipe_settings(
            recipe,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            optimizer=optimizer,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            ema_decay=ema_decay,
        )
        epochs, lr, batch_size, seed, optimizer, weight_decay, lr_schedule, ema_decay = settings
    if epochs is None:
        raise TypeError("fit needs epochs=..., or a recipe=Recipe(...) holding them.")
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
    check_distillation(teacher, distill_T, distill_alpha)
    run = FitSettings(
        epochs=positive_int("epochs", epochs),
        lr=float(lr),
        batch_size=positive_int("batch_size", batch_size),
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
    arrays = training_arrays(dataset)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(positive_int("num_threads", num_threads))
    try:
        checkpoint = None if checkpoint is None else Path(checkpoint)
        return _train(model, arrays, run, checkpoint, resume, progress, device, teacher)
    finally:
        if num_threads is not None:
            torch.set_num_threads(previous_threads)


def _train(
    model, arrays, run: FitSettings, checkpoint, resume, progress, device, teacher=None
) -> dict[str, list]:
    x_train, y_train, x_test, y_test = arrays
    device = resolve_device(model, device)
    model.to(device)
    soft = (
        TeacherLogits(teacher, x_train, run.augment is not None, device)
        if teacher is not None
        else None
    )
    ctx = setup_from_env(device)
    config = run.config(ctx.world_size)
    opt = make_optimizer(model, run)
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
    net, model, opt, x_train, y_train, order, run: FitSettings, bar, soft=None, average=None
) -> tuple[float, float]:
    """One pass over ``order``; returns (summed loss, number correct) for this process."""
    device = resolve_device(model, None)
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


# ---------------------------------------------------------------- helpers


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


def _sharded_accuracy(ctx: DistContext, model, x_test, y_test, device) -> float | None:
    if x_test is None:
        return None
    # Each process scores its own slice of the test set; the counts are summed.
    x_part, y_part = x_test[ctx.rank :: ctx.world_size], y_test[ctx.rank :: ctx.world_size]
    correct = count_correct(model, x_part, y_part, 512, device) if len(y_part) else 0
    total_correct, total = sum_across(ctx, [float(correct), float(len(y_part))], device)
    return total_correct / total
