"""Post-training baselines: dense MAC and dense fixed point in CSD."""

from __future__ import annotations

from dataclasses import dataclass, field

from fewops.codes import csd, dense
from fewops.nn.api import LayerSelection, register, set_submodule
from fewops.nn.coded import coded_like, layer_matrix
from fewops.nn.fold import fold_batchnorm_
from fewops.train.recipe import check_count, check_positive


@dataclass(frozen=True)
class DenseCode:
    """Dense fixed point: one ``bits``-bit multiplier per weight."""

    bits: int = 16
    """fixed-point weight width in bits"""

    def __post_init__(self) -> None:
        check_count("DenseCode", "bits", self.bits, 2)


@dataclass(frozen=True)
class DenseConfig:
    """Dense MAC baseline. With ``fold_batchnorm`` a BatchNorm that alone reads a coded layer is
    folded into it first (:mod:`fewops.nn.fold`), as the hardware would, so no per-channel
    multiplier is left out."""

    code: DenseCode = field(default_factory=DenseCode)
    """the weight code"""
    fold_batchnorm: bool = True
    """fold a BatchNorm that alone reads a coded layer into it before coding"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""


@dataclass(frozen=True)
class CSDCode:
    """Dense fixed point in canonical signed digits: ``bits`` bits, or the smallest width reaching
    ``target_db`` SQNR (exactly one of the two)."""

    bits: int | None = 8
    """fixed-point weight width in bits (none: chosen by target-db)"""
    target_db: float | None = None
    """code each layer at the smallest width reaching this SQNR in dB (needs bits none)"""

    def __post_init__(self) -> None:
        if (self.bits is None) == (self.target_db is None):
            raise ValueError(
                f"CSDCode needs exactly one of bits and target_db; got bits={self.bits!r}, "
                f"target_db={self.target_db!r}."
            )
        if self.bits is not None:
            check_count("CSDCode", "bits", self.bits, 2)
        else:
            check_positive("CSDCode", "target_db", self.target_db)


@dataclass(frozen=True)
class CSDConfig:
    """Dense fixed point in CSD (BatchNorm folded first, as in :class:`DenseConfig`)."""

    code: CSDCode = field(default_factory=CSDCode)
    """the weight code"""
    fold_batchnorm: bool = True
    """fold a BatchNorm that alone reads a coded layer into it before coding"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""


def _fold(model, config, targets) -> None:
    if config.fold_batchnorm:
        fold_batchnorm_(model, [name for name, _, _ in targets])


@register(DenseConfig)
def _dense(model, config, targets, **_):
    _fold(model, config, targets)
    for name, module, cfg in targets:
        coded = dense.encode(layer_matrix(module).numpy(), cfg.code.bits)
        set_submodule(model, name, coded_like(module, coded))


@register(CSDConfig)
def _csd(model, config, targets, **_):
    _fold(model, config, targets)
    for name, module, cfg in targets:
        w = layer_matrix(module).numpy()
        code = cfg.code
        bits = code.bits if code.bits is not None else csd.bits_for_sqnr(w, code.target_db)
        set_submodule(model, name, coded_like(module, csd.encode(w, bits)))


# Named configurations: "default" is what `fewops compress` uses, "demo" what `fewops demo` does.
DENSE_PRESETS = {"default": DenseConfig(), "demo": DenseConfig()}
CSD_PRESETS = {"default": CSDConfig(), "demo": CSDConfig()}
