"""Small coded networks for the streamed-network tests, built once per test session."""

from functools import cache

import numpy as np
import torch
from torch import nn

from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.methods.lcc import LCCCode, LCCConfig
from fewops.models import build
from fewops.nn.api import compress_
from fewops.nn.fold import fold_batchnorm_
from fewops.nn.to_network import compile_network


def lenet_like() -> nn.Sequential:
    """LeNet's structure on 12x12 images: padded conv, pool, conv, pool, three dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )


def strided_gap() -> nn.Sequential:
    """Stride 2, padding in inner layers, a 5x5 kernel and a global average pool (SumPool)."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 5, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 10),
    )


MODELS = {"lenet-like": (lenet_like, (1, 12, 12)), "strided-gap": (strided_gap, (2, 11, 10))}


@cache
def coded_network(model: str, method: str = "csd", shape: tuple | None = None):
    """A calibrated :class:`fewops.network.Network` of ``model`` coded with ``method``."""
    torch.manual_seed(0)
    if model in MODELS:
        make, shape = MODELS[model]
        net = make().eval()
    else:
        net = build(model, shape, 10).eval()
        fold_batchnorm_(net)  # ResNets: the network representation has no BatchNorm
    config = (
        CSDConfig(CSDCode(bits=3 if shape[-1] > 12 or model == "mnist-cnn" else 5))
        if method == "csd"
        else LCCConfig(code=LCCCode(target_db=30.0), share=False)
    )
    compress_(net, config, input_shape=shape)
    return compile_network(net, np.random.default_rng(0).random((16, *shape)))


def images(net, count: int, seed: int = 1) -> np.ndarray:
    """``count`` random images in [0, 1], with one all-black and one all-white among them."""
    x = np.random.default_rng(seed).random((count, *net.input.shape))
    x[0, ..., 0, :] = 1.0  # a saturated row: the input range's top
    if count > 2:
        x[2] = 0.0
    return x


@cache
def residual_network(shortcut: str = "A", method: str = "csd", shape: tuple = (2, 7, 6)):
    """A small ResNet of real basic blocks (BN folded): a 4-channel stem, two identity blocks,
    one block that halves the image and doubles the channels (shortcut "A": slice and zero
    channels; "B": a 1x1 stride-2 convolution), global average pool, Linear."""
    from fewops.models.resnet import ResNet

    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(shape[0], 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    stem.append(nn.ReLU())
    net = ResNet(stem, 4, (2, 1), (4, 8), 10, shortcut).eval()
    fold_batchnorm_(net)
    config = (
        CSDConfig(CSDCode(bits=4))
        if method == "csd"
        else LCCConfig(code=LCCCode(target_db=30.0), share=False)
    )
    compress_(net, config, input_shape=shape)
    return compile_network(net, np.random.default_rng(0).random((16, *shape)))
