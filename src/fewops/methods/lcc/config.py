"""Configuration of the LCC network pipeline, its named presets and the checks made before it runs.

:class:`LCCConfig` is made of small parts: the code of every layer (:class:`LCCCode`, the only
part per-layer overrides may change), the SQNR search (:class:`LCCSearch`), group-lasso pruning
(:class:`PruneSettings`), progressive coding (:class:`CodeFinetune`) and the training recipe
(:class:`~fewops.train.recipe.Recipe`, shared with every method). How a run uses the machine
(worker processes, torch threads, progress bars, the pruned-model cache) is not configuration:
those are keyword arguments of ``compress_``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass

from torch import nn

from fewops.codes.lcc.algorithms import ALGORITHMS as MATRIX_ALGORITHMS
from fewops.codes.lcc.algorithms import DEFAULT_ALGORITHM
from fewops.nn.api import LayerSelection
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.train.recipe import Recipe, check_count, check_positive

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


def _check_fraction(owner: str, name: str, value: object) -> None:
    """``value`` must be an accuracy fraction in [0, 1)."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < 1):
        raise ValueError(
            f"{owner}.{name} is an accuracy fraction in [0, 1) (0.005 = 0.5 points); got {value!r}."
        )


@dataclass(frozen=True)
class LCCCode:
    """How each layer is coded: the LCC algorithm, its parameters and the layer's SQNR."""

    algorithm: str = field(default=DEFAULT_ALGORITHM, metadata={"choices": ALGORITHMS})
    """LCC algorithm: dmp, rs, fs (fs-LCC), mixed, grow, chain or best"""
    S: int = 2
    """terms per wiring row (dmp, rs)"""
    mem: int = 8
    """beam width (rs)"""
    slice_width: int | None = None
    """columns per slice (none: about log2 of the rows)"""
    target_db: float | None = None
    """code every layer at this SQNR in dB, with no search and no data (none: search per layer)"""
    max_datapath_bits: int | None = 64
    """recode with grow a layer whose dmp/rs/mixed code needs a wider exact datapath for 8-bit
    inputs (none: keep it)"""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Unknown LCC algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}."
            )
        check_count("LCCCode", "S", self.S, 1)
        check_count("LCCCode", "mem", self.mem, 1)
        if self.slice_width is not None:
            check_count("LCCCode", "slice_width", self.slice_width, 1)
        if self.target_db is not None and not (
            isinstance(self.target_db, int | float) and 0 < self.target_db <= 200
        ):
            raise ValueError(f"LCCCode.target_db must be in (0, 200] dB; got {self.target_db!r}.")
        if self.max_datapath_bits is not None and not (
            isinstance(self.max_datapath_bits, int) and self.max_datapath_bits >= 8
        ):
            raise ValueError(
                f"LCCCode.max_datapath_bits must be None or at least 8 (the input width); got "
                f"{self.max_datapath_bits!r}."
            )


@dataclass(frozen=True)
class LCCSearch:
    """The per-layer SQNR search: a noise proxy first, then real codes raised until they pass."""

    tolerance: float = 0.005
    """accuracy loss allowed against the float model, as a fraction (0.005 = 0.5 points)"""
    db_min: float = 8.0
    """lowest SQNR in dB the search tries"""
    db_max: float = 40.0
    """highest SQNR in dB the search tries"""
    db_step: float = 2.0
    """SQNR step in dB of the search, and of each raise after a miss"""
    max_rounds: int = 3
    """codings of all layers (or of a progressive group), each db-step higher, before settling"""
    proxy_share: float = 0.6
    """share of the tolerance the noise-proxy search may use"""
    search_samples: int = 5000
    """training samples forming the search set (unless validation is given)"""

    def __post_init__(self) -> None:
        _check_fraction("LCCSearch", "tolerance", self.tolerance)
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool)
            for v in (self.db_min, self.db_max, self.db_step)
        ) or not (0 < self.db_min <= self.db_max <= 200 and self.db_step > 0):
            raise ValueError(
                f"LCCSearch needs 0 < db_min <= db_max <= 200 and db_step > 0; got "
                f"db_min={self.db_min!r}, db_max={self.db_max!r}, db_step={self.db_step!r}."
            )
        check_count("LCCSearch", "max_rounds", self.max_rounds, 1)
        if not (isinstance(self.proxy_share, int | float) and 0 < self.proxy_share <= 1):
            raise ValueError(f"LCCSearch.proxy_share must be in (0, 1]; got {self.proxy_share!r}.")
        check_count("LCCSearch", "search_samples", self.search_samples, 1)


