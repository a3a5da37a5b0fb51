"""Model zoo: parameter counts that are known in the literature, shapes, and module kinds."""

import functools
import re

import pytest
import torch
from torch import nn

from fewops.models import MODELS, build, count_parameters

ALLOWED = (
    nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout,
)  # fmt: skip


@functools.cache
def _cached_build(name, shape, classes, options):
    """Big models are built once per test session (building ResNet-34 takes a while)."""
    torch.manual_seed(0)
    return build(name, shape, classes, **dict(options))


@pytest.fixture(scope="module", autouse=True)
def _free_cached_models():
    yield
    _cached_build.cache_clear()


def test_names():
    assert MODELS == ("mlp", "lenet5", "mnist-cnn", "resnet20", "resnet34", "vgg16")


@pytest.mark.parametrize(
    ("name", "shape", "classes", "options", "parameters"),
    [
        # Keras mnist_cnn example: 320 + 18,496 + 1,179,776 + 1,290.
        ("mnist-cnn", (1, 28, 28), 10, {}, 1_199_882),
        ("mnist-cnn", (1, 28, 28), 10, {"dropout": False}, 1_199_882),
        # LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850.
        ("lenet5", (1, 28, 28), 10, {}, 61_706),
        ("lenet5", (3, 32, 32), 10, {"pool": "avg"}, 62_006),
        # 784*512+512 + 512*256+256 + 256*10+10.
        ("mlp", (1, 28, 28), 10, {}, 535_818),
        ("mlp", (1, 8, 8), 10, {"hidden": (32,)}, 64 * 32 + 32 + 330),
        # He et al. CIFAR ResNet-20 with parameter-free (option A) shortcuts.
        ("resnet20", (3, 32, 32), 10, {}, 269_722),
        # torchvision's resnet34 has 21,797,672 parameters.
        ("resnet34", (3, 224, 224), 1000, {}, 21_797_672),
        ("resnet34", (3, 64, 64), 200, {}, 21_797_672 - 800 * 513),
        # The common CIFAR VGG-16 with BN and one Linear layer.
        ("vgg16", (3, 32, 32), 10, {}, 14_728_266),
        ("vgg16", (3, 32, 32), 10, {"classifier_layers": 2}, 14_728_266 + 512 * 512 + 512),
    ],
)
def test_parameter_counts(name, shape, classes, options, parameters):
    model = _cached_build(name, shape, classes, tuple(options.items()))
    assert count_parameters(model) == parameters


@pytest.mark.parametrize(
    ("name", "shape", "classes", "options"),
    [
        ("mlp", (1, 8, 8), 10, {"hidden": (16, 8)}),
        ("mlp", (1, 28, 28), 10, {"dropout": 0.2}),
        ("lenet5", (1, 28, 28), 10, {}),
        ("lenet5", (3, 32, 32), 100, {}),
        ("mnist-cnn", (1, 28, 28), 10, {}),
        ("mnist-cnn", (3, 32, 32), 10, {}),
        ("resnet20", (1, 28, 28), 10, {}),
        ("resnet20", (3, 32, 32), 100, {"shortcut": "B"}),
        ("resnet34", (3, 64, 64), 200, {}),
        ("resnet34", (3, 224, 224), 1000, {}),
        ("vgg16", (3, 32, 32), 10, {"classifier_layers": 2}),
        ("vgg16", (3, 64, 64), 10, {}),
    ],
)
def test_forward_shape_and_module_kinds(name, shape, classes, options):
    model = _cached_build(name, shape, classes, tuple(options.items())).eval()
    batch = 1 if shape[1] > 64 else 2
    with torch.no_grad():
        out = model(torch.rand(batch, *shape))
    assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()
    for module in model.modules():
        if not list(module.children()):  # leaves only; containers hold them
            assert isinstance(module, ALLOWED), f"{name} uses {type(module).__name__}"


@pytest.mark.parametrize("name", ["mlp", "lenet5", "mnist-cnn"])
def test_sequential_models_run_in_module_order(name):
    model = build(name, (1, 28, 28), 10).eval()
    assert type(model) is nn.Sequential
    x = torch.rand(3, 1, 28, 28)
    y = x
    for layer in model:
        y = layer(y)
    assert torch.equal(y, model(x))


def test_mnist_cnn_layers_are_the_keras_ones():
    model = build("mnist-cnn")
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout", "Flatten", "Linear", "ReLU",
        "Dropout", "Linear",
    ]  # fmt: skip
    assert model[7].in_features == 9216 and model[7].out_features == 128


def test_resnet20_structure():
    model = build("resnet20", (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19  # plus the final Linear: 20 weight layers
    assert [len(stage) for stage in model.stages] == [3, 3, 3]
    assert [stage[0].conv1.out_channels for stage in model.stages] == [16, 32, 64]


def test_builds_are_reproducible_from_the_seed():
    torch.manual_seed(5)
    a = build("lenet5")
    torch.manual_seed(5)
    b = build("lenet5")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown model 'alexnet'; known models: mlp, lenet5, mnist-cnn, resnet20, resnet34, vgg16."
        ),
    ):
        build("alexnet")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: build("lenet5", hidden=(3,)),
            TypeError,
            "Model 'lenet5' takes no option(s) hidden; it accepts: pool.",
        ),
        (
            lambda: build("resnet34", (3, 64, 64), 10, depth=3),
            TypeError,
            "Model 'resnet34' takes no option(s) depth; it accepts: none.",
        ),
        (
            lambda: build("lenet5", (1, 8, 8)),
            ValueError,
            "lenet5 needs inputs of at least 28x28 pixels (with padding 2), got 8x8; use 'mlp' for smaller images.",
        ),
        (
            lambda: build("vgg16", (3, 28, 28)),
            ValueError,
            "vgg16 halves the image five times and needs at least 32x32 pixels, got 28x28.",
        ),
        (
            lambda: build("mlp", (1, 28)),
            ValueError,
            "input_shape must have 3 entries (channels, height, width), got (1, 28).",
        ),
        (
            lambda: build("mlp", (1, 0, 28)),
            ValueError,
            "every entry of input_shape must be a positive integer, got 0.",
        ),
        (
            lambda: build("mlp", num_classes=0),
            ValueError,
            "num_classes must be a positive integer, got 0.",
        ),
        (
            lambda: build("mlp", hidden=64),
            TypeError,
            "hidden must be a sequence of layer widths, got 64.",
        ),
        (
            lambda: build("resnet20", shortcut="C"),
            ValueError,
            "shortcut must be 'A' or 'B', got 'C'.",
        ),
        (lambda: build(7), TypeError, "A model name must be a string, got int 7."),
    ],
)
def test_bad_arguments_are_explained(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
