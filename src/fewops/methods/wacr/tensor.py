"""Training for the WACR tensor-product families (:mod:`fewops.codes.poly_tensor`).

A layer's weight is ``W = Q_out @ C @ Q_in.T``, Q the factors' bases made orthonormal per
interval (QR of each Vandermonde block; a Kronecker product of orthonormal bases is orthonormal),
so learning C is learning the coefficients in a well-conditioned basis of the same family.
Biases can be polynomials of the unit index too (``bias_degree``): then the stored bias is
``bias_degree + 1`` numbers instead of one per unit.

Dense layers are evaluated as ``((x @ Q_in) @ C.T) @ Q_out.T``: moments first, as the hardware
does, which is also far cheaper than forming the 9216 x 128 weight of the MNIST CNN.

Moment preconditioning: the layer multiplies the moments by C / s, s (M,) a fixed
``moment_scale`` (the RMS of each moment on a training batch, :func:`precondition_`). The family
and the weight are the same (C / s is just another coefficient matrix); only the optimiser sees
better-scaled coordinates. Why: the moments of non-negative activations differ in size by orders
of magnitude (a sum over 36 positions next to a t^2-weighted one), so Adam's steps on C are far
too large for some coefficients and too small for others; on the MNIST CNN's tensor families
this took the same 960-number network from 92.4% to 95.6% after 15 epochs (train accuracy
93.3% -> 97.7%).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewops.codes import poly_tensor as pt
from fewops.codes.poly import vandermonde


def _orthonormal(factor: pt.Factor) -> np.ndarray:
    """Per interval an orthonormal basis of the same polynomials (identity when free)."""
    if factor.interval is None:
        return np.eye(factor.size)
    out = np.zeros(factor.matrix.shape)
    col = 0
    for start in range(0, factor.size, factor.interval):
        length = min(factor.interval, factor.size - start)
        d = min(factor.degree, length - 1)
        # Scale the columns before QR so long intervals stay well-conditioned.
        v = vandermonde(length, d) / float(max(length - 1, 1)) ** np.arange(d + 1)
        q, _ = np.linalg.qr(v)
        out[start : start + length, col : col + d + 1] = q
        col += d + 1
    return out


def orthonormal_bases(layout: pt.TensorLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q_out (F, K), Q_in (fan_in, M)) spanning the same family as the integer bases."""
    q_in = np.ones((1, 1))
    for f in layout.ins:
        q_in = np.kron(q_in, _orthonormal(f))
    return (
        torch.as_tensor(_orthonormal(layout.out), dtype=torch.float32),
        torch.as_tensor(q_in, dtype=torch.float32),
    )


def bias_basis(units: int, degree: int) -> torch.Tensor:
    """(units, degree + 1) orthonormal basis of polynomials of the unit index."""
    factor = pt.make_factor(units, (None, degree), f"the bias of {units} units")
    return torch.as_tensor(_orthonormal(factor), dtype=torch.float32)


