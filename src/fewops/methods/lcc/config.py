"""Configuration of the LCC network pipeline and the checks made before it runs."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from torch import nn

from fewops.codes.lcc.algorithms import ALGORITHMS as MATRIX_ALGORITHMS
from fewops.nn.api import LayerSelection
from fewops.nn.coded import CodedConv2d, CodedLinear

# Every matrix algorithm of fewops.codes.lcc ("dmp", "rs", "fs", "mixed", "grow", "chain", "best").
ALGORITHMS = tuple(MATRIX_ALGORITHMS)
# Modules with weights that are not matrix products of their input: allowed, left in float.
PER_CHANNEL_WEIGHTS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.PReLU,
)


class ToleranceNotMet(UserWarning):
    """The accuracy tolerance could not be met; the best coding found is used and reported."""


@dataclass(frozen=True)
class LCCConfig:
    """Linear computation coding of a network, with optional pruning and column sharing.

    SQNR: ``target_db`` codes every layer at that SQNR (no search, no data needed); None
    searches per-layer SQNRs in ``db_min..db_max`` (steps of ``db_step``) keeping accuracy
    within ``tolerance`` (a fraction: 0.005 = 0.5 points) of the float model.
    LCC: ``algorithm`` ("dmp", "rs", "fs" = fs-LCC, "mixed", "grow", "chain", "best"), ``S`` terms per
    wiring row, ``mem`` beam width (rs), ``slice_width`` (None: about log2(rows)).
    Pruning: ``prune_lambda`` (0 = off), ``prune_layers`` (names; None = every coded layer),
    ``prune_epochs``, ``finetune_epochs``, ``lr``; ``prune_relative`` scales each layer's
    threshold by its RMS group norm (lambda is then a unitless rate, see
    :class:`fewops.methods.lcc.prune.GroupProx`); ``train_threads`` torch threads while training;
    ``prune_cache`` a folder where the pruned model is kept, keyed by the float weights, the
    training set and the pruning settings, so a second run with the same ones skips training.
    Progressive coding (``code_finetune_epochs > 0``, needs data): the layers are coded in
    ``code_groups`` contiguous groups in model order (None: one layer per group); after each
    group the parameters still in float (later layers, every bias, normalisations) are
    fine-tuned for ``code_finetune_epochs`` epochs at a cosine-annealed rate from
    ``code_finetune_lr`` (None: ``lr``), which absorbs that group's coding error. A group that
    is followed by fine-tuning may lose ``code_finetune_slack`` (accuracy fraction) more on the
    noise proxy than the tolerance allows; after its fine-tuning it must be back within
    ``proxy_share * tolerance`` (the last group: within ``tolerance``; a group that fine-tuning
    still follows and that starts below that floor is measured against its starting accuracy
    instead), else it is coded again ``db_step`` higher (``max_rounds`` times).
    ``fold_batchnorm``: a BatchNorm that alone reads a coded layer is folded into it (running
    statistics) right before the layer is coded, so no per-channel multiplier is left beside
    the coded adds (:mod:`fewops.nn.fold`).
    Sharing: ``share``; clusters are kept at the layer's SQNR + ``share_margin_db``.
    ``max_datapath_bits``: a layer whose dmp / rs / mixed code needs a wider exact datapath
    (8-bit inputs) is coded with grow instead, and its stage record says so (None: keep it).
    ``workers`` processes code layers in parallel (None: CPU count). ``search_samples``
    training samples form the search set unless ``validation=(x, y)`` is passed.
    """

    algorithm: str = "dmp"
    S: int = 2
    mem: int = 8
    slice_width: int | None = None
    target_db: float | None = None
    tolerance: float = 0.005
    db_min: float = 8.0
    db_max: float = 40.0
    db_step: float = 2.0
    max_rounds: int = 3
    proxy_share: float = 0.6
    prune_lambda: float = 0.0
    prune_layers: tuple[str, ...] | None = None
    prune_epochs: int = 3
    finetune_epochs: int = 1
    lr: float = 1e-3
    prune_relative: bool = True
    train_threads: int | None = None
    prune_cache: str | None = None
    code_finetune_epochs: int = 0
    code_groups: int | None = None
    code_finetune_lr: float | None = None
    code_finetune_slack: float = 0.01
    fold_batchnorm: bool = True
    share: bool = True
    share_margin_db: float = 6.0
    max_datapath_bits: int | None = 64
    csd_bits: int = 8
    workers: int | None = None
    search_samples: int = 5000
    seed: int = 0
    progress: bool = False
    layers: LayerSelection = field(default_factory=LayerSelection)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Unknown LCC algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}."
            )
        if self.target_db is not None and not (0 < self.target_db <= 200):
            raise ValueError(f"target_db must be in (0, 200] dB; got {self.target_db}.")
        if not (0 <= self.tolerance < 1):
            raise ValueError(
                f"tolerance is an accuracy fraction in [0, 1) (0.005 = 0.5 points); got {self.tolerance}."
            )
        if not (0 < self.db_min <= self.db_max <= 200) or self.db_step <= 0:
            raise ValueError(
                f"Need 0 < db_min <= db_max <= 200 and db_step > 0; got db_min={self.db_min}, "
                f"db_max={self.db_max}, db_step={self.db_step}."
            )
        if not (self.prune_lambda >= 0 and math.isfinite(self.prune_lambda)):
            raise ValueError(f"prune_lambda must be a finite number >= 0; got {self.prune_lambda}.")
        if not (0 < self.proxy_share <= 1):
            raise ValueError(f"proxy_share must be in (0, 1]; got {self.proxy_share}.")
        if self.max_datapath_bits is not None and self.max_datapath_bits < 8:
            raise ValueError(
                f"max_datapath_bits must be None or at least 8 (the input width); got "
                f"{self.max_datapath_bits}."
            )
        if self.max_rounds < 1 or self.S < 1 or self.mem < 1:
            raise ValueError("max_rounds, S and mem must each be at least 1.")
        if self.code_finetune_epochs < 0:
            raise ValueError(
                f"code_finetune_epochs must be >= 0 (0: no progressive coding); got "
                f"{self.code_finetune_epochs}."
            )
        if self.code_groups is not None and self.code_groups < 1:
            raise ValueError(f"code_groups must be None or >= 1; got {self.code_groups}.")
        if self.code_finetune_lr is not None and not (self.code_finetune_lr > 0):
            raise ValueError(f"code_finetune_lr must be > 0; got {self.code_finetune_lr}.")
        if not (0 <= self.code_finetune_slack < 1):
            raise ValueError(
                f"code_finetune_slack is an accuracy fraction in [0, 1); got "
                f"{self.code_finetune_slack}."
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = {"skip": list(self.layers.skip), "overrides": dict(self.layers.overrides)}
        return d


def check_codable(model: nn.Module, config: LCCConfig) -> None:
    """Raise a ValueError naming the first layer with weights that the pipeline cannot code."""
    skip = config.layers.skip
    for name, module in model.named_modules():
        if any(p == name or re.fullmatch(p, name) for p in skip):
            continue
        own = list(module.parameters(recurse=False))
        if not own or isinstance(module, PER_CHANNEL_WEIGHTS + (CodedLinear, CodedConv2d)):
            continue
        why = None
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                why = f"a grouped convolution (groups={module.groups})"
            elif module.padding_mode != "zeros":
                why = f"a convolution with padding_mode={module.padding_mode!r}"
        elif not isinstance(module, nn.Linear):
            why = f"a {type(module).__name__}"
        if why is not None:
            raise ValueError(
                f"LCC cannot code layer {name!r}: it is {why}; the pipeline codes Linear and "
                f"ungrouped, zero-padded Conv2d layers. Skip it with "
                f"LCCConfig(layers=LayerSelection(skip=({name!r},))) to keep it in float."
            )
