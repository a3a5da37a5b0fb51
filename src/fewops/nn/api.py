"""One in-place entry point, ``compress_(model, config)``, dispatching on the config's type.

Each method registers a handler for its config class in :data:`HANDLERS` (a plain dict, as in
torchao). Handlers receive the model, the config and the list of layers to code (after per-layer
overrides and skips) and replace those layers in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from fewops.nn.coded import CodedConv2d, CodedLinear

CODABLE = (nn.Linear, nn.Conv2d)
HANDLERS: dict[type, Callable[..., Any]] = {}


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a config codes: ``skip`` and ``overrides`` keys are names or regexes.

    ``overrides`` maps a layer name (or a regex matched in full) to a dict of config fields that
    differ for that layer, e.g. ``{"0": {"bits": 12}}``.
    """

    skip: tuple[str, ...] = ()
    overrides: dict[str, dict] = field(default_factory=dict)


def register(config_type: type) -> Callable:
    def wrap(handler: Callable) -> Callable:
        HANDLERS[config_type] = handler
        return handler

    return wrap


def _matches(pattern: str, name: str) -> bool:
    return pattern == name or re.fullmatch(pattern, name) is not None


def target_layers(model: nn.Module, config) -> list[tuple[str, nn.Module, Any]]:
    """(name, module, effective config) for each Linear/Conv2d to code, in model order."""
    selection: LayerSelection = getattr(config, "layers", LayerSelection())
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, CODABLE) or isinstance(module, CodedLinear | CodedConv2d):
            continue
        if any(_matches(p, name) for p in selection.skip):
            continue
        effective = config
        for pattern, fields in selection.overrides.items():
            if _matches(pattern, name):
                effective = replace(effective, **fields)
        targets.append((name, module, effective))
    return targets


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def compress_(model: nn.Module, config, **kwargs) -> nn.Module:
    """Code the layers of ``model`` in place with the method that ``config`` names.

    Extra keyword arguments go to the method's handler (e.g. ``data=`` for methods that retrain).
    Returns the same model for chaining.
    """
    handler = HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(sorted(t.__name__ for t in HANDLERS))
        raise TypeError(
            f"No compression method for {type(config).__name__}; known configs: {known}."
        )
    targets = target_layers(model, config)
    if not targets:
        raise ValueError(
            "The model has no Linear or Conv2d layer left to code after skips; nothing to do."
        )
    handler(model, config, targets, **kwargs)
    return model


def coded_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every coded layer in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CodedLinear | CodedConv2d)]
