"""SST (n, k) in networks: config, quantization-aware retraining, the ``compress_`` handler.

``compress_(model, SSTConfig(SSTCodeSpec(n=8, k=2), Recipe(epochs=6)), data=dataset)`` retrains
the model with straight-through QAT (the forward pass uses the projected ternary weights,
gradients update a float shadow copy), then swaps every targeted Linear/Conv2d for a coded layer
holding the final :class:`~fewops.codes.base.CodedMatrix`. ``data`` is anything
:func:`fewops.data.adapt.as_dataset` takes ((x, y) arrays or tensors, a torch Dataset or
DataLoader, a fewops data set). Without ``data`` a config that retrains is refused; with
``train.epochs=0`` the float weights are projected as they are (post-training coding). The command line
(``fewops compress --method sst``) is generated from these dataclasses by
:mod:`fewops.cli.options`.

Training choices (the paper names "gradual pruning" and "weight distribution normalization"
without details; these are our readings, see docs/sst.md):

* gradual k: the first ``ramp_epochs`` epochs use a looser code, k going from ``k_start``
  (default ``min(n, 2k)``) down to ``k``; the rest train at the target k;
* ``normalize``: before retraining, rows are rescaled to one RMS, and each row's scale is moved
  into the matching inputs of the next layer (exact for ReLU/pooling/Flatten/Dropout between two
  layers of an ``nn.Sequential``), so one step per layer fits every row equally well.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fewops.codes.sst import SSTCode
from fewops.data.adapt import as_dataset
from fewops.nn.api import LayerSelection, MethodOutcome, register, set_submodule
from fewops.nn.coded import coded_like, layer_matrix
from fewops.train.fit import fit
from fewops.train.recipe import Recipe

SCALE_FREE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class SSTCodeSpec:
    """The (n, k) code a layer's weights take: what per-layer overrides may change.

    :meth:`build` gives the :class:`~fewops.codes.sst.SSTCode` that codes the matrix.
    """

    n: int = 8
    """group size: weights are coded in groups of n along each row (1..16)"""
    k: int = 2
    """nonzeros per group: at most k of each group's n weights are +-step (1..n)"""
    per_row_step: bool = False
    """fit one step per output row (one multiplier per output) instead of one per layer"""

    def __post_init__(self) -> None:
        self.build()  # the code's own checks: integers, 1 <= k <= n <= 16

    def build(self) -> SSTCode:
        """The :class:`~fewops.codes.sst.SSTCode` of these settings."""
        return SSTCode(self.n, self.k, per_row_step=self.per_row_step)


def default_recipe() -> Recipe:
    """SST's retraining recipe: 6 epochs of Adam at lr 1e-3, the last stage cosine-annealed."""
    return Recipe(epochs=6, lr_schedule="cosine")


