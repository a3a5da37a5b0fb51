"""The ``compress_`` handler of :class:`PolyConfig`: retrain (with data and ``train.epochs`` >
0), then code every targeted layer.

The final weights are coded by :func:`fewops.codes.poly.encode` (exact least squares, then
coefficient quantization with the fit in fixed point), or by
:func:`fewops.codes.poly_tensor.encode` for tensor families and polynomial biases, and the
layers become ``CodedLinear`` / ``CodedConv2d``.
"""

from __future__ import annotations

import torch

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.data.adapt import as_dataset
from fewops.methods.sst import no_data_message
from fewops.methods.wacr import tensor as npt
from fewops.methods.wacr.config import PolyConfig
from fewops.methods.wacr.layers import layer_layout
from fewops.methods.wacr.retrain import retrain_
from fewops.nn.api import MethodOutcome, register, set_submodule
from fewops.nn.coded import coded_like


def outcome_of(history: dict) -> MethodOutcome:
    """The retraining history by stage (``retrain``, and ``qat`` when it ran); the restarts'
    seeds and final losses go in the report."""
    history = dict(history)
    qat = history.pop("qat", None)
    restarts = history.pop("restarts", None)
    stages = {"retrain": history}
    if qat is not None:
        stages["qat"] = qat
    return MethodOutcome(history=stages, report={"restarts": restarts} if restarts else {})


@register(PolyConfig)
def code_poly_layers(
    model, config: PolyConfig, targets, data=None, progress: bool = False, **fit_kwargs
) -> MethodOutcome:
    """Retrain ``model`` onto its families when there are data and epochs, then replace each
    target by its coded layer. ``fit_kwargs`` go to :func:`fewops.train.fit.fit`."""
    for _, module, cfg in targets:  # check every layer's axis and interval before any training
        layer_layout(module, cfg.code)
    outcome = MethodOutcome()
    if data is None and config.train.epochs > 0:
        raise ValueError(no_data_message("WACR", "polynomial families", config.train.epochs))
    if data is not None and config.train.epochs > 0:
        data = as_dataset(data)
        outcome = outcome_of(retrain_(model, config, data, progress=progress, **fit_kwargs))
    for name, module, cfg in targets:
        code = cfg.code
        w = module.weight.detach().double().cpu().numpy()
        layout = layer_layout(module, code)
        if isinstance(layout, pt.TensorLayout):
            coded = pt.encode(w, layout, code.coef_bits)
        else:
            coded = poly.encode(w, code.axis, code.interval, code.degree, code.coef_bits)
        if code.bias_degree is not None and module.bias is not None:
            # The stored bias is its bias_degree + 1 polynomial coefficients.
            bias = module.bias.detach().double().cpu().numpy()
            with torch.no_grad():
                module.bias.copy_(torch.as_tensor(npt.project_bias(bias, code.bias_degree)))
            coded.extra["bias_params"] = code.bias_degree + 1
            coded.extra["bias_degree"] = code.bias_degree
        set_submodule(model, name, coded_like(module, coded))
    return outcome
