"""Post-training baselines: dense MAC and dense fixed point in CSD."""

from __future__ import annotations

from dataclasses import dataclass, field

from fewops.codes import csd, dense
from fewops.nn.api import LayerSelection, register, set_submodule
from fewops.nn.coded import coded_like, layer_matrix
from fewops.nn.fold import fold_batchnorm_


@dataclass(frozen=True)
class DenseConfig:
    """Dense MAC: ``bits``-bit fixed-point weights, one multiplier per weight. With
    ``fold_batchnorm`` a BatchNorm that alone reads a coded layer is folded into it first
    (:mod:`fewops.nn.fold`), as the hardware would, so no per-channel multiplier is left out."""

    bits: int = 16
    fold_batchnorm: bool = True
    layers: LayerSelection = field(default_factory=LayerSelection)


@dataclass(frozen=True)
class CSDConfig:
    """Dense fixed point in CSD at ``bits`` bits, or the smallest width reaching ``target_db``
    (BatchNorm folded first, as in :class:`DenseConfig`)."""

    bits: int | None = 8
    target_db: float | None = None
    fold_batchnorm: bool = True
    layers: LayerSelection = field(default_factory=LayerSelection)

    def __post_init__(self) -> None:
        if (self.bits is None) == (self.target_db is None):
            raise ValueError("CSDConfig needs exactly one of bits and target_db.")


def _fold(model, config, targets) -> None:
    if config.fold_batchnorm:
        fold_batchnorm_(model, [name for name, _, _ in targets])


@register(DenseConfig)
def _dense(model, config, targets, **_):
    _fold(model, config, targets)
    for name, module, cfg in targets:
        coded = dense.encode(layer_matrix(module).numpy(), cfg.bits)
        set_submodule(model, name, coded_like(module, coded))


@register(CSDConfig)
def _csd(model, config, targets, **_):
    _fold(model, config, targets)
    for name, module, cfg in targets:
        w = layer_matrix(module).numpy()
        bits = cfg.bits if cfg.bits is not None else csd.bits_for_sqnr(w, cfg.target_db)
        set_submodule(model, name, coded_like(module, csd.encode(w, bits)))


def add_cli_args(parser) -> None:
    parser.add_argument(
        "--bits", type=int, default=None, help="fixed-point weight width (dense, csd)"
    )
    parser.add_argument(
        "--target-db", type=float, default=None, help="csd: smallest width reaching this SQNR"
    )


def config_from_args(args, method: str = "csd"):
    if method == "dense":
        return DenseConfig(bits=args.bits or 16)
    if args.target_db is not None:
        return CSDConfig(bits=None, target_db=args.target_db)
    return CSDConfig(bits=args.bits or 8)


def demo_config(method: str = "csd"):
    return DenseConfig(bits=16) if method == "dense" else CSDConfig(bits=8)
