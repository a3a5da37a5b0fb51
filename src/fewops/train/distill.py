"""Knowledge distillation for :func:`fewops.train.fit.fit`: the loss and the teacher's logits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewops.train.arrays import as_tensor


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


def check_distillation(teacher: object, distill_T: object, distill_alpha: object) -> None:
    """Refuse a teacher that is neither a model nor a logits array, and T or alpha out of range."""
    if teacher is None:
        return
    if not isinstance(teacher, nn.Module | np.ndarray | torch.Tensor):
        raise TypeError(
            f"teacher must be a torch.nn.Module or an array of its training-set logits, got "
            f"{type(teacher).__name__}."
        )
    if isinstance(distill_T, bool) or not isinstance(distill_T, int | float) or not distill_T > 0:
        raise ValueError(f"distill_T must be a positive number, got {distill_T!r}.")
    if (
        isinstance(distill_alpha, bool)
        or not isinstance(distill_alpha, int | float)
        or not (0 < distill_alpha <= 1)
    ):
        raise ValueError(f"distill_alpha must be in (0, 1], got {distill_alpha!r}.")


class TeacherLogits:
    """Teacher logits per batch: precomputed once over x_train, or computed per (augmented)
    batch when the batches are transformed (``augmented``)."""

    def __init__(self, teacher, x_train: torch.Tensor, augmented: bool, device) -> None:
        self.model = None
        self.table = None
        if isinstance(teacher, nn.Module):
            if augmented:
                self.model = teacher
            else:
                self.table = teacher_logits(teacher, x_train, device)
        else:
            table = as_tensor(teacher, torch.float32)
            if table.ndim != 2 or table.shape[0] != len(x_train):
                raise ValueError(
                    f"teacher logits must have shape (number of training samples, classes) = "
                    f"({len(x_train)}, classes); got {tuple(table.shape)}."
                )
            if augmented:
                raise ValueError(
                    "Precomputed teacher logits cannot follow augmented batches; pass the "
                    "teacher model instead."
                )
            self.table = table.to(device)

    def logits(self, index: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """The teacher's logits of the batch ``xb`` (rows ``index`` of x_train)."""
        if self.table is not None:
            return self.table[index.to(self.table.device)]
        return teacher_logits(self.model, xb, xb.device)


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor, device, batch_size: int = 512):
    """The teacher's logits of ``x`` in eval mode (its mode is restored afterwards)."""
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
