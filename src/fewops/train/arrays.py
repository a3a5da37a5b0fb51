"""Tensors for training and scoring: data sets as tensors, devices, accuracy counts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def as_tensor(values: object, dtype: torch.dtype) -> torch.Tensor:
    """``values`` (a tensor or anything numpy reads) as a tensor of ``dtype``."""
    if isinstance(values, torch.Tensor):
        return values.to(dtype)
    array = np.asarray(values)
    if not array.flags.writeable:  # torch warns on read-only numpy memory
        array = array.copy()
    return torch.from_numpy(array).to(dtype)


def training_arrays(dataset: object):
    """(x_train, y_train, x_test, y_test) of ``dataset`` as tensors; the test pair is
    (None, None) when the data set has no test samples."""
    missing = [a for a in ("x_train", "y_train") if getattr(dataset, a, None) is None]
    if missing:
        raise TypeError(
            f"fit needs a data set with x_train and y_train (e.g. fewops.data.load(...)); "
            f"{type(dataset).__name__} lacks {', '.join(missing)}."
        )
    x_train = as_tensor(dataset.x_train, torch.float32)
    y_train = as_tensor(dataset.y_train, torch.int64)
    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise ValueError(
            f"fit needs as many training labels as samples, and at least one: got "
            f"{len(x_train)} samples and {len(y_train)} labels."
        )
    x_test, y_test = getattr(dataset, "x_test", None), getattr(dataset, "y_test", None)
    if x_test is None or y_test is None or len(x_test) == 0:
        return x_train, y_train, None, None
    return x_train, y_train, as_tensor(x_test, torch.float32), as_tensor(y_test, torch.int64)


def resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device``, or where the model's first parameter lives (CPU for a model without any)."""
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def count_correct(model: nn.Module, x, y, batch_size: int, device=None) -> int:
    """How many samples of ``x`` the model labels ``y`` (eval mode; the mode is restored)."""
    device = resolve_device(model, device)
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
