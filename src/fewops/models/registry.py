"""``build(name, input_shape, num_classes)``: one entry point, dispatched through a plain dict."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from fewops.models.resnet import resnet20, resnet34
from fewops.models.shapes import check_input_shape, positive_int
from fewops.models.simple import lenet5, mlp, mnist_cnn
from fewops.models.vgg import vgg16

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "lenet5": lenet5,
    "mnist-cnn": mnist_cnn,
    "resnet20": resnet20,
    "resnet34": resnet34,
    "vgg16": vgg16,
}

MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build(
    name: str,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    **options: object,
) -> nn.Module:
    """Build a freshly initialised model ``name`` for images shaped ``input_shape`` (C, H, W).

    ``options`` are the builder's own keywords: ``mlp(hidden=(512, 256), dropout=0.0)``,
    ``lenet5(pool="max")``, ``mnist-cnn(dropout=True)``, ``resnet20(shortcut="A")``,
    ``vgg16(classifier_layers=1)``; ``resnet34`` has none. Initial weights come from torch's
    global generator: call ``torch.manual_seed`` first for reproducible models.
    """
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string, got {type(name).__name__} {name!r}.")
    key = name.strip().lower().replace("_", "-")
    if key not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(MODELS)}.")
    builder = _BUILDERS[key]
    accepted = [
        p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"Model {key!r} takes no option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'none'}."
        )
    shape = check_input_shape(input_shape)
    classes = positive_int(num_classes, "num_classes")
    return builder(shape, classes, **options)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter values (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