@dataclass(frozen=True)
class PruneSettings:
    """Group-lasso pruning of whole input columns/channels before coding (off at lambda 0).

    It trains for ``train.epochs`` epochs with the config's recipe, removes the zero groups and
    fine-tunes for ``finetune_epochs`` epochs at a cosine-annealed rate."""

    prune_lambda: float = 0.0
    """group-lasso strength (0: no pruning)"""
    prune_layers: tuple[str, ...] | None = None
    """layers to prune, by name (none: every coded layer with more than one input group)"""
    finetune_epochs: int = 1
    """epochs of fine-tuning after the zero groups are removed"""
    prune_relative: bool = True
    """scale each layer's threshold by its RMS group norm, so lambda is a unitless rate (off: one
    threshold lr*lambda for all layers)"""

    def __post_init__(self) -> None:
        if not (
            isinstance(self.prune_lambda, int | float)
            and not isinstance(self.prune_lambda, bool)
            and math.isfinite(self.prune_lambda)
            and self.prune_lambda >= 0
        ):
            raise ValueError(
                f"PruneSettings.prune_lambda must be a finite number >= 0; got "
                f"{self.prune_lambda!r}."
            )
        check_count("PruneSettings", "finetune_epochs", self.finetune_epochs, 0)


@dataclass(frozen=True)
class CodeFinetune:
    """Progressive coding (needs data): the layers are coded in groups in model order, and the
    parameters still in float are fine-tuned after each group, absorbing its coding error."""

    code_finetune_epochs: int = 0
    """epochs of fine-tuning the float rest after each coded group (0: code all layers at once)"""
    code_groups: int | None = None
    """contiguous groups of layers coded together (none: one layer per group)"""
    code_finetune_lr: float | None = None
    """initial rate of the cosine-annealed fine-tuning (none: the recipe's lr)"""
    code_finetune_slack: float = 0.01
    """extra proxy accuracy loss (a fraction) allowed for a group that fine-tuning follows"""

    def __post_init__(self) -> None:
        if isinstance(self.code_finetune_epochs, bool) or not (
            isinstance(self.code_finetune_epochs, int) and self.code_finetune_epochs >= 0
        ):
            raise ValueError(
                f"CodeFinetune.code_finetune_epochs must be >= 0 (0: no progressive coding); "
                f"got {self.code_finetune_epochs!r}."
            )
        if self.code_groups is not None and not (
            isinstance(self.code_groups, int) and self.code_groups >= 1
        ):
            raise ValueError(
                f"CodeFinetune.code_groups must be None or >= 1; got {self.code_groups!r}."
            )
        check_positive("CodeFinetune", "code_finetune_lr", self.code_finetune_lr, optional=True)
        _check_fraction("CodeFinetune", "code_finetune_slack", self.code_finetune_slack)


def default_recipe() -> Recipe:
    """LCC's training recipe: 3 epochs of group-lasso training (when pruning) at lr 1e-3."""
    return Recipe(epochs=3)


