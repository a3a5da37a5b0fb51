"""LCC of whole networks: config, pruning, search, staged coding and the ``compress_`` handler.

Importing the package registers the handler, so ``compress_(model, LCCConfig())`` works as soon
as the config can be named.
"""

from fewops.methods.lcc import handler  # noqa: F401  (importing it registers the handler)
from fewops.methods.lcc.config import (
    LCC_PRESETS,
    CodeFinetune,
    LCCCode,
    LCCConfig,
    LCCSearch,
    PruneSettings,
)

__all__ = ["LCC_PRESETS", "CodeFinetune", "LCCCode", "LCCConfig", "LCCSearch", "PruneSettings"]
