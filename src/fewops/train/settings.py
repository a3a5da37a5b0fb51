"""The settings of one :func:`fewops.train.fit.fit` call: checked, from keywords or a Recipe."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fewops.train.recipe import Recipe

Regularizer = Callable[[nn.Module], torch.Tensor]
AfterStep = Callable[[nn.Module], None]
Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FitSettings:
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
        """The learning rate of ``epoch`` (0-based) under the schedule."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.lr


_KEYWORD_DEFAULTS = {
    "epochs": None,
    "lr": 1e-3,
    "batch_size": 128,
    "seed": 0,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr_schedule": None,
    "ema_decay": None,
}


def recipe_settings(recipe: Recipe, **given) -> tuple:
    """(epochs, lr, batch_size, seed, optimizer, weight_decay, lr_schedule, ema_decay) of
    ``recipe``; a TypeError if ``given`` (fit's keywords) sets one of them to a non-default."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"fit's recipe must be a Recipe; got {type(recipe).__name__} {recipe!r}.")
    clash = [f"{k}={v!r}" for k, v in given.items() if v != _KEYWORD_DEFAULTS[k]]
    if clash:
        raise TypeError(
            f"fit got a recipe and also {', '.join(clash)}; put the setting in the recipe "
            "(dataclasses.replace(recipe, ...)) or pass keywords alone."
        )
    settings = recipe.fit_kwargs()
    return tuple(settings[k] for k in _KEYWORD_DEFAULTS)


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an integer >= 1; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def make_optimizer(model: nn.Module, run: FitSettings) -> torch.optim.Optimizer:
    """The optimizer ``run`` names over all of ``model``'s parameters."""
    params = list(model.parameters())
    if not params:
        raise ValueError("fit needs a model with parameters to train; this one has none.")
    if run.optimizer == "adam":
        return torch.optim.Adam(params, lr=run.lr, weight_decay=run.weight_decay)
    if run.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=run.lr, weight_decay=run.weight_decay)
    return torch.optim.SGD(params, lr=run.lr, momentum=run.momentum, weight_decay=run.weight_decay)
