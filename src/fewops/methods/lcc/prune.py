"""Group-lasso pruning of whole input groups, and their physical removal (spec section 2.2).

A *group* is everything a layer reads from one input: a column W[:, j] of a Linear weight, or
the filter slice W[:, c, :, :] of one input channel of a Conv2d. Training with
``loss + lambda * sum_g ||w_g||_2`` (or, exactly, its proximal step, which sets whole groups to
zero) drives unneeded groups to zero. Removing a zero group

* shrinks the layer itself (one column or channel fewer), and
* shrinks its *feeder*: the Linear/Conv2d whose output channel it was, together with every
  per-channel module in between (BatchNorm, ReLU, Dropout, pooling). The feeder loses that
  output row, its bias entry and the BatchNorm entries, so the model stays a valid, smaller
  PyTorch model that computes exactly the same outputs when the removed groups were exactly zero.

Feeders are found by tracing the model with :mod:`torch.fx`: a layer has a feeder when its input
is a chain of per-channel modules, each read only by the next, starting at a Linear or Conv2d
that nothing else reads. Where that is not so (the network input, a residual sum, a Flatten),
the zero groups stay in the weight as exact zeros ("masked"); the sharing and coding stages then
leave those inputs unread, so they cost nothing either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from fewops.nn.trace import module_graph, private_call
from fewops.train.fit import fit as train_fit

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
PER_CHANNEL = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
)


def group_norms(module: nn.Module) -> torch.Tensor:
    """L2 norm of each input group of a Linear (columns) or Conv2d (input channels)."""
    w = _weight(module)
    if isinstance(module, nn.Linear):
        return w.norm(dim=0)
    if module.groups != 1:
        raise ValueError(
            f"Group lasso over input channels needs an ungrouped convolution; got groups={module.groups}."
        )
    return w.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)


def _weight(module: nn.Module) -> torch.Tensor:
    if not isinstance(module, WEIGHT_LAYERS):
        raise TypeError(
            f"Only Linear and Conv2d layers have input groups to prune; got {type(module).__name__}."
        )
    return module.weight


def prunable_layers(
    model: nn.Module, names: Iterable[str] | None = None
) -> list[tuple[str, nn.Module]]:
    """(name, module) of the Linear/Conv2d layers to regularise: ``names`` or all of them."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    if names is None:
        return layers
    wanted = list(names)
    found = {n for n, _ in layers}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValueError(
            f"No Linear or Conv2d layer named {', '.join(map(repr, missing))} in the model; "
            f"its weight layers are {', '.join(sorted(found))}."
        )
    return [(n, m) for n, m in layers if n in set(wanted)]


def _check_lambda(lam: float) -> float:
    if not (isinstance(lam, int | float) and math.isfinite(lam) and lam >= 0):
        raise ValueError(
            f"The group-lasso strength lambda must be a finite number >= 0; got {lam!r}."
        )
    return float(lam)


class GroupLasso:
    """``regularizer(model)`` for :func:`fewops.train.fit.fit`: lambda * sum_g ||w_g||_2.

    With ``weighted`` each group's norm is multiplied by sqrt(group size) (the textbook group
    lasso); by default all groups count alike.
    """

    def __init__(
        self, lam: float, layers: Iterable[str] | None = None, *, weighted: bool = False
    ) -> None:
        self.lam = _check_lambda(lam)
        self.layers = None if layers is None else tuple(layers)
        self.weighted = bool(weighted)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        total = None
        for _, module in prunable_layers(model, self.layers):
            norms = group_norms(module)
            if self.weighted:
                norms = norms * math.sqrt(module.weight[:, 0].numel())
            term = norms.sum()
            total = term if total is None else total + term
        if total is None:
            raise ValueError("The model has no Linear or Conv2d layer to regularise.")
        return self.lam * total


