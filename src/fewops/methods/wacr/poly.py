"""WACR in PyTorch: polynomial weights, retraining both ways, and the ``compress_`` handler.

Two ways to pull a trained float model onto the polynomial family (the code itself is
:mod:`fewops.codes.poly`):

- ``mode="project"``: keep the ordinary layers and after every optimizer step replace each coded
  layer's weight by its exact least-squares projection onto the family (projected gradient).
- ``mode="reparam"``: swap the layers for :class:`PolyLinear` / :class:`PolyConv2d`, whose only
  weight parameters are the coefficients (in an orthonormal polynomial basis per interval, so that
  long intervals train as well as short ones); after training the weights are written back.

Either way the final weights are coded by :func:`fewops.codes.poly.encode` (exact least squares,
then coefficient quantization with the fit in fixed point) and the layers become
``CodedLinear`` / ``CodedConv2d``.

Layers whose config sets ``in_factors`` (tensor-product families) or ``bias_degree``
(polynomial biases) train through :mod:`fewops.methods.wacr.tensor` and code through
:mod:`fewops.codes.poly_tensor` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.methods.wacr import tensor as npt
from fewops.nn.api import LayerSelection, register, set_submodule, target_layers
from fewops.nn.coded import coded_like
from fewops.train.averaging import check_decay
from fewops.train.fit import fit
from fewops.train.recipe import LR_SCHEDULES

MODES = ("project", "reparam")
INITS = ("float", "scratch")


@dataclass(frozen=True)
class PolyConfig:
    """WACR settings: weights as degree-``degree`` polynomials on intervals of ``interval``
    positions along ``axis`` (see :data:`fewops.codes.poly.AXES`; None = the whole axis), with
    ``coef_bits``-bit coefficients. With data and ``epochs`` > 0 the model is retrained first
    (``mode`` "project" or "reparam", Adam at ``lr``). Per-layer axis/interval/degree/coef_bits
    go in ``layers.overrides``.

    Tensor-product families (:mod:`fewops.codes.poly_tensor`): ``in_factors`` (one
    (interval, degree) or None per dimension of ``in_shape``, the fan-in's shape, default a
    conv's (C, KH, KW) or a dense layer's (I,)) and ``out_factor`` replace axis/interval/degree.
    ``bias_degree`` (1 or 2) makes the bias a polynomial of the unit index (a 1-D family then
    trains and codes as its tensor-product equivalent). ``init="scratch"`` (reparam only)
    retrains from random coefficients scaled on a training batch instead of from the
    projection of the float weights. ``precondition`` (reparam, tensor layers; default on)
    learns the coefficients against moments scaled to unit RMS on a training batch: the same
    family and weights, far better conditioned for Adam (see :mod:`fewops.methods.wacr.tensor`).
    ``qat_epochs`` (reparam, tensor layers) more epochs after retraining with the coefficients
    rounded to their ``coef_bits`` grid in the forward pass (straight-through gradients) at
    ``qat_lr`` (None: lr / 10), so the network learns around its quantization error; the
    weights end on the grid the encoder stores exactly. ``restarts`` retrains that many times
    from seeds ``seed, seed + 1, ...`` and keeps the run with the lowest final training loss
    (training data only: the test set picks nothing). ``augment_shift`` (image data) moves
    every training image by up to that many pixels (zero fill) in retraining and QAT: the tiny
    coded networks generalise worse than their float models (benchmarks/results/wacr.md,
    seventh pass), and small shifts narrow that gap. ``lr_schedule`` ("cosine" or None for a
    constant rate) and ``dropout`` (None keeps the model's own rates; else every Dropout uses
    this rate while retraining, and gets its own back afterwards) complete the retraining
    recipe, so the one call reproduces the benchmark's. ``ema`` (a decay in (0, 1), e.g. 0.998;
    None: off) keeps an exponential moving average of the trained coefficients in retraining
    and QAT and ends with it (see :mod:`fewops.train.averaging`)."""

    axis: str = "fan_in"
    interval: int | None = None
    degree: int = 1
    coef_bits: int = 8
    epochs: int = 0
    mode: str = "project"
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    progress: bool = False
    layers: LayerSelection = field(default_factory=LayerSelection)
    in_factors: tuple | None = None
    out_factor: tuple | None = None
    in_shape: tuple | None = None
    bias_degree: int | None = None
    init: str = "float"
    precondition: bool = True
    qat_epochs: int = 0
    qat_lr: float | None = None
    restarts: int = 1
    augment_shift: int = 0
    lr_schedule: str | None = None
    dropout: float | None = None
    ema: float | None = None

    def __post_init__(self) -> None:
        if self.bias_degree is not None:
            poly.check_degree(self.bias_degree)
        if self.init not in INITS:
            raise ValueError(f"Unknown init {self.init!r}; use 'float' or 'scratch'.")
        if self.init == "scratch" and self.mode != "reparam":
            raise ValueError("init='scratch' needs mode='reparam' (it draws the coefficients).")
        poly.check_axis(self.axis)
        poly.check_degree(self.degree)
        poly.check_coef_bits(self.coef_bits)
        if self.interval is not None and (
            isinstance(self.interval, bool)
            or not isinstance(self.interval, int)
            or self.interval < 2
        ):
            raise ValueError(
                f"Interval length must be an integer of at least 2, or None for the whole axis; "
                f"got {self.interval!r}."
            )
        if self.mode not in MODES:
            raise ValueError(f"Unknown training mode {self.mode!r}; use 'project' or 'reparam'.")
        _check_count("epochs", self.epochs, 0)
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}.")
        _check_count("qat_epochs", self.qat_epochs, 0)
        if self.qat_epochs and self.mode != "reparam":
            raise ValueError("qat_epochs needs mode='reparam' (it trains the coefficients).")
        _check_count("restarts", self.restarts, 1)
        _check_count("augment_shift", self.augment_shift, 0)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"Unknown lr_schedule {self.lr_schedule!r}; use None (constant) or 'cosine'."
            )
        if self.dropout is not None and not (
            isinstance(self.dropout, int | float)
            and not isinstance(self.dropout, bool)
            and 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be None or a rate in [0, 1); got {self.dropout!r}.")
        if self.qat_lr is not None and not (
            isinstance(self.qat_lr, int | float) and self.qat_lr > 0
        ):
            raise ValueError(f"qat_lr must be a positive number or None; got {self.qat_lr!r}.")
        check_decay(self.ema, "ema")


def _check_count(name: str, value, low: int) -> None:
    """``value`` must be an integer (not a bool) of at least ``low``; else a named error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a non-negative integer" if low == 0 else f"an integer of at least {low}"
        raise ValueError(f"{name} must be {what}; got {value!r}.")


