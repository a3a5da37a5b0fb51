"""One in-place entry point, ``compress_(model, config)``, dispatching on the config's type.

Each method registers a handler for its config class in :data:`HANDLERS` (a plain dict, as in
torchao). Handlers receive the model, the config and the list of layers to code (after per-layer
overrides and skips), replace those layers in place, and return what they learnt on the way (a
training history, a per-stage report) as a :class:`MethodOutcome` or None.

Every config keeps what values a code allows in its ``code`` field (a dataclass) apart from how
training gets there (``train``, a :class:`fewops.train.recipe.Recipe`). Per-layer overrides may
change only the code part: a layer trains with the whole model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from torch import nn

from fewops.nn.coded import CodedConv2d, CodedLinear

CODABLE = (nn.Linear, nn.Conv2d)
HANDLERS: dict[type, Callable[..., Any]] = {}


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a config codes: ``skip`` and ``overrides`` keys are names or regexes.

    ``overrides`` maps a layer name (or a regex matched in full) to a dict of the config's code
    fields that differ for that layer, e.g. ``{"0": {"bits": 12}}``. Keys that are not fields of
    the code (training settings included) are refused.
    """

    skip: tuple[str, ...] = ()
    overrides: dict[str, dict] = field(default_factory=dict)


@dataclass
class MethodOutcome:
    """What a handler reports besides the coded layers: the training ``history`` (epoch records
    by stage name, e.g. ``{"retrain": {...}}``) and a method-specific JSON-able ``report``."""

    history: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompressResult:
    """What :func:`compress_` returns: the model (coded in place, the same object), the config,
    the coded layers' names, and the method's training history and report."""

    model: nn.Module
    config: Any
    layers: list[str]
    history: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


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
        for pattern, changes in selection.overrides.items():
            if _matches(pattern, name):
                try:
                    code = replace(effective.code, **changes)
                except (ValueError, TypeError) as exc:  # the code's own check, named by layer
                    raise type(exc)(f"Override for layer {name!r}: {exc}") from exc
                effective = replace(effective, code=code)
        targets.append((name, module, effective))
    return targets


def check_overrides(config) -> None:
    """Refuse override keys that are not fields of ``config.code`` (named with the layer)."""
    selection: LayerSelection = getattr(config, "layers", LayerSelection())
    if not selection.overrides:
        return
    code = getattr(config, "code", None)
    if not is_dataclass(code):
        raise TypeError(f"{type(config).__name__} has no code part that overrides could change.")
    allowed = sorted(f.name for f in fields(code))
    for pattern, changes in selection.overrides.items():
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ValueError(
                f"Override for layer {pattern!r} sets {', '.join(map(repr, unknown))}, which "
                f"{'is not a field' if len(unknown) == 1 else 'are not fields'} of "
                f"{type(code).__name__} (per-layer overrides may set only: {', '.join(allowed)})."
            )


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def compress_(model: nn.Module, config, **kwargs) -> CompressResult:
    """Code the layers of ``model`` in place with the method that ``config`` names.

    Extra keyword arguments go to the method's handler (e.g. ``data=`` for methods that retrain:
    ``(x, y)`` arrays or tensors, a torch Dataset or DataLoader, or a fewops data set; see
    :func:`fewops.data.adapt.as_dataset`).
    Returns a :class:`CompressResult` (its ``model`` is the same object, now coded).
    """
    handler = HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(sorted(t.__name__ for t in HANDLERS))
        raise TypeError(
            f"No compression method for {type(config).__name__}; known configs: {known}."
        )
    check_overrides(config)
    targets = target_layers(model, config)
    if not targets:
        raise ValueError(
            "The model has no Linear or Conv2d layer left to code after skips; nothing to do."
        )
    outcome = handler(model, config, targets, **kwargs) or MethodOutcome()
    return CompressResult(
        model=model,
        config=config,
        layers=[name for name, _, _ in targets],
        history=outcome.history,
        report=outcome.report,
    )


def coded_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every coded layer in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CodedLinear | CodedConv2d)]