class GroupProx:
    """``after_step(model)``: the proximal step of the group lasso, w_g *= max(0, 1 - t/||w_g||).

    ``t = lr * lambda`` per optimizer step. Groups whose norm falls below t become exactly zero,
    which is what makes removal exact.

    With ``relative`` the threshold of each layer is instead
    ``t = lambda * rms_0 / steps_per_epoch``, rms_0 being the RMS of the layer's group norms at
    the first step: lambda is then the fraction of a typical group's norm that the threshold
    removes per epoch, whatever the layer, the learning rate or the data set size. (Group norms
    differ by orders of magnitude between layers, a 512-long first-layer column against a
    10-long classifier column, so one absolute threshold prunes the small layers away long
    before it touches the large ones.) It is still the proximal step of a group lasso, with a
    per-layer strength lambda * rms_0 / (lr * steps_per_epoch).
    """

    def __init__(
        self,
        lam: float,
        lr: float,
        layers: Iterable[str] | None = None,
        *,
        weighted: bool = False,
        relative: bool = False,
        steps_per_epoch: int = 1,
    ) -> None:
        self.lam = _check_lambda(lam)
        if not (lr > 0):
            raise ValueError(f"The proximal step needs a positive learning rate; got {lr!r}.")
        self.lr = float(lr)
        self.layers = None if layers is None else tuple(layers)
        self.weighted = bool(weighted)
        self.relative = bool(relative)
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1; got {steps_per_epoch!r}.")
        self.steps_per_epoch = int(steps_per_epoch)
        self.scale: dict[str, float] = {}

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        for name, module in prunable_layers(model, self.layers):
            t = self.lam * self.lr
            if self.weighted:
                t *= math.sqrt(module.weight[:, 0].numel())
            norms = group_norms(module)
            if self.relative:
                if name not in self.scale:
                    self.scale[name] = float(norms.square().mean().sqrt())
                t = self.lam * self.scale[name] / self.steps_per_epoch
            factor = torch.clamp(1.0 - t / norms.clamp_min(1e-30), min=0.0)
            shape = (1, -1) if isinstance(module, nn.Linear) else (1, -1, 1, 1)
            module.weight.mul_(factor.reshape(shape))


class KeepZero:
    """``after_step(model)``: keep the given groups at exactly zero (fine-tuning after pruning)."""

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks  # layer name -> bool tensor, True where the group must stay zero

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        for name, zero in self.masks.items():
            module = model.get_submodule(name)
            if isinstance(module, nn.Linear):
                module.weight[:, zero] = 0
            else:
                module.weight[:, zero, :, :] = 0


# -- feeders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feeder:
    """The layer whose output channels are ``consumer``'s input groups, and what lies between."""

    consumer: str
    feeder: str
    between: tuple[str, ...]  # per-channel modules from feeder to consumer, in order


def find_feeders(model: nn.Module) -> dict[str, Feeder]:
    """Map each Linear/Conv2d name to its :class:`Feeder`, for the layers that have one.

    Models that :mod:`torch.fx` cannot trace get no feeders (their zero groups stay masked).
    """
    mg = module_graph(model)
    if mg is None:
        return {}
    modules, calls = mg.modules, mg.calls
    feeders: dict[str, Feeder] = {}
    for node in mg.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), WEIGHT_LAYERS):
            continue
        if calls[node.target] != 1 or not node.args:
            continue
        consumer = modules[node.target]
        chain: list[str] = []
        cur = node.args[0]
        while private_call(cur, mg, PER_CHANNEL):
            chain.append(cur.target)
            cur = cur.args[0]
        if not private_call(cur, mg, WEIGHT_LAYERS):
            continue
        feeder = modules[cur.target]
        if type(feeder) is not type(consumer) and not (
            isinstance(feeder, nn.Conv2d) and isinstance(consumer, nn.Conv2d)
        ):
            continue
        if feeder.weight.shape[0] != consumer.weight.shape[1]:
            continue
        if isinstance(consumer, nn.Conv2d) and consumer.groups != 1:
            continue
        feeders[node.target] = Feeder(node.target, cur.target, tuple(reversed(chain)))
    return feeders


# -- removal ---------------------------------------------------------------------------------


@dataclass
class PruneReport:
    """What :func:`remove_zero_groups` did, per layer and in total (JSON-able via to_dict)."""

    layers: dict[str, dict] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    def to_dict(self) -> dict:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "layers": self.layers,
        }


def zero_groups(model: nn.Module, threshold: float = 0.0, names=None) -> dict[str, torch.Tensor]:
    """Per layer, a bool mask of the input groups whose L2 norm is <= ``threshold``."""
    return {n: (group_norms(m).detach() <= threshold) for n, m in prunable_layers(model, names)}


def _weight_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for _, m in prunable_layers(model))