def layer_layout(module: nn.Module, cfg: PolyConfig):
    """The layout of a Linear/Conv2d weight for the layer's effective config: a
    :class:`poly.PolyLayout`, or a :class:`pt.TensorLayout` for tensor families and for 1-D
    families with a polynomial bias."""
    shape = tuple(module.weight.shape)
    if cfg.in_factors is not None:
        return pt.make_tensor_layout(shape, cfg.in_factors, cfg.out_factor, cfg.in_shape)
    layout = poly.make_layout(shape, cfg.axis, cfg.interval, cfg.degree)
    if cfg.bias_degree is None:
        return layout
    return pt.make_tensor_layout(
        shape, *tensor_equivalent(shape, cfg.axis, cfg.interval, cfg.degree)
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


class _Basis(nn.Module):
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


class _PolyLayer(nn.Module):
    """Shared part of the reparameterised layers: the coefficients are the weight parameters."""

    def __init__(self, module: nn.Module, layout: poly.PolyLayout) -> None:
        super().__init__()
        self.basis = _Basis(layout)
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


class PolyLinear(_PolyLayer):
    """A Linear layer whose weight is a polynomial per interval; coefficients are learned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class PolyConv2d(_PolyLayer):
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


def project_weights_(model: nn.Module, config: PolyConfig) -> list[tuple[str, nn.Module, _Basis]]:
    """Project every targeted layer's weight onto its family now; returns the projectors."""
    projectors = []
    for name, module, cfg in target_layers(model, config):
        layout = layer_layout(module, cfg)
        if isinstance(layout, pt.TensorLayout):
            basis = _TensorProjector(module, layout, cfg.bias_degree)
        else:
            basis = _Basis(layout).to(module.weight.device)
        basis.project_(module.weight)
        projectors.append((name, module, basis))
    return projectors


class _TensorProjector:
    """Projection of one layer onto a tensor family (weight, and bias when it is polynomial),
    with the same ``project_(weight)`` call as _Basis."""

    def __init__(self, module: nn.Module, layout, bias_degree) -> None:
        self.module, self.layout, self.bias_degree = module, layout, bias_degree
        self.bases = npt.orthonormal_bases(layout)

    def project_(self, weight: torch.Tensor) -> None:
        if weight is not self.module.weight:
            raise ValueError("A tensor projector projects only the weight of its own layer.")
        npt.project_(self.module, self.layout, self.bias_degree, self.bases)


def retrain_(model: nn.Module, config: PolyConfig, data, **fit_kwargs) -> dict:
    """Retrain a (trained float) model onto the polynomial family in place; returns the history.

    ``fit_kwargs`` go to :func:`fewops.train.fit.fit` and win over the config's settings.
    """
    if config.restarts > 1:
        return _best_of_restarts(model, config, data, fit_kwargs)

    settings = {
        "epochs": config.epochs,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "progress": config.progress,
        "lr_schedule": config.lr_schedule,
        "ema_decay": config.ema,
        **fit_kwargs,
    }
    with _dropout_rate(model, config.dropout):
        return _retrain(model, config, data, settings)


@contextlib.contextmanager
def _dropout_rate(model: nn.Module, rate: float | None):
    """Every Dropout of ``model`` at ``rate`` inside the block (None: unchanged), its own rate
    back afterwards. The coded networks are tiny and underfit; dropout only slows them."""
    saved = {}
    if rate is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                saved[module] = module.p
                module.p = float(rate)
    try:
        yield
    finally:
        for module, p in saved.items():
            module.p = p


def _retrain(model: nn.Module, config: PolyConfig, data, settings: dict) -> dict:
    if config.augment_shift and "augment" not in settings:
        settings["augment"] = _shift_augment(data, config.augment_shift)
    if config.mode == "project":
        projectors = project_weights_(model, config)

        def after_step(_model: nn.Module) -> None:
            for _, module, basis in projectors:
                basis.project_(module.weight)

        return fit(model, data, after_step=after_step, **settings)
    swapped = []
    for name, module, cfg in target_layers(model, config):
        layout = layer_layout(module, cfg)
        if config.init == "scratch" and not isinstance(layout, pt.TensorLayout):
            # Same family, tensor form: scratch_init_ draws and scales the coefficients C.
            shape = tuple(module.weight.shape)
            layout = pt.make_tensor_layout(
                shape, *tensor_equivalent(shape, cfg.axis, cfg.interval, cfg.degree)
            )
        if isinstance(layout, pt.TensorLayout):
            layer = npt.TensorPolyLayer(module, layout, cfg.bias_degree)
        else:
            cls = PolyConv2d if isinstance(module, nn.Conv2d) else PolyLinear
            layer = cls(module, layout)
        layer = layer.to(module.weight.device)
        set_submodule(model, name, layer)
        swapped.append((name, module, layer, cfg))
    try:
        layers = [layer for _, _, layer, _ in swapped]
        if config.init == "scratch":
            _scratch_init(model, layers, data, config.seed, config.precondition)
        elif config.precondition:
            tensor_layers = [lay for lay in layers if isinstance(lay, npt.TensorPolyLayer)]
            _on_batch(model, data, lambda x: npt.precondition_(model, tensor_layers, x))
        history = fit(model, data, **settings)
        if config.qat_epochs:
            history["qat"] = _quantization_aware(model, swapped, data, config, settings)
    finally:
        with torch.no_grad():
            for name, module, layer, _ in swapped:
                if isinstance(layer, npt.TensorPolyLayer):
                    layer.write_back(module)  # still quantized after QAT: the stored weight
                    layer.quantize_(None)
                else:
                    module.weight.copy_(layer.weight)
                    if module.bias is not None:
                        module.bias.copy_(layer.bias)
                set_submodule(model, name, module)
    return history


def _shift_augment(data, shift: int):
    """Random translations of up to ``shift`` pixels for image data; a named error otherwise."""
    from fewops.data.augment import random_crop_flip

    shape = tuple(data.x_train.shape[1:])
    if len(shape) != 3:
        raise ValueError(
            f"augment_shift={shift} moves images, but the training inputs have shape {shape} "
            "(expected (channels, height, width))."
        )
    return random_crop_flip(shift, flip=False)


def _best_of_restarts(model: nn.Module, config: PolyConfig, data, fit_kwargs: dict) -> dict:
    """Retrain from ``config.restarts`` seeds; keep the lowest final training loss (after QAT
    when it runs). Why: from-scratch training of these tiny families varies by up to 3 points
    of accuracy between seeds (benchmarks/results/wacr.md), and the training loss ranks the
    runs without looking at test data."""
    start = copy.deepcopy(model.state_dict())
    runs, best = [], None
    for r in range(config.restarts):
        model.load_state_dict(start)
        cfg = dataclasses.replace(config, seed=config.seed + r, restarts=1)
        kwargs = dict(fit_kwargs)
        if kwargs.get("checkpoint") is not None:  # one file per run: resumes stay separate
            kwargs["checkpoint"] = f"{kwargs['checkpoint']}.restart{r}"
        history = retrain_(model, cfg, data, **kwargs)
        final = history.get("qat") or history
        loss = float(final["loss"][-1])
        runs.append({"seed": cfg.seed, "loss": loss, "train_accuracy": final["train_accuracy"][-1]})
        if best is None or loss < best[0]:
            best = (loss, copy.deepcopy(model.state_dict()), history)
    model.load_state_dict(best[1])
    history = best[2]
    history["restarts"] = runs
    return history


def _quantization_aware(model: nn.Module, swapped, data, config: PolyConfig, settings: dict):
    """``config.qat_epochs`` epochs with every tensor-form layer computing with the weight its
    encoder will store; the layers stay quantized for write-back."""
    for _, module, layer, cfg in swapped:
        if isinstance(layer, npt.TensorPolyLayer):
            layer.quantize_(_encoder_grid(module, cfg))
    qat = dict(settings, epochs=config.qat_epochs, lr=config.qat_lr or config.lr / 10)
    if qat.get("checkpoint") is not None:  # its own file: a resume must not mix the two runs
        qat["checkpoint"] = f"{qat['checkpoint']}.qat"
    return fit(model, data, **qat)


def _encoder_grid(module: nn.Module, cfg: PolyConfig):
    """weight matrix -> the matrix ``_poly`` will store for this layer (tensor or 1-D encoder)."""
    layout = layer_layout(module, cfg)
    if isinstance(layout, pt.TensorLayout):
        return npt.tensor_grid(layout, cfg.coef_bits)
    shape = tuple(module.weight.shape)

    def stored(w: np.ndarray) -> np.ndarray:
        q, exps = poly.quantize(w.reshape(shape), layout, cfg.coef_bits)
        return poly.evaluate(q, layout, exps).reshape(w.shape)

    return stored


def _on_batch(model: nn.Module, data, action) -> None:
    """Run ``action(x)`` in eval mode on the first 256 training images (init statistics)."""
    params = list(model.parameters())
    device = params[0].device if params else "cpu"
    x = torch.as_tensor(np.asarray(data.x_train[:256]), dtype=torch.float32, device=device)
    was_training = model.training
    model.eval()
    try:
        action(x)
    finally:
        model.train(was_training)


def _scratch_init(model: nn.Module, layers, data, seed: int, precondition: bool) -> None:
    """Random coefficients for every swapped layer, scaled on 256 training images (and the
    tensor layers preconditioned on the same images)."""
    _on_batch(model, data, lambda x: npt.scratch_init_(model, layers, x, seed, precondition))


@register(PolyConfig)
def _poly(model, config: PolyConfig, targets, data=None, **fit_kwargs):
    for _, module, cfg in targets:  # check every layer's axis and interval before any training
        layer_layout(module, cfg)
    if data is not None and config.epochs > 0:
        retrain_(model, config, data, **fit_kwargs)
    for name, module, cfg in targets:
        w = module.weight.detach().double().cpu().numpy()
        layout = layer_layout(module, cfg)
        if isinstance(layout, pt.TensorLayout):
            coded = pt.encode(w, layout, cfg.coef_bits)
        else:
            coded = poly.encode(w, cfg.axis, cfg.interval, cfg.degree, cfg.coef_bits)
        if cfg.bias_degree is not None and module.bias is not None:
            # The stored bias is its bias_degree + 1 polynomial coefficients.
            bias = module.bias.detach().double().cpu().numpy()
            with torch.no_grad():
                module.bias.copy_(torch.as_tensor(npt.project_bias(bias, cfg.bias_degree)))
            coded.extra["bias_params"] = cfg.bias_degree + 1
            coded.extra["bias_degree"] = cfg.bias_degree
        set_submodule(model, name, coded_like(module, coded))


def demo_config() -> PolyConfig:
    """WACR for ``fewops demo`` (an MLP 64-64-32-10 on 8x8 digits): the first layer quadratic
    along image rows and columns in 4 x 4 blocks (36 moments) with 16 features in linear
    intervals of 8 units, the second quadratic over runs of 8 inputs with 8 features, the last
    linear over runs of 8; 40 epochs from scaled random coefficients. 980 stored numbers
    (the 1-D quadratics over runs of 8 of earlier versions: 2,539, no more accurate)."""
    return PolyConfig(
        epochs=40,
        mode="reparam",
        init="scratch",
        lr=1e-2,
        batch_size=32,
        layers=LayerSelection(
            overrides={
                "1": {"in_shape": (8, 8), "in_factors": ((4, 2), (4, 2)), "out_factor": (8, 1)},
                "3": {"in_factors": ((8, 2),), "out_factor": (8, 1)},
                "5": {"axis": "fan_in", "interval": 8, "degree": 1},
            }
        ),
    )


# ------------------------------------------------------------------------------------- CLI


def _interval(text: str) -> int | None:
    if text.lower() in ("full", "all", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Interval length must be an integer or 'full'; got {text!r}."
        ) from None


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add an option unless the parser already has it (shared options such as --epochs)."""
    if flag not in parser._option_string_actions:
        parser.add_argument(flag, **kwargs)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``fewops compress --method wacr``."""
    _add(
        parser,
        "--axis",
        choices=poly.AXES,
        default="fan_in",
        help="axis the polynomial runs along (default fan_in)",
    )
    _add(
        parser,
        "--interval",
        type=_interval,
        default=None,
        help="interval length along the axis, or 'full' for the whole axis (default full)",
    )
    _add(
        parser,
        "--degree",
        type=int,
        choices=poly.DEGREES,
        default=1,
        help="polynomial degree (default 1)",
    )
    _add(parser, "--coef-bits", type=int, default=8, help="coefficient width in bits (default 8)")
    _add(parser, "--epochs", type=int, default=0, help="retraining epochs (default 0)")
    _add(
        parser,
        "--mode",
        choices=MODES,
        default="project",
        help="retraining: project after each step, or learn coefficients (default project)",
    )
    _add(parser, "--lr", type=float, default=1e-3, help="retraining learning rate (default 1e-3)")
    _add(
        parser,
        "--retrain-epochs",
        type=int,
        default=None,
        help="retraining epochs (in `fewops compress` --epochs trains the float model)",
    )
    _add(parser, "--retrain-lr", type=float, default=None, help="retraining learning rate")
    _add(parser, "--batch-size", type=int, default=128, help="retraining batch (default 128)")
    _add(
        parser,
        "--init",
        choices=INITS,
        default="float",
        help="reparam: start from the projected float weights or from scaled random ones",
    )
    _add(
        parser,
        "--no-precondition",
        action="store_true",
        help="reparam: learn the coefficients against the raw moments (default: unit-RMS moments)",
    )
    _add(
        parser,
        "--qat-epochs",
        type=int,
        default=0,
        help="reparam: epochs after retraining with the coefficients on their coef-bits grid",
    )
    _add(parser, "--qat-lr", type=float, default=None, help="QAT learning rate (default lr / 10)")
    _add(
        parser,
        "--restarts",
        type=int,
        default=1,
        help="retrain from this many seeds, keep the lowest training loss (default 1)",
    )
    _add(
        parser,
        "--augment-shift",
        type=int,
        default=0,
        help="retraining: move each training image by up to this many pixels (default 0)",
    )
    _add(
        parser,
        "--retrain-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="retraining learning-rate schedule (default constant)",
    )
    _add(
        parser,
        "--retrain-dropout",
        type=float,
        default=None,
        help="dropout rate while retraining (default: the model's own)",
    )
    _add(
        parser,
        "--retrain-ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="keep a moving average of the coefficients with this decay, e.g. 0.998 (default off)",
    )
    _add(
        parser,
        "--families",
        default=None,
        metavar="JSON",
        help="per-layer tensor families: a JSON file or string mapping layer names to "
        'PolyConfig fields, e.g. {"7": {"in_shape": [64, 12, 12], "in_factors": '
        '[[null, 1], [6, 2], [6, 2]], "out_factor": [32, 1], "bias_degree": 2}}',
    )
    _add(
        parser,
        "--layer-poly",
        action="append",
        default=[],
        metavar="NAME=AXIS[:INTERVAL[:DEGREE]]",
        help="per-layer axis/interval/degree, e.g. 7=fan_in:full:2 (repeatable)",
    )


def parse_layer_override(text: str) -> tuple[str, dict]:
    """``NAME=AXIS[:INTERVAL[:DEGREE]]`` -> (name, override fields)."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name or not 1 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(
            f"A per-layer setting must look like NAME=AXIS[:INTERVAL[:DEGREE]]; got {text!r}."
        )
    fields: dict = {"axis": poly.check_axis(parts[0])}
    if len(parts) > 1:
        fields["interval"] = _interval(parts[1])
    if len(parts) > 2:
        fields["degree"] = poly.check_degree(int(parts[2]))
    return name, fields


_FAMILY_FIELDS = (
    "axis",
    "interval",
    "degree",
    "coef_bits",
    "in_factors",
    "out_factor",
    "in_shape",
    "bias_degree",
)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def parse_families(text: str) -> dict[str, dict]:
    """Per-layer family settings from a JSON file name or a JSON string (lists become tuples)."""
    from pathlib import Path

    source = "JSON"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--families must be a JSON object or a JSON file; no file {text!r}.")
        source, text = f"file {str(path)!r}", path.read_text()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--families: the {source} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError(
            f"--families must map layer names to objects of settings; got {type(raw).__name__}."
        )
    families = {}
    for name, fields in raw.items():
        unknown = sorted(set(fields) - set(_FAMILY_FIELDS))
        if unknown:
            raise ValueError(
                f"--families: layer {name!r} has unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(_FAMILY_FIELDS)}."
            )
        families[str(name)] = {k: _as_tuple(v) for k, v in fields.items()}
    return families


def _first(*values):
    return next((v for v in values if v is not None), None)


def config_from_args(args: argparse.Namespace) -> PolyConfig:
    """The :class:`PolyConfig` that parsed CLI options describe."""
    overrides = {}
    if getattr(args, "families", None):
        overrides.update(parse_families(args.families))
    for name, fields in (parse_layer_override(t) for t in getattr(args, "layer_poly", []) or []):
        overrides[name] = {**overrides.get(name, {}), **fields}
    schedule = getattr(args, "retrain_schedule", "constant")
    return PolyConfig(
        axis=getattr(args, "axis", "fan_in"),
        interval=getattr(args, "interval", None),
        degree=getattr(args, "degree", 1),
        coef_bits=getattr(args, "coef_bits", 8),
        epochs=_first(getattr(args, "retrain_epochs", None), getattr(args, "epochs", 0)) or 0,
        mode=getattr(args, "mode", "project"),
        lr=_first(getattr(args, "retrain_lr", None), getattr(args, "lr", 1e-3)),
        batch_size=getattr(args, "batch_size", 128),
        init=getattr(args, "init", "float"),
        precondition=not getattr(args, "no_precondition", False),
        qat_epochs=getattr(args, "qat_epochs", 0) or 0,
        qat_lr=getattr(args, "qat_lr", None),
        restarts=getattr(args, "restarts", 1) or 1,
        augment_shift=getattr(args, "augment_shift", 0) or 0,
        lr_schedule=None if schedule == "constant" else schedule,
        dropout=getattr(args, "retrain_dropout", None),
        ema=getattr(args, "retrain_ema", None),
        layers=LayerSelection(overrides=overrides),
    )


# Named configurations: "default" is what `fewops compress` uses, "demo" what `fewops demo` does.
WACR_PRESETS = {"default": PolyConfig(), "demo": demo_config()}
