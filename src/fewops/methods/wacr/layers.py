"""The polynomial families in PyTorch: each layer's layout, projections onto the family, and the
reparameterised layers whose parameters are the coefficients.

- :func:`project_weights_` replaces each coded layer's weight by its exact least-squares
  projection onto its family (``mode="project"`` repeats this after every optimizer step).
- :class:`PolyLinear` / :class:`PolyConv2d` (``mode="reparam"``, 1-D families) hold the
  coefficients in an orthonormal polynomial basis per interval (:class:`Basis`), so that long
  intervals train as well as short ones. Tensor-product families and polynomial biases use
  :class:`fewops.methods.wacr.tensor.TensorPolyLayer` instead.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.methods.wacr import tensor as npt
from fewops.methods.wacr.config import PolyCode, PolyConfig
from fewops.nn.api import target_layers


def layer_layout(module: nn.Module, code: PolyCode):
    """The layout of a Linear/Conv2d weight for the layer's effective code: a
    :class:`poly.PolyLayout`, or a :class:`pt.TensorLayout` for tensor families and for 1-D
    families with a polynomial bias."""
    shape = tuple(module.weight.shape)
    if code.in_factors is not None:
        return pt.make_tensor_layout(shape, code.in_factors, code.out_factor, code.in_shape)
    layout = poly.make_layout(shape, code.axis, code.interval, code.degree)
    if code.bias_degree is None:
        return layout
    return pt.make_tensor_layout(
        shape, *tensor_equivalent(shape, code.axis, code.interval, code.degree)
    )


def tensor_equivalent(shape, axis: str, interval, degree: int) -> tuple:
    """(in_factors, out_factor, in_shape) of the tensor family equal to a 1-D family."""
    spec = (interval, degree)
    if axis == "filters":
        in_shape = (int(np.prod(shape[1:])),)
        return (None,), spec, in_shape
    if axis == "fan_in":
        return (spec,), None, (int(np.prod(shape[1:])),)
    factors = [None, None, None]
    factors[{"channels": 0, "kernel_col": 1, "kernel_row": 2}[axis]] = spec
    return tuple(factors), None, tuple(shape[1:])


class Basis(nn.Module):
    """Per interval class: column indices and an orthonormal basis Q (length, degree + 1) of the
    polynomials on it. The view of W is ``W_view[:, index] = coef @ Q.T``."""

    def __init__(self, layout: poly.PolyLayout) -> None:
        super().__init__()
        self.layout = layout
        for n, c in enumerate(layout.classes):
            q, _ = np.linalg.qr(poly.vandermonde(c.length, c.degree))
            self.register_buffer(f"index{n}", torch.as_tensor(c.index, dtype=torch.int64))
            self.register_buffer(f"q{n}", torch.as_tensor(q, dtype=torch.float32))

    def parts(self):
        for n in range(len(self.layout.classes)):
            yield getattr(self, f"index{n}"), getattr(self, f"q{n}")

    def to_view(self, w: torch.Tensor) -> torch.Tensor:
        view = w.reshape(w.shape[0], -1)
        return view.t() if self.layout.transposed else view

    def from_view(self, view: torch.Tensor) -> torch.Tensor:
        if self.layout.transposed:
            view = view.t()
        return view.reshape(self.layout.shape)

    @torch.no_grad()
    def project_(self, weight: torch.Tensor) -> None:
        """Replace ``weight`` in place by its least-squares projection onto the family."""
        view = self.to_view(weight)
        out = view.clone()
        for index, q in self.parts():
            seg = view[:, index].to(q.dtype)
            out[:, index] = ((seg @ q) @ q.t()).to(out.dtype)
        weight.copy_(self.from_view(out))

    def coefficients(self, weight: torch.Tensor) -> list[torch.Tensor]:
        view = self.to_view(weight.detach().float())
        return [view[:, index] @ q for index, q in self.parts()]

    def weight(self, coefs) -> torch.Tensor:
        rows, cols = self.layout.view_shape
        view = coefs[0].new_zeros(rows, cols)
        for (index, q), c in zip(self.parts(), coefs, strict=True):
            view[:, index.reshape(-1)] = (c @ q.t()).reshape(rows, -1)
        return self.from_view(view)


class PolyLayer(nn.Module):
    """Shared part of the reparameterised layers: the coefficients are the weight parameters."""

    def __init__(self, module: nn.Module, layout: poly.PolyLayout) -> None:
        super().__init__()
        self.basis = Basis(layout)
        self.coefs = nn.ParameterList(
            nn.Parameter(c.clone()) for c in self.basis.coefficients(module.weight)
        )
        self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return self.basis.weight(list(self.coefs))

    @property
    def params(self) -> int:
        return self.basis.layout.params


class PolyLinear(PolyLayer):
    """A Linear layer whose weight is a polynomial per interval; coefficients are learned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class PolyConv2d(PolyLayer):
    """A Conv2d layer whose weight is a polynomial per interval; coefficients are learned."""

    def __init__(self, module: nn.Conv2d, layout: poly.PolyLayout) -> None:
        super().__init__(module, layout)
        if module.groups != 1 or module.padding_mode != "zeros":
            raise ValueError(
                f"Only ungrouped, zero-padded convolutions can be reparameterised; got "
                f"groups={module.groups}, padding_mode={module.padding_mode!r}."
            )
        self.stride, self.padding, self.dilation = module.stride, module.padding, module.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


def project_weights_(
    model: nn.Module, config: PolyConfig
) -> list[tuple[str, nn.Module, Basis | TensorProjector]]:
    """Project every targeted layer's weight onto its family now; returns the projectors."""
    projectors = []
    for name, module, cfg in target_layers(model, config):
        layout = layer_layout(module, cfg.code)
        if isinstance(layout, pt.TensorLayout):
            basis = TensorProjector(module, layout, cfg.code.bias_degree)
        else:
            basis = Basis(layout).to(module.weight.device)
        basis.project_(module.weight)
        projectors.append((name, module, basis))
    return projectors


class TensorProjector:
    """Projection of one layer onto a tensor family (weight, and bias when it is polynomial),
    with the same ``project_(weight)`` call as :class:`Basis`."""

    def __init__(self, module: nn.Module, layout, bias_degree) -> None:
        self.module, self.layout, self.bias_degree = module, layout, bias_degree
        self.bases = npt.orthonormal_bases(layout)

    def project_(self, weight: torch.Tensor) -> None:
        if weight is not self.module.weight:
            raise ValueError("A tensor projector projects only the weight of its own layer.")
        npt.project_(self.module, self.layout, self.bias_degree, self.bases)