class TensorPolyLayer(nn.Module):
    """A Linear or Conv2d whose weight (and optionally bias) lies in a tensor-product family;
    the parameters are the coefficients C (K, M) and the bias coefficients."""

    def __init__(self, module: nn.Module, layout: pt.TensorLayout, bias_degree=None) -> None:
        super().__init__()
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            raise ValueError(
                f"Only ungrouped, zero-padded convolutions can be reparameterised; got "
                f"groups={module.groups}, padding_mode={module.padding_mode!r}."
            )
        self.layout = layout
        self.conv = isinstance(module, nn.Conv2d)
        if self.conv:
            self.stride, self.padding = module.stride, module.padding
            self.dilation = module.dilation
        q_out, q_in = orthonormal_bases(layout)
        self.register_buffer("q_out", q_out)
        self.register_buffer("q_in", q_in)
        self.separable = False
        if self.conv and _channel_separable(layout, module.weight.shape):
            # Q_in = kron(Q_channels, Q_taps): channel moments first (a 1x1 conv), then the
            # tap basis kernels per moment map (a grouped conv): the same z, far less work.
            self.separable = True
            c, kh, kw = layout.in_shape
            q_c = torch.as_tensor(_orthonormal(layout.ins[0]), dtype=torch.float32)
            q_k = torch.as_tensor(
                np.kron(_orthonormal(layout.ins[1]), _orthonormal(layout.ins[2])),
                dtype=torch.float32,
            )
            m_c, m_k = q_c.shape[1], q_k.shape[1]
            self.register_buffer("k_channels", q_c.t().reshape(m_c, c, 1, 1).contiguous())
            taps = q_k.t().reshape(m_k, 1, kh, kw).repeat(m_c, 1, 1, 1).contiguous()
            self.register_buffer("k_taps", taps)
        w = module.weight.detach().float().reshape(module.weight.shape[0], -1)
        self.coefs = nn.Parameter(q_out.t() @ w @ q_in)  # the projection of the current W
        self.register_buffer("moment_scale", torch.ones(q_in.shape[1]))
        self.quant = None  # the encoder's rounding, during quantization-aware training
        self.bias_degree = bias_degree
        self.register_parameter("bias_coefs", None)
        self.register_parameter("bias", None)
        if module.bias is not None:
            b = module.bias.detach().float().clone()
            if bias_degree is None:
                self.bias = nn.Parameter(b)
            else:
                self.register_buffer("q_bias", bias_basis(b.numel(), bias_degree))
                self.bias_coefs = nn.Parameter(self.q_bias.t() @ b)

    @property
    def params(self) -> int:
        """Stored numbers: weight coefficients plus bias (or bias coefficients)."""
        bias = 0
        if self.bias is not None:
            bias = self.bias.numel()
        elif self.bias_coefs is not None:
            bias = self.bias_coefs.numel()
        return self.layout.params + bias

    def effective_coefs(self) -> torch.Tensor:
        """The coefficients that multiply the (unscaled) moments: C / moment_scale; while
        quantization-aware training is on, those of the weight as the encoder will store it."""
        coefs = self.coefs / self.moment_scale
        if self.quant is None:
            return coefs
        with torch.no_grad():
            w = self.q_out @ coefs @ self.q_in.t()
            stored = self.quant(w.double().cpu().numpy())
            # The stored weight lies in the family, so these coefficients give it exactly.
            stored = torch.as_tensor(stored, dtype=coefs.dtype, device=coefs.device)
            on_grid = self.q_out.t() @ stored @ self.q_in
        return coefs + (on_grid - coefs).detach()  # straight-through: gradients pass as is

    def quantize_(self, quantizer) -> None:
        """Quantization-aware training on or off (None). ``quantizer`` maps a weight matrix
        (F, fan_in) to the matrix the encoder stores for it (:func:`tensor_grid`, or the 1-D
        encoder's for a 1-D family trained in tensor form); the forward pass then computes
        with that weight and passes gradients straight through."""
        self.quant = quantizer

    @torch.no_grad()
    def set_moment_scale_(self, scale: torch.Tensor) -> None:
        """Precondition with ``scale`` (M,) positive; the layer's weight does not change."""
        scale = torch.as_tensor(scale, dtype=self.coefs.dtype, device=self.coefs.device)
        if scale.shape != self.moment_scale.shape:
            raise ValueError(
                f"A moment scale must be {tuple(self.moment_scale.shape)} positive numbers; got "
                f"shape {tuple(scale.shape)}."
            )
        if not bool((scale > 0).all()):
            bad = float(scale[~(scale > 0)].flatten()[0])
            raise ValueError(
                f"A moment scale must be {tuple(self.moment_scale.shape)} positive numbers; got "
                f"{bad!r} among them."
            )
        self.coefs.mul_(scale / self.moment_scale)
        self.moment_scale.copy_(scale)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """The moments the coefficients read: (N, M) for a dense layer, (N, M, H, W) moment maps
        for a conv (the M basis kernels applied to x)."""
        if not self.conv:
            return x @ self.q_in
        args = (self.stride, self.padding, self.dilation)
        if self.separable:
            xc = F.conv2d(x, self.k_channels)
            return F.conv2d(xc, self.k_taps, None, *args, groups=self.k_channels.shape[0])
        basis = self.q_in.t().reshape(self.q_in.shape[1], *self.layout.shape[1:])
        return F.conv2d(x, basis, None, *args)

    def weight_matrix(self) -> torch.Tensor:
        return self.q_out @ self.effective_coefs() @ self.q_in.t()

    def bias_vector(self):
        if self.bias_coefs is not None:
            return self.q_bias @ self.bias_coefs
        return self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias_vector()
        coefs = self.effective_coefs()
        if self.conv:
            if self.q_in.shape[1] < self.layout.shape[0]:
                # Fewer moment maps than filters: convolve with the M basis kernels, then mix
                # (the reuse of the hardware; same result, far less work).
                mix = (self.q_out @ coefs)[:, :, None, None]  # a 1x1 conv mixes the maps
                return F.conv2d(self.moments(x), mix, bias)
            w = self.weight_matrix().reshape(self.layout.shape)
            return F.conv2d(x, w, bias, self.stride, self.padding, self.dilation)
        y = (self.moments(x) @ coefs.t()) @ self.q_out.t()
        return y if bias is None else y + bias

    @torch.no_grad()
    def write_back(self, module: nn.Module) -> None:
        module.weight.copy_(self.weight_matrix().reshape(module.weight.shape))
        if module.bias is not None:
            module.bias.copy_(self.bias_vector())


