"""fewops: compress neural networks so inference needs far fewer arithmetic operations.

The public API, importable from the top level::

    import fewops
    result = fewops.compress_(model, fewops.SSTConfig(), data=fewops.load_data("digits"))

Names are resolved lazily (PEP 562), so ``import fewops`` does not import torch: a user who only
codes matrices (``fewops.decompose``) or simulates graphs never pays for it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # coding a network in place, and its result
    "compress_": "fewops.nn.api",
    "CompressResult": "fewops.nn.api",
    "MethodOutcome": "fewops.nn.api",
    "LayerSelection": "fewops.nn.api",
    "Recipe": "fewops.train.recipe",
    # method configs
    "DenseConfig": "fewops.methods.baselines",
    "DenseCode": "fewops.methods.baselines",
    "CSDConfig": "fewops.methods.baselines",
    "CSDCode": "fewops.methods.baselines",
    "SSTConfig": "fewops.methods.sst",
    "SSTCodeSpec": "fewops.methods.sst",
    "LCCConfig": "fewops.methods.lcc",
    "LCCCode": "fewops.methods.lcc.config",
    "PolyConfig": "fewops.methods.wacr",
    "PolyCode": "fewops.methods.wacr",
    "METHODS": "fewops.methods.registry",
    # codes of single matrices
    "decompose": "fewops.codes.lcc",
    "SSTCode": "fewops.codes.sst",
    # the graph and its readers
    "Graph": "fewops.graph",
    "count_graph": "fewops.cost",
    "simulate": "fewops.sim",
    "write_verilog": "fewops.hw",
    # models, data, training, reports
    "build_model": "fewops.models",
    "load_data": "fewops.data",
    "fit": "fewops.train.fit",
    "run_method": "fewops.report.pipeline",
}
# names whose attribute differs from the public name
_ATTRIBUTE = {"simulate": "evaluate", "build_model": "build", "load_data": "load"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fewops' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _ATTRIBUTE.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
