"""WACR settings: the code (:class:`PolyCode`), the training recipe, and the named presets.

A :class:`PolyConfig` keeps what values the weights may take (``code``, the only part per-layer
overrides may change) apart from how training gets them there (``train``, the shared
:class:`~fewops.train.recipe.Recipe`) and from WACR's own ways of pulling a float model onto
its family (``mode``, ``init``, ``precondition``, QAT, restarts, augmentation, dropout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fewops.codes import poly
from fewops.nn.api import LayerSelection
from fewops.train.recipe import Recipe, check_count, check_positive

MODES = ("project", "reparam")
INITS = ("float", "scratch")


@dataclass(frozen=True)
class PolyCode:
    """The polynomial family of a layer's weights, and its coefficient width.

    A 1-D family: degree-``degree`` polynomials on intervals of ``interval`` positions along
    ``axis`` (see :data:`fewops.codes.poly.AXES`; None = the whole axis). A tensor-product
    family (:mod:`fewops.codes.poly_tensor`): ``in_factors`` (one (interval, degree) or None
    per dimension of ``in_shape``, the fan-in's shape, default a conv's (C, KH, KW) or a dense
    layer's (I,)) and ``out_factor`` replace axis/interval/degree. ``bias_degree`` (1 or 2)
    makes the bias a polynomial of the unit index (a 1-D family then trains and codes as its
    tensor-product equivalent).
    """

    axis: str = field(default="fan_in", metadata={"choices": poly.AXES})
    """axis the polynomials run along"""
    interval: int | None = None
    """interval length along the axis (none: the whole axis)"""
    degree: int = field(default=1, metadata={"choices": poly.DEGREES})
    """polynomial degree"""
    coef_bits: int = 8
    """coefficient width in bits"""
    in_factors: tuple | None = None
    """tensor family: one [interval, degree] or null per fan-in dimension (JSON)"""
    out_factor: tuple | None = None
    """tensor family: [interval, degree] along the output units, or none (units free)"""
    in_shape: tuple | None = None
    """tensor family: shape the fan-in is read as (none: a conv's [C, KH, KW], a dense [I])"""
    bias_degree: int | None = None
    """degree of a polynomial bias over the unit index (none: one free bias per unit)"""

    def __post_init__(self) -> None:
        poly.check_axis(self.axis)
        if self.interval is not None and (
            isinstance(self.interval, bool)
            or not isinstance(self.interval, int)
            or self.interval < 2
        ):
            raise ValueError(
                f"Interval length must be an integer of at least 2, or None for the whole axis; "
                f"got {self.interval!r}."
            )
        poly.check_degree(self.degree)
        poly.check_coef_bits(self.coef_bits)
        if self.bias_degree is not None:
            poly.check_degree(self.bias_degree)
        for name in ("in_factors", "out_factor", "in_shape"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                raise ValueError(
                    f"PolyCode.{name} must be a tuple or None; got {value!r} "
                    f"({type(value).__name__})."
                )


@dataclass(frozen=True)
class PolyConfig:
    """WACR: weights coded by :class:`PolyCode`. With data and ``train.epochs`` > 0 the model
    is retrained onto the family first, ``mode`` "project" (projected gradient on the ordinary
    layers) or "reparam" (the polynomial coefficients are the parameters).

    ``init="scratch"`` (reparam only) retrains from random coefficients scaled on a training
    batch instead of from the projection of the float weights. ``precondition`` (reparam, tensor
    layers) learns the coefficients against moments scaled to unit RMS on a training batch: the
    same family and weights, far better conditioned for Adam (:mod:`fewops.methods.wacr.tensor`).
    ``qat_epochs`` (reparam, tensor layers) more epochs with the coefficients rounded to their
    ``coef_bits`` grid in the forward pass (straight-through gradients), so the weights end on
    the grid the encoder stores exactly. ``restarts`` retrains from seeds ``seed, seed + 1, ...``
    and keeps the run with the lowest final training loss (training data only). ``augment_shift``
    (image data) moves every training image by up to that many pixels in retraining and QAT:
    the tiny coded networks generalise worse than their float models (benchmarks/results/wacr.md,
    seventh pass). ``dropout`` (None keeps the model's own rates) sets every Dropout's rate while
    retraining; each gets its own back afterwards.
    """

    code: PolyCode = field(default_factory=PolyCode)
    """the polynomial family and coefficient width"""
    train: Recipe = field(default_factory=Recipe)
    """the retraining recipe (epochs 0: code the float weights as they are)"""
    mode: str = field(default="project", metadata={"choices": MODES})
    """retraining: project the weights after each step, or learn the coefficients (reparam)"""
    init: str = field(default="float", metadata={"choices": INITS})
    """reparam: start from the projected float weights or from scaled random coefficients"""
    precondition: bool = True
    """reparam: learn tensor-family coefficients against moments scaled to unit RMS"""
    qat_epochs: int = 0
    """reparam: epochs after retraining with the coefficients on their coef-bits grid"""
    qat_lr: float | None = None
    """learning rate of the QAT epochs (none: lr / 10)"""
    restarts: int = 1
    """retrain from this many seeds and keep the lowest final training loss"""
    augment_shift: int = 0
    """retraining: move each training image by up to this many pixels"""
    dropout: float | None = None
    """dropout rate while retraining (none: the model's own rates)"""
    layers: LayerSelection = field(default_factory=LayerSelection)
    """layers to skip, and per-layer changes of the code"""

    def __post_init__(self) -> None:
        if not isinstance(self.code, PolyCode):
            raise ValueError(f"PolyConfig.code must be a PolyCode; got {type(self.code).__name__}.")
        if not isinstance(self.train, Recipe):
            raise ValueError(f"PolyConfig.train must be a Recipe; got {type(self.train).__name__}.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown training mode {self.mode!r}; use 'project' or 'reparam'.")
        if self.init not in INITS:
            raise ValueError(f"Unknown init {self.init!r}; use 'float' or 'scratch'.")
        if self.init == "scratch" and self.mode != "reparam":
            raise ValueError(
                f"PolyConfig.init='scratch' needs mode='reparam' (it draws the coefficients); "
                f"got mode={self.mode!r}."
            )
        if not isinstance(self.precondition, bool):
            raise ValueError(
                f"PolyConfig.precondition must be True or False; got {self.precondition!r}."
            )
        check_count("PolyConfig", "qat_epochs", self.qat_epochs, 0)
        if self.qat_epochs and self.mode != "reparam":
            raise ValueError(
                f"PolyConfig.qat_epochs={self.qat_epochs} needs mode='reparam' (it trains the "
                f"coefficients); got mode={self.mode!r}."
            )
        check_positive("PolyConfig", "qat_lr", self.qat_lr, optional=True)
        check_count("PolyConfig", "restarts", self.restarts, 1)
        check_count("PolyConfig", "augment_shift", self.augment_shift, 0)
        if self.dropout is not None and not (
            isinstance(self.dropout, int | float)
            and not isinstance(self.dropout, bool)
            and 0 <= self.dropout < 1
        ):
            raise ValueError(
                f"PolyConfig.dropout must be None or a rate in [0, 1); got {self.dropout!r}."
            )


def demo_config() -> PolyConfig:
    """WACR for ``fewops demo`` (an MLP 64-64-32-10 on 8x8 digits): the first layer quadratic
    along image rows and columns in 4 x 4 blocks (36 moments) with 16 features in linear
    intervals of 8 units, the second quadratic over runs of 8 inputs with 8 features, the last
    linear over runs of 8; 40 epochs from scaled random coefficients. 980 stored numbers
    (the 1-D quadratics over runs of 8 of earlier versions: 2,539, no more accurate)."""
    return PolyConfig(
        train=Recipe(epochs=40, lr=1e-2, batch_size=32),
        mode="reparam",
        init="scratch",
        layers=LayerSelection(
            overrides={
                "1": {"in_shape": (8, 8), "in_factors": ((4, 2), (4, 2)), "out_factor": (8, 1)},
                "3": {"in_factors": ((8, 2),), "out_factor": (8, 1)},
                "5": {"axis": "fan_in", "interval": 8, "degree": 1},
            }
        ),
    )


# The Keras MNIST CNN's layers (benchmarks/wacr.py, preset tensor-blocks-q; docs/wacr.md): 0 conv
# 1->32 3x3, 2 conv 32->64 3x3, 7 dense 9216->128 read as a 12x12 conv over 64 channels, 10 dense
# 128->10. 896 coefficients + 19 bias coefficients + 45 step exponents = 960 stored numbers.
# docs/wacr-tensor-blocks-q.json holds the same mapping for --layer-overrides.
MNIST_CNN_TENSOR_BLOCKS_Q = {
    "0": {"in_shape": (9,), "in_factors": ((None, 2),), "bias_degree": 2},
    "2": {"in_factors": ((None, 1), None, None), "out_factor": (16, 1), "bias_degree": 2},
    "7": {
        "in_shape": (64, 12, 12),
        "in_factors": ((None, 1), (6, 2), (6, 1)),
        "out_factor": (32, 2),
        "bias_degree": 2,
    },
    "10": {"axis": "fan_in", "interval": 32, "degree": 1},
}


def mnist_cnn_tensor_blocks_q() -> PolyConfig:
    """The benchmark's best recipe for the Keras MNIST CNN (>= 1211x, docs/wacr.md): the
    tensor-blocks-q families retrained from scratch for 80 epochs (Adam 2e-2, cosine, batch 64,
    no dropout, shifts of 1 pixel), then 5 QAT epochs at lr / 10."""
    return PolyConfig(
        train=Recipe(epochs=80, lr=2e-2, batch_size=64, lr_schedule="cosine"),
        mode="reparam",
        init="scratch",
        qat_epochs=5,
        augment_shift=1,
        dropout=0.0,
        layers=LayerSelection(overrides=MNIST_CNN_TENSOR_BLOCKS_Q),
    )


# Named configurations: "default" is what `fewops compress` uses, "demo" what `fewops demo` does.
WACR_PRESETS = {
    "default": PolyConfig(),
    "demo": demo_config(),
    "mnist-cnn-tensor-blocks-q": mnist_cnn_tensor_blocks_q(),
    # The demo's families fit any MLP on 8x8 digits whose hidden sizes are multiples of 8
    # (the CLI's 64-512-256-10: 96.94% against 94.72% float, 9.5x fewer stored numbers).
    "mlp-digits": demo_config(),
}
# What `fewops compress --method wacr` runs per model ("model/data" or "model") without --preset.
WACR_FAMILY_DEFAULTS = {
    "mnist-cnn": "mnist-cnn-tensor-blocks-q",
    "mnist-cnn/mnist": "mnist-cnn-tensor-blocks-q",
    "mlp/digits": "mlp-digits",
}
# Said by `fewops compress` when no measured preset fits the model.
WACR_FALLBACK_NOTE = (
    "WACR has no measured preset for this model: the generic default codes the float weights "
    "along fan-in without retraining, which scored chance on the MLP (10%). Design the layer "
    "families (--layer-overrides, docs/wacr.md) and retrain (--epochs, --mode reparam)."
)
