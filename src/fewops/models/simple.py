"""Small feed-forward models as plain ``nn.Sequential``, so module order is execution order.

Only Linear, Conv2d, ReLU, pooling, Flatten and Dropout modules are used: compression code
finds and swaps the Linear and Conv2d layers by walking the modules.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fewops.models.shapes import conv_out, positive_int


def mlp(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (512, 256),
    dropout: float = 0.0,
) -> nn.Sequential:
    """Flatten, then Linear+ReLU per entry of ``hidden``, then a Linear classifier.

    ``hidden=()`` gives a linear classifier. Small inputs (8x8 digits) want small ``hidden``,
    e.g. ``(64, 32)``; the caller chooses.
    """
    if isinstance(hidden, int | str) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}.")
    widths = [positive_int(h, "every hidden width") for h in hidden]
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    c, h, w = input_shape
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = c * h * w
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def lenet5(
    input_shape: tuple[int, int, int], num_classes: int, *, pool: str = "max"
) -> nn.Sequential:
    """LeNet-5: conv5x5(6), pool, conv5x5(16), pool, fc 120, fc 84, fc ``num_classes``.

    Inputs smaller than 32x32 are zero-padded by 2 in the first convolution (the usual way to
    run it on 28x28 MNIST, giving the classic 16x5x5 = 400 features and 61,706 parameters for
    10 classes). ReLU replaces the original tanh; ``pool`` is "max" (default) or "avg" (the
    original subsampling, without its trainable scale).
    """
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}.")
    Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    c, h, w = input_shape
    padding = 2 if min(h, w) < 32 else 0
    h1, w1 = conv_out(h, 5, padding=padding) // 2, conv_out(w, 5, padding=padding) // 2
    h2, w2 = conv_out(h1, 5) // 2, conv_out(w1, 5) // 2
    if h2 < 1 or w2 < 1:
        raise ValueError(
            f"lenet5 needs inputs of at least 28x28 pixels (with padding 2), got {h}x{w}; "
            "use 'mlp' for smaller images."
        )
    return nn.Sequential(
        nn.Conv2d(c, 6, kernel_size=5, padding=padding),
        nn.ReLU(),
        Pool(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        Pool(2),
        nn.Flatten(),
        nn.Linear(16 * h2 * w2, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def mnist_cnn(
    input_shape: tuple[int, int, int], num_classes: int, *, dropout: bool = True
) -> nn.Sequential:
    """The Keras MNIST example CNN: conv3x3(32)+ReLU, conv3x3(64)+ReLU, maxpool 2,
    dropout 0.25, dense 128+ReLU, dropout 0.5, dense ``num_classes``.

    On 1x28x28 with 10 classes: 9,216 features and exactly 1,199,882 parameters.
    ``dropout=False`` leaves the two Dropout layers out.
    """
    c, h, w = input_shape
    h2, w2 = conv_out(conv_out(h, 3), 3) // 2, conv_out(conv_out(w, 3), 3) // 2
    if h2 < 1 or w2 < 1:
        raise ValueError(f"mnist-cnn needs inputs of at least 6x6 pixels, got {h}x{w}.")
    layers: list[nn.Module] = [
        nn.Conv2d(c, 32, kernel_size=3),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]
    if dropout:
        layers.append(nn.Dropout(0.25))
    layers += [nn.Flatten(), nn.Linear(64 * h2 * w2, 128), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(128, num_classes))
    return nn.Sequential(*layers)
