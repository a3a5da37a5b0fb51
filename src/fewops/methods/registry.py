"""The methods a report can show, by name, each from the module that implements it.

A method module provides ``add_cli_args(parser)``, ``config_from_args(args)`` and
``demo_config()``. Modules are imported lazily so that a method whose issue has not landed yet
simply does not appear.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHOD_MODULES = {
    "dense": "fewops.methods.baselines",
    "csd": "fewops.methods.baselines",
    "sst": "fewops.methods.sst",
    "lcc": "fewops.methods.lcc.handler",
    "wacr": "fewops.methods.wacr.poly",
}


def method_module(name: str) -> ModuleType:
    if name not in METHOD_MODULES:
        raise ValueError(f"Unknown method {name!r}; known methods: {', '.join(METHOD_MODULES)}.")
    try:
        return importlib.import_module(METHOD_MODULES[name])
    except ModuleNotFoundError as exc:
        raise ValueError(f"Method {name!r} is not available in this build ({exc}).") from exc


def available_methods() -> list[str]:
    names = []
    for name in METHOD_MODULES:
        try:
            module = method_module(name)
        except ValueError:
            continue
        if hasattr(module, "demo_config"):
            names.append(name)
    return names


def demo_config(name: str):
    module = method_module(name)
    if name in ("dense", "csd"):
        return module.demo_config(name)
    return module.demo_config()