def tensor_grid(layout: pt.TensorLayout, bits: int):
    """The weight matrix :func:`fewops.codes.poly_tensor.encode` stores for a weight matrix:
    coefficients fitted, rounded to ``bits`` with their power-of-two steps, evaluated."""

    def stored(w: np.ndarray) -> np.ndarray:
        q, exps = pt.quantize(w, layout, bits)
        return pt.evaluate(q, layout, exps)

    return stored


def _channel_separable(layout: pt.TensorLayout, shape) -> bool:
    """A conv family whose fan-in factors are (channels, kernel rows, kernel columns) with
    fewer channel moments than channels: its moment maps can be formed channels first."""
    if len(layout.ins) != 3 or tuple(layout.in_shape) != tuple(shape[1:]):
        return False
    return _orthonormal(layout.ins[0]).shape[1] < layout.in_shape[0]


@torch.no_grad()
def project_(module: nn.Module, layout: pt.TensorLayout, bias_degree=None, bases=None):
    """Replace a layer's weight (and bias, with ``bias_degree``) by its projection in place."""
    q_out, q_in = bases if bases is not None else orthonormal_bases(layout)
    q_out, q_in = q_out.to(module.weight.device), q_in.to(module.weight.device)
    w = module.weight.reshape(module.weight.shape[0], -1).float()
    module.weight.copy_((q_out @ (q_out.t() @ w @ q_in) @ q_in.t()).reshape(module.weight.shape))
    if bias_degree is not None and module.bias is not None:
        qb = bias_basis(module.bias.numel(), bias_degree).to(module.bias.device)
        module.bias.copy_(qb @ (qb.t() @ module.bias.float()))


def project_bias(bias: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares projection of a bias vector onto polynomials of degree ``degree``."""
    factor = pt.make_factor(bias.shape[0], (None, degree), f"the bias of {bias.shape[0]} units")
    return factor.matrix @ (factor.pinv @ bias)


def _layer_input(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    hook = layer.register_forward_pre_hook(lambda _m, args, s=seen: s.setdefault("x", args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen["x"]


@torch.no_grad()
def moment_rms(layer: TensorPolyLayer, x: torch.Tensor) -> torch.Tensor:
    """RMS of each of the layer's moments on its input ``x`` (over samples and positions)."""
    m = layer.moments(x)
    if m.dim() == 4:
        m = m.transpose(0, 1).reshape(m.shape[1], -1).t()
    rms = m.pow(2).mean(0).sqrt()
    floor = float(rms.max()) * 1e-6 if float(rms.max()) > 0 else 1.0
    return rms.clamp_min(floor)  # a moment that is always 0 keeps a finite scale


@torch.no_grad()
def precondition_(model: nn.Module, layers, x: torch.Tensor) -> None:
    """Set every layer's moment scale to its moments' RMS on the batch ``x`` (model order; the
    weights do not change, so one pass per layer sees the same inputs the model will)."""
    for layer in layers:
        layer.set_moment_scale_(moment_rms(layer, _layer_input(model, layer, x)))


@torch.no_grad()
def scratch_init_(
    model: nn.Module, layers, x: torch.Tensor, seed: int = 0, precondition: bool = False
) -> None:
    """Draw every reparameterised layer's coefficients at random and scale them, in model
    order, so that its outputs on the batch ``x`` have unit spread; biases start at zero.

    Why: the coded families are tiny and their moment features have large means (sums of
    non-negative activations), so a plain random draw gives pre-activations tens of times too
    large and training stalls at chance; projecting a trained float model keeps almost nothing
    of it (SQNR of a few dB) and starts no better.
    """
    gen = torch.Generator().manual_seed(seed)
    for layer in layers:
        if precondition:  # on the input the earlier, freshly drawn layers now give it
            layer.set_moment_scale_(moment_rms(layer, _layer_input(model, layer, x)))
        layer.coefs.copy_(torch.randn(layer.coefs.shape, generator=gen))
        if layer.bias is not None:
            layer.bias.zero_()
        if layer.bias_coefs is not None:
            layer.bias_coefs.zero_()
        seen = {}
        hook = layer.register_forward_hook(lambda _m, _i, out, s=seen: s.setdefault("y", out))
        try:
            model(x)
        finally:
            hook.remove()
        spread = float(seen["y"].std())
        if spread > 0:
            layer.coefs.div_(spread)