@torch.no_grad()
def remove_zero_groups(
    model: nn.Module,
    threshold: float = 0.0,
    *,
    names: Iterable[str] | None = None,
    lam: float | None = None,
) -> PruneReport:
    """Remove the input groups with norm <= ``threshold`` in place; returns a :class:`PruneReport`.

    Layers with a feeder lose those columns/channels physically (and the feeder its output rows);
    other layers keep them as exact zeros. A layer whose every group is zero would cut the network
    in two and is refused with a ValueError (``lam`` only makes the message more helpful).
    """
    masks = zero_groups(model, threshold, names)
    for name, zero in masks.items():
        if bool(zero.all()):
            why = "" if lam is None else f" with group-lasso strength lambda={lam:g}"
            hint = "a smaller lambda" if lam is None else f"a smaller lambda (e.g. {lam / 4:g})"
            raise ValueError(
                f"Pruning{why} drove all {zero.numel()} input groups of layer {name!r} to zero: "
                f"removing them would delete the layer and disconnect the network. Use {hint}, "
                "or leave this layer out of the pruning."
            )
    report = PruneReport(params_before=_weight_params(model))
    feeders = find_feeders(model)
    for name, zero in masks.items():
        module = model.get_submodule(name)
        removed = int(zero.sum())
        entry = {"groups": int(zero.numel()), "zero_groups": removed, "removed": 0, "masked": 0}
        if removed == 0:
            report.layers[name] = entry
            continue
        keep = ~zero
        if name in feeders:
            feed = feeders[name]
            _keep_inputs(module, keep)
            _keep_outputs(model.get_submodule(feed.feeder), keep)
            for between in feed.between:
                _keep_channels(model.get_submodule(between), keep)
            entry["removed"] = removed
            entry["feeder"] = feed.feeder
        else:
            zero_mask = zero.to(module.weight.device)
            if isinstance(module, nn.Linear):
                module.weight[:, zero_mask] = 0
            else:
                module.weight[:, zero_mask, :, :] = 0
            entry["masked"] = removed
        report.layers[name] = entry
    report.params_after = _weight_params(model)
    return report


def _param(t: torch.Tensor, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _keep_inputs(module: nn.Module, keep: torch.Tensor) -> None:
    keep = keep.to(module.weight.device)
    module.weight = _param(module.weight[:, keep], module.weight)
    n = int(keep.sum())
    if isinstance(module, nn.Linear):
        module.in_features = n
    else:
        module.in_channels = n


def _keep_outputs(module: nn.Module, keep: torch.Tensor) -> None:
    keep = keep.to(module.weight.device)
    module.weight = _param(module.weight[keep], module.weight)
    if module.bias is not None:
        module.bias = _param(module.bias[keep], module.bias)
    n = int(keep.sum())
    if isinstance(module, nn.Linear):
        module.out_features = n
    else:
        module.out_channels = n


def _keep_channels(module: nn.Module, keep: torch.Tensor) -> None:
    if not isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return  # activations, dropout and pooling have no per-channel state
    for attr in ("weight", "bias"):
        p = getattr(module, attr)
        if p is not None:
            setattr(module, attr, _param(p[keep.to(p.device)], p))
    for attr in ("running_mean", "running_var"):
        b = getattr(module, attr)
        if b is not None:
            setattr(module, attr, b[keep.to(b.device)].clone())
    module.num_features = int(keep.sum())


def _steps_per_epoch(data, fit_options: dict | None) -> int:
    batch = int((fit_options or {}).get("batch_size", 128))
    return max(1, math.ceil(len(data.y_train) / batch))


def prune_by_group_lasso(
    model: nn.Module,
    data,
    *,
    lam: float,
    epochs: int,
    lr: float = 1e-3,
    lr_schedule: str | None = None,
    finetune_epochs: int = 0,
    names: Iterable[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    relative: bool = False,
    fit_options: dict | None = None,
    fit: Callable | None = None,
) -> PruneReport:
    """Train with the group-lasso proximal step, remove zero groups, fine-tune; report.

    ``fit`` defaults to :func:`fewops.train.fit.fit`; ``fit_options`` go to every fit call (e.g.
    ``num_threads``). ``relative`` scales each layer's threshold (see :class:`GroupProx`).
    ``lr_schedule`` is the group-lasso training's; fine-tuning keeps masked groups at zero and
    anneals the learning rate (cosine).
    """
    lam = _check_lambda(lam)
    if fit is None:
        fit = train_fit
    names = None if names is None else tuple(names)
    fit(
        model,
        data,
        epochs=epochs,
        lr=lr,
        lr_schedule=lr_schedule,
        seed=seed,
        progress=progress,
        after_step=GroupProx(
            lam, lr, names, relative=relative, steps_per_epoch=_steps_per_epoch(data, fit_options)
        ),
        **(fit_options or {}),
    )
    report = remove_zero_groups(model, 0.0, names=names, lam=lam)
    if finetune_epochs > 0:
        masks = {n: z for n, z in zero_groups(model, 0.0, names).items() if bool(z.any())}
        fit(
            model,
            data,
            epochs=finetune_epochs,
            lr=lr,
            seed=seed + 1,
            progress=progress,
            after_step=KeepZero(masks) if masks else None,
            # Annealing lets the fine-tuned weights settle; at a constant rate the last epoch's
            # noise costs a few tenths of a point, most of a 0.5-point budget.
            lr_schedule="cosine",
            **(fit_options or {}),
        )
    return report
