"""Shape arithmetic and argument checks shared by the model builders."""

from __future__ import annotations

import numbers


def conv_out(size: int, kernel: int, *, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def positive_int(value: object, what: str) -> int:
    """``value`` as an int, or a ValueError/TypeError saying ``what`` must be positive."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a positive integer, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}.")
    return int(value)


def check_input_shape(input_shape: object) -> tuple[int, int, int]:
    """``input_shape`` as a (C, H, W) tuple of positive ints."""
    if isinstance(input_shape, str) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"input_shape must be a (C, H, W) tuple, got {input_shape!r}.")
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must have 3 entries (channels, height, width), got {input_shape!r}."
        )
    c, h, w = (positive_int(v, "every entry of input_shape") for v in input_shape)
    return c, h, w