@dataclass(frozen=True)
class LCCConfig:
    """Linear computation coding of a network, with optional pruning and column sharing.

    ``code.target_db`` codes every layer at that SQNR (no search, no data needed); None searches
    per-layer SQNRs in ``search.db_min..db_max`` keeping accuracy within ``search.tolerance`` of
    the float model (:class:`LCCSearch`). Pruning (:class:`PruneSettings`) and progressive coding
    (:class:`CodeFinetune`) train with ``train`` (its ``epochs`` are the group-lasso training's;
    its ``seed`` also seeds the search set, the noise proxy and the LCC algorithms). With
    ``share`` input columns are clustered (affinity propagation) at the layer's SQNR plus
    ``share_margin_db`` before LCC. ``fold_batchnorm`` folds a BatchNorm that alone reads a coded
    layer into it right before the layer is coded (:mod:`fewops.nn.fold`). ``validation=(x, y)``
    replaces the search set (``search.search_samples`` training samples).
    """

    code: LCCCode = field(default_factory=LCCCode)
    """the code of every layer (per-layer overrides change only this)"""
    search: LCCSearch = field(default_factory=LCCSearch)
    """the per-layer SQNR search"""
    prune: PruneSettings = field(default_factory=PruneSettings)
    """group-lasso pruning before coding"""
    progressive: CodeFinetune = field(default_factory=CodeFinetune)
    """progressive coding with fine-tuning between groups"""
    train: Recipe = field(default_factory=default_recipe)
    """the training recipe of pruning and fine-tuning (epochs: group-lasso training epochs)"""
    share: bool = True
    """cluster the input columns of each layer (affinity propagation) before LCC"""
    share_margin_db: float = 6.0
    """clusters are kept at the layer's SQNR plus this margin in dB"""
    fold_batchnorm: bool = True
    """fold a BatchNorm that alone reads a coded layer into it before coding"""
    csd_bits: int = 8
    """fixed-point width of the dense CSD counts the report compares against"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""
    validation: tuple | None = field(default=None, compare=False, repr=False)
    """search set (x, y) replacing the training samples (API only)"""

    def __post_init__(self) -> None:
        for name, kind in (
            ("code", LCCCode),
            ("search", LCCSearch),
            ("prune", PruneSettings),
            ("progressive", CodeFinetune),
            ("train", Recipe),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise ValueError(
                    f"LCCConfig.{name} must be a {kind.__name__}; got "
                    f"{type(value).__name__} {value!r}."
                )
        check_positive("LCCConfig", "share_margin_db", self.share_margin_db)
        check_count("LCCConfig", "csd_bits", self.csd_bits, 2)
        if self.validation is not None and not (
            isinstance(self.validation, tuple | list) and len(self.validation) == 2
        ):
            raise ValueError(
                f"LCCConfig.validation must be None or a pair (x, y); got "
                f"{type(self.validation).__name__}."
            )

    def to_dict(self) -> dict:
        """The settings as plain data (the validation set left out)."""
        d = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "validation":  # arrays: not settings, and maybe large
                d[f.name] = asdict(value) if is_dataclass(value) else value
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


# Named configurations: "default" is what `fewops compress` uses, "demo" what `fewops demo` does
# (the small MLP on digits: search, sharing, no pruning, a smaller search set), "mlp" the pruning
# preset of the 784-512-256-10 MLPs (docs/lcc_network.md; benchmarks/lcc_network.py starts there).
def mlp_digits_config() -> LCCConfig:
    """The measured recipe for the MLP on digits (benchmarks/results/defaults.md): greedy growth,
    group-lasso pruning at lambda 0.0875 for 10 epochs, 20 fine-tuning epochs, then progressive
    coding with 3 fine-tuning epochs per group: 4.5x fewer adds than CSD, no accuracy lost.
    (The MNIST preset's lambda 0.35 zeroes every input of layer 1 on 8x8 digits.)"""
    return LCCConfig(
        code=LCCCode(algorithm="grow"),
        prune=PruneSettings(prune_lambda=0.0875, finetune_epochs=20),
        progressive=CodeFinetune(code_finetune_epochs=3),
        train=Recipe(epochs=10),
    )


LCC_PRESETS = {
    "default": LCCConfig(),
    # dmp on the demo's MLP: 5,378 adds at the float model's 96.39%; grow (the default) gives
    # 3,923 adds but 95.83% (0.56 points below), so the demo keeps dmp (`fewops demo`, seed 0).
    "demo": LCCConfig(
        code=LCCCode(algorithm="dmp"), search=LCCSearch(tolerance=0.005, search_samples=1000)
    ),
    "mlp": LCCConfig(
        prune=PruneSettings(prune_lambda=0.35, finetune_epochs=20), train=Recipe(epochs=10)
    ),
    "mlp-digits": mlp_digits_config(),
}
# What `fewops compress --method lcc` runs per model ("model/data" or "model") without --preset.
LCC_FAMILY_DEFAULTS = {"mlp/digits": "mlp-digits", "mlp": "mlp"}
