"""The one method registry: each method's name, config type and named presets.

``compress_`` dispatches on the config's type (:data:`fewops.nn.api.HANDLERS`); this table is
what the CLI, the demo and the reports use to go from a name to a config. Dense and CSD are
ordinary entries. Every method has a ``default`` preset and a ``demo`` preset (what ``fewops
demo`` runs on its small MLP). ``family_defaults`` maps a model family (``"mnist-cnn"``) or a
model on a data set (``"mlp/digits"``) to the preset measured best for it: ``fewops compress``
with no ``--preset`` runs :meth:`Method.config_for` of its model and data, which falls back to
``default`` for any other model (your own included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fewops.methods.baselines import CSD_PRESETS, DENSE_PRESETS, CSDConfig, DenseConfig
from fewops.methods.lcc import LCC_PRESETS, LCCConfig
from fewops.methods.lcc.config import LCC_FAMILY_DEFAULTS
from fewops.methods.sst import SST_PRESETS, SSTConfig
from fewops.methods.wacr import WACR_PRESETS, PolyConfig
from fewops.methods.wacr.config import WACR_FALLBACK_NOTE, WACR_FAMILY_DEFAULTS


@dataclass(frozen=True)
class Method:
    """A method by name: its config type, its presets and a one-line summary."""

    name: str
    config_type: type
    presets: Mapping[str, Any]
    summary: str
    baseline: bool = False
    family_defaults: Mapping[str, str] = field(default_factory=dict)
    fallback_note: str = ""
    """what the CLI says when no family default fits the model (empty: nothing)"""

    def config(self, preset: str = "default") -> Any:
        """The preset's config; an unknown preset is a ValueError naming the known ones."""
        if preset not in self.presets:
            raise ValueError(
                f"Method {self.name!r} has no preset {preset!r}; its presets: "
                f"{', '.join(self.presets)}."
            )
        return self.presets[preset]

    def preset_for(self, model: str | None = None, data: str | None = None) -> str:
        """The preset measured best for ``model`` on ``data`` (key ``"model/data"``, then the
        model family ``"model"``), else ``"default"``."""
        for key in (f"{model}/{data}", f"{model}"):
            if model is not None and key in self.family_defaults:
                return self.family_defaults[key]
        return "default"

    def config_for(self, model: str | None = None, data: str | None = None) -> Any:
        """The config ``fewops compress --method NAME --model MODEL --data DATA`` runs with."""
        return self.config(self.preset_for(model, data))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("dense", DenseConfig, DENSE_PRESETS, "dense fixed-point MAC", baseline=True),
        Method("csd", CSDConfig, CSD_PRESETS, "dense fixed point in CSD", baseline=True),
        Method("sst", SSTConfig, SST_PRESETS, "structured sparse ternary (n, k)"),
        Method(
            "lcc", LCCConfig, LCC_PRESETS, "linear computation coding", False, LCC_FAMILY_DEFAULTS
        ),
        Method(
            "wacr",
            PolyConfig,
            WACR_PRESETS,
            "polynomial weights, computation reuse",
            False,
            WACR_FAMILY_DEFAULTS,
            WACR_FALLBACK_NOTE,
        ),
    )
}


def method(name: str) -> Method:
    """The method called ``name``; a ValueError naming the known methods otherwise."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; known methods: {', '.join(METHODS)}.")
    return METHODS[name]


def method_of(config: Any) -> Method:
    """The method whose config type ``config`` is."""
    for entry in METHODS.values():
        if type(config) is entry.config_type:
            return entry
    raise TypeError(f"{type(config).__name__} is not the config of any method.")


def demo_config(name: str) -> Any:
    """The config ``fewops demo`` runs for method ``name``."""
    return method(name).config("demo")
