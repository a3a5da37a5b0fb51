"""ResNets built from basic blocks, without torchvision.

* ``resnet20``: the CIFAR ResNet of He et al. (2016, section 4.2): a 3x3 stem with 16 channels,
  three stages of three basic blocks with 16, 32 and 64 channels (stride 2 at the start of the
  second and third), global average pooling and one Linear layer. Shortcuts that change shape
  are "option A" by default (subsample and zero-pad channels, no parameters: 272,474
  parameters for 10 classes, as in the paper); ``shortcut="B"`` uses 1x1 convolutions instead.
  Any input size of at least 4x4 works (1x28x28 MNIST included).
* ``resnet34``: the ImageNet ResNet-34: 7x7 stride-2 stem with 64 channels, 3x3 stride-2 max
  pooling, stages of [3, 4, 6, 3] basic blocks with 64, 128, 256, 512 channels, 1x1-conv
  shortcuts, global average pooling, Linear. 21,797,672 parameters for 1000 classes; runs on
  3x224x224 and on 3x64x64 Tiny ImageNet images.

Every activation is its own ``nn.ReLU`` module and every weight layer an ``nn.Conv2d`` or
``nn.Linear``, so compression code can find and replace them by walking the modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewops.models.shapes import positive_int


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection: relu(bn2(conv2(relu(bn1(conv1 x)))) + s(x)).

    ``shortcut`` is "A" (parameter-free: subsample, zero-pad the new channels) or "B" (1x1 conv
    and BN) and only matters when stride or channel count change.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.stride = stride
        self.pad_channels = 0
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.pad_channels = out_channels - in_channels
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_channels:
            half = self.pad_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self._shortcut(x))


class ResNet(nn.Module):
    """stem -> stages of BasicBlocks -> global average pool -> flatten -> fc."""

    def __init__(
        self,
        stem: nn.Sequential,
        stem_channels: int,
        blocks_per_stage: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        shortcut: str,
    ):
        super().__init__()
        self.stem = stem
        stages = []
        in_channels = stem_channels
        for index, (count, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            blocks = []
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, shortcut))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


def _check_shortcut(shortcut: str) -> str:
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}.")
    return shortcut


def resnet_cifar(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 20,
    shortcut: str = "A",
) -> ResNet:
    """CIFAR ResNet with 6n+2 layers (20, 32, 44, 56, 110, ...)."""
    depth = positive_int(depth, "depth")
    if (depth - 2) % 6:
        raise ValueError(f"A CIFAR ResNet has depth 6n+2 (20, 32, 44, ...), got {depth}.")
    c, h, w = input_shape
    if min(h, w) < 4:
        raise ValueError(f"resnet{depth} needs inputs of at least 4x4 pixels, got {h}x{w}.")
    n = (depth - 2) // 6
    stem = nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    )
    return ResNet(stem, 16, (n, n, n), (16, 32, 64), num_classes, _check_shortcut(shortcut))


def resnet20(input_shape: tuple[int, int, int], num_classes: int, *, shortcut: str = "A") -> ResNet:
    return resnet_cifar(input_shape, num_classes, depth=20, shortcut=shortcut)


def resnet34(input_shape: tuple[int, int, int], num_classes: int) -> ResNet:
    c, h, w = input_shape
    if min(h, w) < 32:
        raise ValueError(f"resnet34 needs inputs of at least 32x32 pixels, got {h}x{w}.")
    stem = nn.Sequential(
        nn.Conv2d(c, 64, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )
    return ResNet(stem, 64, (3, 4, 6, 3), (64, 128, 256, 512), num_classes, "B")
