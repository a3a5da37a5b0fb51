"""One training recipe for every method: how training gets a model to its code.

A method's config holds its code (what values the weights may take) apart from a :class:`Recipe`
(how training pulls the weights there). Every method's training takes the same type, so ``lr``
means the same thing for SST, LCC and WACR, and the CLI builds the same options for all of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fewops.train.averaging import check_decay

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = (None, "cosine")


def check_count(owner: str, name: str, value: object, low: int) -> int:
    """``value`` must be an integer (not a bool) of at least ``low``; else a ValueError naming
    ``owner.name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a non-negative integer" if low == 0 else f"an integer of at least {low}"
        raise ValueError(f"{owner}.{name} must be {what}; got {value!r}.")
    return value


def check_positive(owner: str, name: str, value: object, *, optional: bool = False) -> None:
    """``value`` must be a finite number > 0 (or None when ``optional``)."""
    if optional and value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        what = "a positive number or None" if optional else "a positive number"
        raise ValueError(f"{owner}.{name} must be {what}; got {value!r}.")


@dataclass(frozen=True)
class Recipe:
    """A training recipe: what :func:`fewops.train.fit.fit` needs besides the model and data."""

    epochs: int = 0
    """training epochs (0: no training)"""
    lr: float = 1e-3
    """learning rate"""
    batch_size: int = 128
    """mini-batch size (per process under torchrun)"""
    optimizer: str = "adam"
    """optimizer: adam, adamw or sgd (momentum 0.9)"""
    weight_decay: float = 0.0
    """weight decay of the optimizer"""
    lr_schedule: str | None = None
    """learning-rate schedule: None keeps lr, cosine anneals it per epoch towards 0"""
    seed: int = 0
    """seed of the data order, the augmentation and any random initialisation"""
    ema: float | None = None
    """decay of a moving average of the weights kept while training and ended with (e.g. 0.998;
    None: off)"""

    def __post_init__(self) -> None:
        check_count("Recipe", "epochs", self.epochs, 0)
        check_positive("Recipe", "lr", self.lr)
        check_count("Recipe", "batch_size", self.batch_size, 1)
        check_count("Recipe", "seed", self.seed, 0)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Recipe.optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}."
            )
        if (
            isinstance(self.weight_decay, bool)
            or not isinstance(self.weight_decay, int | float)
            or not math.isfinite(self.weight_decay)
            or self.weight_decay < 0
        ):
            raise ValueError(
                f"Recipe.weight_decay must be a non-negative number; got {self.weight_decay!r}."
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"Recipe.lr_schedule must be None (constant) or 'cosine'; got {self.lr_schedule!r}."
            )
        check_decay(self.ema, "Recipe.ema")

    def fit_kwargs(self) -> dict:
        """The keyword arguments of :func:`fewops.train.fit.fit` this recipe sets."""
        settings = asdict(self)
        settings["ema_decay"] = settings.pop("ema")
        return settings
