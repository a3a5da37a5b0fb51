"""The module graph of a model, as :mod:`torch.fx` sees it (for pruning and folding)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn


@dataclass
class ModuleGraph:
    """``graph``: the traced graph; ``modules``: name -> module; ``calls``: how often each
    module is called (a module called twice cannot be reshaped or folded for one use)."""

    graph: fx.Graph
    modules: dict[str, nn.Module]
    calls: dict[str, int]


def module_graph(model: nn.Module) -> ModuleGraph | None:
    """Trace ``model``; None when it cannot be traced (callers then leave it alone)."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure just means "no structural edits"
        return None
    calls: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return ModuleGraph(traced.graph, dict(model.named_modules()), calls)


def private_call(node, mg: ModuleGraph, types: tuple) -> bool:
    """Whether ``node`` calls a module of one of ``types`` that is called only there and whose
    output only one node reads (so it can be reshaped or folded for that one use)."""
    return (
        isinstance(node, fx.Node)
        and node.op == "call_module"
        and isinstance(mg.modules.get(node.target), types)
        and len(node.users) == 1
        and mg.calls[node.target] == 1
    )
