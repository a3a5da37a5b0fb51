"""Exponential moving average of a model's trainable parameters (Polyak averaging).

Why: a small coded network trained at a large step ends where the last few hundred steps left
it, and its test accuracy swings by tenths of a point from one epoch to the next. The average
of the recent parameters is a smoother model. Every fewops code is a linear family of weights
(or learns coefficients directly), so an average of members is a member: averaging never
leaves the code.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

EMA_PREFIX = "ema."


def check_decay(value: object, name: str = "ema_decay") -> float | None:
    """``None`` (no averaging) or a decay in (0, 1); anything else is a ValueError naming
    ``name`` (the caller's own name for the setting) and the value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < 1):
        raise ValueError(f"{name} must be None or a decay in (0, 1); got {value!r}.")
    return float(value)


class WeightAverage:
    """Shadow copies of ``model``'s trainable parameters, updated after every optimizer step.

    The effective decay is ``min(decay, (1 + t) / (10 + t))`` at update t, so the first steps
    are not dominated by the starting point (the warm-up TensorFlow's averaging uses).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Make the averaged parameters the model's own (at the end of training)."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module):
        """The averaged parameters inside the block (to score them), the trained ones after."""
        kept = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in kept:
                        p.copy_(kept[name])

    def tensors(self) -> dict[str, torch.Tensor]:
        """For a checkpoint: the shadow parameters under ``ema.<name>``."""
        return {EMA_PREFIX + name: t for name, t in self.shadow.items()}

    def load(self, tensors: dict[str, torch.Tensor], updates: int, source: str) -> None:
        """Restore from a checkpoint's tensors; a missing or misshapen one is a ValueError."""
        for name, t in self.shadow.items():
            saved = tensors.get(EMA_PREFIX + name)
            if saved is None or saved.shape != t.shape:
                found = "missing" if saved is None else f"shape {tuple(saved.shape)}"
                raise ValueError(
                    f"The checkpoint {source} has no usable average of parameter {name!r} "
                    f"({found}, expected shape {tuple(t.shape)})."
                )
            t.copy_(saved)
        self.updates = int(updates)
