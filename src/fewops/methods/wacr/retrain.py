"""Retraining a float model onto its polynomial families: projected gradient or learned
coefficients, from the float weights or from scratch, then optional quantization-aware epochs,
restarts from several seeds, shift augmentation and a retraining dropout rate.

``mode="project"`` keeps the ordinary layers and projects every coded layer's weight onto its
family after each optimizer step. ``mode="reparam"`` swaps the layers for
:class:`~fewops.methods.wacr.layers.PolyLinear` / :class:`~fewops.methods.wacr.layers.PolyConv2d`
or :class:`~fewops.methods.wacr.tensor.TensorPolyLayer` (the coefficients are the parameters)
and writes the weights back after training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import numpy as np
import torch
from torch import nn

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.data.augment import random_crop_flip
from fewops.methods.wacr import tensor as npt
from fewops.methods.wacr.config import PolyCode, PolyConfig
from fewops.methods.wacr.layers import (
    PolyConv2d,
    PolyLinear,
    layer_layout,
    project_weights_,
    tensor_equivalent,
)
from fewops.nn.api import set_submodule, target_layers
from fewops.train.fit import fit

DROPOUTS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def retrain_(
    model: nn.Module, config: PolyConfig, data, *, progress: bool = False, **fit_kwargs
) -> dict:
    """Retrain a (trained float) model onto the polynomial family in place; returns the history
    of :func:`fewops.train.fit.fit` (with ``"qat"``: the QAT epochs' history; with
    ``"restarts"``: each run's seed and final training loss).

    ``fit_kwargs`` go to :func:`fewops.train.fit.fit` and win over ``config.train``.
    """
    if config.restarts > 1:
        return _best_of_restarts(model, config, data, dict(fit_kwargs, progress=progress))

    settings = {**config.train.fit_kwargs(), "progress": progress, **fit_kwargs}
    with _dropout_rate(model, config.dropout):
        return _retrain(model, config, data, settings)


@contextlib.contextmanager
def _dropout_rate(model: nn.Module, rate: float | None):
    """Every Dropout of ``model`` at ``rate`` inside the block (None: unchanged), its own rate
    back afterwards. The coded networks are tiny and underfit; dropout only slows them."""
    saved = {}
    if rate is not None:
        for module in model.modules():
            if isinstance(module, DROPOUTS):
                saved[module] = module.p
                module.p = float(rate)
    try:
        yield
    finally:
        for module, p in saved.items():
            module.p = p


def _retrain(model: nn.Module, config: PolyConfig, data, settings: dict) -> dict:
    if config.augment_shift and "augment" not in settings:
        settings["augment"] = shift_augment(data, config.augment_shift)
    if config.mode == "project":
        projectors = project_weights_(model, config)

        def after_step(_model: nn.Module) -> None:
            for _, module, basis in projectors:
                basis.project_(module.weight)

        return fit(model, data, after_step=after_step, **settings)
    swapped = []
    for name, module, cfg in target_layers(model, config):
        layout = layer_layout(module, cfg.code)
        if config.init == "scratch" and not isinstance(layout, pt.TensorLayout):
            # Same family, tensor form: scratch_init_ draws and scales the coefficients C.
            shape = tuple(module.weight.shape)
            layout = pt.make_tensor_layout(
                shape, *tensor_equivalent(shape, cfg.code.axis, cfg.code.interval, cfg.code.degree)
            )
        if isinstance(layout, pt.TensorLayout):
            layer = npt.TensorPolyLayer(module, layout, cfg.code.bias_degree)
        else:
            cls = PolyConv2d if isinstance(module, nn.Conv2d) else PolyLinear
            layer = cls(module, layout)
        layer = layer.to(module.weight.device)
        set_submodule(model, name, layer)
        swapped.append((name, module, layer, cfg))
    try:
        layers = [layer for _, _, layer, _ in swapped]
        if config.init == "scratch":
            _scratch_init(model, layers, data, config.train.seed, config.precondition)
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


def shift_augment(data, shift: int):
    """Random translations of up to ``shift`` pixels for image data; a named error otherwise."""
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
        train = dataclasses.replace(config.train, seed=config.train.seed + r)
        cfg = dataclasses.replace(config, train=train, restarts=1)
        kwargs = dict(fit_kwargs)
        if kwargs.get("checkpoint") is not None:  # one file per run: resumes stay separate
            kwargs["checkpoint"] = f"{kwargs['checkpoint']}.restart{r}"
        history = retrain_(model, cfg, data, **kwargs)
        final = history.get("qat") or history
        loss = float(final["loss"][-1])
        runs.append(
            {"seed": train.seed, "loss": loss, "train_accuracy": final["train_accuracy"][-1]}
        )
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
            layer.quantize_(encoder_grid(module, cfg.code))
    qat = dict(settings, epochs=config.qat_epochs, lr=config.qat_lr or config.train.lr / 10)
    if qat.get("checkpoint") is not None:  # its own file: a resume must not mix the two runs
        qat["checkpoint"] = f"{qat['checkpoint']}.qat"
    return fit(model, data, **qat)


def encoder_grid(module: nn.Module, code: PolyCode):
    """weight matrix -> the matrix the handler will store for this layer (tensor or 1-D
    encoder)."""
    layout = layer_layout(module, code)
    if isinstance(layout, pt.TensorLayout):
        return npt.tensor_grid(layout, code.coef_bits)
    shape = tuple(module.weight.shape)

    def stored(w: np.ndarray) -> np.ndarray:
        q, exps = poly.quantize(w.reshape(shape), layout, code.coef_bits)
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
