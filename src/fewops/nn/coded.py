"""nn.Module wrappers that run a coded matrix in the float model.

The modules hold the :class:`~fewops.codes.base.CodedMatrix` (graph and scale) and a float copy of
its decoded matrix W_hat for the PyTorch forward pass; the integer simulator and the Verilog
emitter read the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewops.codes.base import CodedMatrix


class CodedLinear(nn.Module):
    """y = W_hat x + b with W_hat decoded from a coded matrix of shape (out, in)."""

    def __init__(self, coded: CodedMatrix, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.coded = coded
        w_hat = torch.as_tensor(coded.matrix, dtype=torch.float32)
        self.register_buffer("weight", w_hat)
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())

    @property
    def in_features(self) -> int:
        return self.coded.shape[1]

    @property
    def out_features(self) -> int:
        return self.coded.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(
            x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype)
        )

    def extra_repr(self) -> str:
        return f"{self.coded.method}, in={self.in_features}, out={self.out_features}"


class CodedConv2d(nn.Module):
    """A convolution whose im2col matrix (C_out, C_in*kh*kw) is coded."""

    def __init__(
        self,
        coded: CodedMatrix,
        bias: torch.Tensor | None,
        in_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        out_channels, fan_in = coded.shape
        kh, kw = kernel_size
        if fan_in != in_channels * kh * kw:
            raise ValueError(
                f"A coded conv matrix of shape {coded.shape} does not fit {in_channels} input "
                f"channels and a {kh}x{kw} kernel (needs {in_channels * kh * kw} columns)."
            )
        self.coded = coded
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kh, kw)
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        w_hat = torch.as_tensor(coded.matrix, dtype=torch.float32)
        self.register_buffer("weight", w_hat.reshape(out_channels, in_channels, kh, kw))
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.weight.to(x.dtype), bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.coded.method}, {self.in_channels}->{self.out_channels}, "
            f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        )


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The (out, in) matrix of a Linear or Conv2d (im2col view), as float64."""
    if isinstance(module, nn.Linear | CodedLinear):
        return module.weight.detach().double()
    if isinstance(module, nn.Conv2d | CodedConv2d):
        w = module.weight.detach().double()
        return w.reshape(w.shape[0], -1)
    raise TypeError(
        f"Only Linear and Conv2d layers have a coded matrix; got {type(module).__name__}."
    )


def coded_like(module: nn.Module, coded: CodedMatrix) -> nn.Module:
    """A coded replacement for ``module`` (Linear or Conv2d) carrying over its bias and geometry."""
    if isinstance(module, nn.Linear):
        return CodedLinear(coded, module.bias)
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError(
                f"Grouped convolutions (groups={module.groups}) are not supported yet."
            )
        if module.padding_mode != "zeros":
            raise ValueError(f"Only zero padding is supported; got {module.padding_mode!r}.")
        return CodedConv2d(
            coded,
            module.bias,
            module.in_channels,
            tuple(module.kernel_size),
            tuple(module.stride),
            tuple(module.padding),
            tuple(module.dilation),
        )
    raise TypeError(f"Cannot code a {type(module).__name__}; only Linear and Conv2d.")
