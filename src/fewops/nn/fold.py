"""Fold inference-mode BatchNorm into the Linear/Conv2d that feeds it.

In hardware a BatchNorm after a coded layer is a per-channel multiply and add. Folding it into
the layer's weight (W' = diag(g) W, b' = g (b - mean) + beta, g = gamma / sqrt(var + eps))
before coding makes the coded layer compute the same thing with no multiplier left over, so the
counted adds are the whole cost. It uses the running statistics, i.e. the model's inference
behaviour; training afterwards sees no normalisation for the folded layers.

A pair is folded only when the BatchNorm reads nothing but that layer's output and the layer's
output goes nowhere else (found by tracing with :mod:`torch.fx`); anything else is left alone.
"""

from __future__ import annotations

import torch
from torch import nn

from fewops.nn.api import set_submodule
from fewops.nn.trace import module_graph, private_call

FOLDABLE_LAYERS = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def find_foldable(model: nn.Module) -> dict[str, str]:
    """Map layer name -> name of the BatchNorm that alone reads it (foldable pairs)."""
    mg = module_graph(model)
    if mg is None:
        return {}
    modules, calls = mg.modules, mg.calls
    pairs = {}
    for node in mg.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), NORMS):
            continue
        src = node.args[0] if node.args else None
        if not private_call(src, mg, FOLDABLE_LAYERS) or calls[node.target] != 1:
            continue
        layer = modules[src.target]
        if modules[node.target].num_features != layer.weight.shape[0]:
            continue
        pairs[src.target] = node.target
    return pairs


@torch.no_grad()
def fold_batchnorm_(model: nn.Module, layers=None) -> list[dict]:
    """Fold each foldable BatchNorm into its layer (only layers named in ``layers`` when given),
    replacing it by ``nn.Identity``. Returns what was folded, one dict per pair."""
    folded = []
    for layer_name, norm_name in find_foldable(model).items():
        if layers is not None and layer_name not in layers:
            continue
        layer = model.get_submodule(layer_name)
        norm = model.get_submodule(norm_name)
        if norm.running_mean is None or norm.running_var is None:
            raise ValueError(
                f"BatchNorm {norm_name!r} keeps no running statistics "
                "(track_running_stats=False), so it has no inference form to fold into "
                f"{layer_name!r}."
            )
        gain = torch.rsqrt(norm.running_var.double() + norm.eps)
        shift = -norm.running_mean.double() * gain
        if norm.affine:
            shift = shift * norm.weight.double() + norm.bias.double()
            gain = gain * norm.weight.double()
        weight = layer.weight.double()
        layer.weight.copy_((weight * gain.reshape(-1, *[1] * (weight.dim() - 1))).float())
        bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(gain)
        new_bias = (bias * gain + shift).to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)
        set_submodule(model, norm_name, nn.Identity())
        folded.append({"layer": layer_name, "batchnorm": norm_name})
    return folded
