"""VGG-16 with batch normalisation, in the CIFAR style (32x32 inputs).

Thirteen 3x3 conv+BN+ReLU layers in five blocks (64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3),
each block ending in 2x2 max pooling; a 32x32 image ends as 512x1x1. Then global average
pooling (a no-op at 32x32, so larger inputs work too), flatten and the classifier:

* ``classifier_layers=1`` (default): Linear(512, num_classes); 14,728,266 parameters for 10
  classes, the usual CIFAR VGG-16.
* ``classifier_layers=2``: Linear(512, 512), ReLU, Dropout(0.5), Linear(512, num_classes).
"""

from __future__ import annotations

from torch import nn

VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip


def vgg16(
    input_shape: tuple[int, int, int], num_classes: int, *, classifier_layers: int = 1
) -> nn.Sequential:
    if classifier_layers not in (1, 2):
        raise ValueError(f"classifier_layers must be 1 or 2, got {classifier_layers!r}.")
    c, h, w = input_shape
    if min(h, w) < 32:
        raise ValueError(
            f"vgg16 halves the image five times and needs at least 32x32 pixels, got {h}x{w}."
        )
    layers: list[nn.Module] = []
    in_channels = c
    for entry in VGG16_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [
                # Bias kept before BN (redundant, but the common CIFAR VGG-16 has it, and so
                # its parameter count of 14,728,266).
                nn.Conv2d(in_channels, entry, 3, padding=1),
                nn.BatchNorm2d(entry),
                nn.ReLU(),
            ]
            in_channels = entry
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if classifier_layers == 2:
        layers += [nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5)]
    layers.append(nn.Linear(512, num_classes))
    return nn.Sequential(*layers)