@dataclass(frozen=True)
class SSTConfig:
    """Structured sparse ternary (n, k) coding with optional QAT retraining.

    ``code`` may be overridden per layer through ``layers``; ``train`` and the training-pull
    settings (``gradual`` ... ``normalize``) apply to the whole model.
    """

    code: SSTCodeSpec = field(default_factory=SSTCodeSpec)
    """the (n, k) code of every layer (per-layer changes through layers)"""
    train: Recipe = field(default_factory=default_recipe)
    """the QAT retraining recipe (epochs 0: project only); lr_schedule cosine anneals the last
    stage, the one at the target k"""
    gradual: bool = True
    """tighten k gradually: the first ramp_epochs epochs use a looser code"""
    k_start: int | None = None
    """k at the start of the gradual schedule (none: min(n, 2k))"""
    ramp_epochs: int | None = None
    """epochs spent tightening k (none: half of the training epochs)"""
    normalize: bool = False
    """even out row spreads before retraining by moving row scales into the next layer
    (function-preserving)"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""

    def __post_init__(self) -> None:
        if not isinstance(self.code, SSTCodeSpec):
            raise TypeError(
                f"SSTConfig.code must be an SSTCodeSpec; got {type(self.code).__name__} "
                f"{self.code!r}."
            )
        if not isinstance(self.train, Recipe):
            raise TypeError(
                f"SSTConfig.train must be a Recipe; got {type(self.train).__name__} {self.train!r}."
            )
        n, k = self.code.n, self.code.k
        if self.k_start is not None and not (
            isinstance(self.k_start, int)
            and not isinstance(self.k_start, bool)
            and k <= self.k_start <= n
        ):
            raise ValueError(
                f"SSTConfig.k_start must lie between k={k} and n={n}; got {self.k_start!r}."
            )
        epochs = self.train.epochs
        if self.ramp_epochs is not None and not (
            isinstance(self.ramp_epochs, int)
            and not isinstance(self.ramp_epochs, bool)
            and 0 <= self.ramp_epochs <= epochs
        ):
            raise ValueError(
                f"SSTConfig.ramp_epochs must lie between 0 and train.epochs={epochs}; "
                f"got {self.ramp_epochs!r}."
            )


# -- the projection in torch ---------------------------------------------------------------------


def _candidates(w: torch.Tensor, n: int, k: int):
    """|W| grouped (out, groups, n), the mask of each group's k largest, and their values."""
    out, inp = w.shape
    groups = -(-inp // n)
    a = F.pad(w.abs(), (0, groups * n - inp)).reshape(out, groups, n)
    if k >= n:
        return a, torch.ones_like(a, dtype=torch.bool), a
    top, where = a.topk(k, dim=-1)
    keep = torch.zeros_like(a, dtype=torch.bool).scatter_(-1, where, True)
    return a, keep, top


def _exact_step(top: torch.Tensor, per_row_step: bool) -> torch.Tensor:
    """The L2-optimal step (see ``SSTCode.fit_step``): shape (out, 1) or (1, 1)."""
    rows = top.shape[0] if per_row_step else 1
    vals = top.reshape(rows, -1).sort(dim=1, descending=True).values
    cs = vals.double().cumsum(dim=1)
    m = torch.arange(1, vals.shape[1] + 1, dtype=torch.float64, device=top.device)
    best = (cs * cs / m).argmax(dim=1, keepdim=True)
    return (cs.gather(1, best) / (best + 1).double()).to(top.dtype)


def _lloyd_step(top: torch.Tensor, step: torch.Tensor, per_row_step: bool) -> torch.Tensor:
    """One fixed-point update D <- mean of the candidates above D/2 (cheap: no sort)."""
    rows = top.shape[0] if per_row_step else 1
    vals = top.reshape(rows, -1)
    mask = vals > step / 2
    count = mask.sum(dim=1, keepdim=True)
    total = (vals * mask).sum(dim=1, keepdim=True)
    return torch.where(count > 0, total / count.clamp(min=1), step)


def _apply(w, a, keep, step) -> torch.Tensor:
    out, inp = w.shape
    nz = (keep & (a > step.unsqueeze(-1) / 2)).reshape(out, -1)[:, :inp]
    return torch.sign(w) * nz * step


@torch.no_grad()
def project_tensor(w: torch.Tensor, n: int, k: int, per_row_step: bool = False) -> torch.Tensor:
    """W_q for a (out, in) tensor: the same projection and L2 step fit as :class:`SSTCode`.

    Ties between equal magnitudes may break differently, and the step is not rounded to 16 bits;
    the final coding uses :class:`SSTCode` itself.
    """
    a, keep, top = _candidates(w, n, k)
    return _apply(w, a, keep, _exact_step(top, per_row_step))


class SSTQAT(nn.Module):
    """Training wrapper around a Linear/Conv2d: forward with projected weights (STE).

    The exact step fit sorts every candidate weight; it runs every ``refit_every`` forward
    passes in training (and always in eval mode), and in between one fixed-point update
    (mean of the candidates above D/2) tracks the slowly moving weights.
    """

    def __init__(
        self, inner: nn.Module, n: int, k: int, per_row_step: bool, refit_every: int = 16
    ) -> None:
        super().__init__()
        if not isinstance(inner, nn.Linear | nn.Conv2d):
            raise TypeError(f"SST training wraps Linear or Conv2d; got {type(inner).__name__}.")
        self.inner = inner
        self.n, self.k, self.per_row_step = n, k, per_row_step
        self.refit_every = refit_every
        self._step: torch.Tensor | None = None
        self._calls = 0

    @property
    def k(self) -> int:
        return self._k

    @k.setter
    def k(self, value: int) -> None:
        self._k = int(value)
        self._step = None  # a new k needs a new exact fit

    @torch.no_grad()
    def _project(self, flat: torch.Tensor) -> torch.Tensor:
        a, keep, top = _candidates(flat, self.n, self.k)
        exact = (
            self._step is None
            or not self.training
            or self._calls % self.refit_every == 0
            or self._step.shape[0] != (flat.shape[0] if self.per_row_step else 1)
        )
        if exact:
            step = _exact_step(top, self.per_row_step)
        else:
            step = _lloyd_step(top, self._step, self.per_row_step)
        if self.training:
            self._step = step
            self._calls += 1
        return _apply(flat, a, keep, step)

    def quantized_weight(self) -> torch.Tensor:
        w = self.inner.weight
        flat = w.reshape(w.shape[0], -1)
        wq = self._project(flat.detach())
        return (flat + (wq - flat).detach()).reshape(w.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.quantized_weight()
        inner = self.inner
        if isinstance(inner, nn.Linear):
            return F.linear(x, w, inner.bias)
        return inner._conv_forward(x, w, inner.bias)

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, per_row_step={self.per_row_step}"


# -- training --------------------------------------------------------------------------------------


def k_schedule(config: SSTConfig, k: int | None = None, n: int | None = None) -> list[int]:
    """k of every retraining epoch: a ramp from ``k_start`` down to ``k``, then ``k``.

    ``n`` and ``k`` default to ``config.code``'s (a layer with overrides passes its own).
    """
    n = config.code.n if n is None else n
    k = config.code.k if k is None else k
    epochs = config.train.epochs
    start = min(n, config.k_start if config.k_start is not None else 2 * k)
    ramp = config.ramp_epochs if config.ramp_epochs is not None else epochs // 2
    if not config.gradual or start <= k or ramp == 0:
        return [k] * epochs
    return [math.ceil(start - (start - k) * e / ramp) if e < ramp else k for e in range(epochs)]


@torch.no_grad()
def normalize_rows(model: nn.Module, names: list[str]) -> list[str]:
    """Even out the row spread of each named layer by moving row scales into the next layer.

    Works on consecutive layers of an ``nn.Sequential`` separated only by ReLU, pooling,
    Flatten, Dropout or Identity (positive per-channel scales pass through them unchanged), so
    the network computes the same function. Returns the names of the layers rescaled.
    """
    done: list[str] = []
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        for i, (child_name, layer) in enumerate(children):
            full = f"{seq_name}.{child_name}" if seq_name else child_name
            if full not in names or not isinstance(layer, nn.Linear | nn.Conv2d):
                continue
            nxt = None
            for _, later in children[i + 1 :]:
                if isinstance(later, nn.Linear | nn.Conv2d):
                    nxt = later
                    break
                if not isinstance(later, SCALE_FREE):
                    break
            if nxt is None or not _rescale_pair(layer, nxt):
                continue
            done.append(full)
    return done


def _rescale_pair(layer: nn.Module, nxt: nn.Module) -> bool:
    w = layer.weight
    rows = w.shape[0]
    rms = w.reshape(rows, -1).pow(2).mean(dim=1).sqrt()
    if not (rms > 0).all():
        return False
    g = rms / rms.mean()
    if isinstance(nxt, nn.Linear):
        if nxt.in_features % rows:
            return False
        per = nxt.in_features // rows  # Flatten of (C, H, W): channel c owns a run of H*W
        col_scale = g.repeat_interleave(per)
        nxt.weight.mul_(col_scale[None, :])
    else:
        if nxt.in_channels != rows or nxt.groups != 1:
            return False
        nxt.weight.mul_(g[None, :, None, None])
    w.div_(g.reshape((rows,) + (1,) * (w.dim() - 1)))
    if layer.bias is not None:
        layer.bias.div_(g)
    return True


def retrain(model: nn.Module, config: SSTConfig, targets, data, *, progress: bool = False) -> dict:
    """Straight-through QAT of ``targets`` ((name, module, config) from ``target_layers``).

    The modules are wrapped in :class:`SSTQAT` while training and put back afterwards, holding
    the trained float shadow weights. Training runs in stages of equal k per layer, each one
    :func:`~fewops.train.fit.fit` call with ``config.train`` (seeded ``seed + first epoch``;
    its ``lr_schedule`` applies to the last stage only, the others keep ``lr``). Returns
    {"seconds", "k_per_epoch", "history", "normalized"}.
    """
    started = time.perf_counter()
    recipe = config.train
    epochs = recipe.epochs
    names = [name for name, _, _ in targets]
    normalized = normalize_rows(model, names) if config.normalize else []
    schedules = {name: k_schedule(config, cfg.code.k, cfg.code.n) for name, _, cfg in targets}
    wrappers = {}
    for name, module, cfg in targets:
        wrappers[name] = SSTQAT(module, cfg.code.n, cfg.code.k, cfg.code.per_row_step)
        set_submodule(model, name, wrappers[name])
    history: dict[str, list] = {}
    try:
        epoch = 0
        while epoch < epochs:
            ks = {name: s[epoch] for name, s in schedules.items()}
            stage = 1
            while epoch + stage < epochs and all(
                s[epoch + stage] == ks[name] for name, s in schedules.items()
            ):
                stage += 1
            for name, wrapper in wrappers.items():
                wrapper.k = ks[name]
            last = epoch + stage == epochs
            settings = recipe.fit_kwargs()
            settings.update(
                epochs=stage,
                seed=recipe.seed + epoch,
                lr_schedule=recipe.lr_schedule if last else None,
            )
            part = fit(model, data, progress=progress, **settings)
            for key, values in part.items():
                history.setdefault(key, []).extend(values)
            epoch += stage
    finally:
        for name, module, _ in targets:
            set_submodule(model, name, module)
    if history:
        history["epoch"] = list(range(1, len(history["epoch"]) + 1))
    return {
        "seconds": time.perf_counter() - started,
        "k_per_epoch": {name: s for name, s in schedules.items()},
        "history": history,
        "normalized": normalized,
    }


@register(SSTConfig)
def _sst(model, config, targets, data=None, progress: bool = False, **_) -> MethodOutcome:
    """Retrain (with ``data`` and ``config.train.epochs`` > 0), then swap in coded layers.

    ``progress`` shows a progress bar while retraining (runtime, not part of the config).
    """
    outcome = MethodOutcome()
    if data is None and config.train.epochs > 0:
        raise ValueError(no_data_message("SST", "(n, k) code", config.train.epochs))
    if data is not None and config.train.epochs > 0:
        data = as_dataset(data)
        info = retrain(model, config, targets, data, progress=progress)
        outcome.history["qat"] = info["history"]
        outcome.report.update(k_per_epoch=info["k_per_epoch"], normalized=info["normalized"])
    for name, module, cfg in targets:
        coded = cfg.code.build().code_matrix(layer_matrix(module).numpy())
        set_submodule(model, name, coded_like(module, coded))
    return outcome


def no_data_message(method: str, code: str, epochs: int) -> str:
    """The refusal of a method that retrains when no data are given (SST, WACR)."""
    return (
        f"{method} retrains the model onto its {code} for {epochs} epochs and needs training "
        "data: pass data=(x_train, y_train) (arrays or tensors), a torch Dataset or DataLoader, "
        f"or a fewops data set; or set train=Recipe(epochs=0) (--epochs 0) to code the float "
        "weights without retraining (post-training coding, far less accurate)."
    )


def demo_config() -> SSTConfig:
    """SST for ``fewops demo`` (an MLP 64-64-32-10 on 8x8 digits): (8,2), 20 epochs of QAT.

    On that model (float 96.4 %) it reached 96.1 %; without ``normalize`` 93.9 %, at lr 1e-3
    91.1 % (measured once, seed 0).
    """
    return SSTConfig(
        code=SSTCodeSpec(n=8, k=2),
        train=Recipe(epochs=20, lr=3e-3, lr_schedule="cosine"),
        normalize=True,
    )


# Named configurations: "default" is what `fewops compress` uses, "demo" what `fewops demo` does.
SST_PRESETS = {"default": SSTConfig(), "demo": demo_config()}
