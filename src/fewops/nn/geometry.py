"""Where a layer's weights are used: the output positions of each layer, for counting its cost.

A Linear layer applies its matrix once per sample; a convolution applies its im2col matrix once
per output position (H*W of its output), so a conv layer's adds per inference are its matrix's
adds times its positions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from fewops.nn.coded import CodedConv2d, CodedLinear

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d, CodedLinear, CodedConv2d)


def output_positions(
    model: nn.Module,
    example: torch.Tensor | tuple[int, ...],
    names: Iterable[str] | None = None,
) -> dict[str, int]:
    """{layer name: output positions} (H*W of a conv's output, 1 for a 2-D output).

    ``example`` is an input batch (its first sample is used) or the shape (C, H, W) of one
    sample (a zero input). ``names`` are the layers to count (default: every Linear, Conv2d and
    coded layer). One forward pass in eval mode without gradients; the model's mode is restored.
    """
    if isinstance(example, torch.Tensor):
        sample = example[:1]
    else:
        sample = torch.zeros((1, *tuple(int(d) for d in example)))
    if names is None:
        names = [n for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    positions: dict[str, int] = {}
    hooks = []
    for name in names:

        def hook(module, inputs, output, name=name):
            positions[name] = int(np.prod(output.shape[2:])) if output.dim() > 2 else 1

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return positions
