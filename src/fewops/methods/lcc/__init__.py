"""LCC of whole networks: config, pruning, search, staged coding and the ``compress_`` handler.

Importing the package registers the handler, so ``compress_(model, LCCConfig())`` works as soon
as the config can be named.
"""

from fewops.methods.lcc.config import LCCConfig
from fewops.methods.lcc.handler import LCC_PRESETS

__all__ = ["LCC_PRESETS", "LCCConfig"]
