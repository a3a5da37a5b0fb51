"""WACR of whole networks: config and presets (:mod:`~fewops.methods.wacr.config`), polynomial
layers (:mod:`~fewops.methods.wacr.layers`, :mod:`~fewops.methods.wacr.tensor`), retraining
(:mod:`~fewops.methods.wacr.retrain`) and the ``compress_`` handler
(:mod:`~fewops.methods.wacr.handler`).

Importing the package registers the handler.
"""

from fewops.methods.wacr import handler as _handler  # noqa: F401  (registers the handler)
from fewops.methods.wacr.config import (
    MNIST_CNN_TENSOR_BLOCKS_Q,
    WACR_PRESETS,
    PolyCode,
    PolyConfig,
    demo_config,
)

__all__ = ["MNIST_CNN_TENSOR_BLOCKS_Q", "WACR_PRESETS", "PolyCode", "PolyConfig", "demo_config"]
