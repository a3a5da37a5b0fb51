"""WACR of whole networks: config, polynomial layers, retraining and the ``compress_`` handler.

Importing the package registers the handler.
"""

from fewops.methods.wacr.poly import WACR_PRESETS, PolyConfig

__all__ = ["WACR_PRESETS", "PolyConfig"]
