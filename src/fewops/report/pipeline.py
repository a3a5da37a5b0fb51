"""Code a float model with a method, simulate it in integers, count it: one report entry."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, is_dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fewops.cost.report import NetworkCost
from fewops.data.adapt import as_dataset
from fewops.io.json_values import json_safe_dict
from fewops.nn.api import coded_layers, compress_
from fewops.nn.coded import CodedConv2d
from fewops.nn.geometry import output_positions
from fewops.nn.to_network import compile_network


def network_cost(model: nn.Module, input_shape) -> NetworkCost:
    positions = output_positions(model, input_shape)
    layers = []
    for name, module in coded_layers(model):
        kind = "conv" if isinstance(module, CodedConv2d) else "linear"
        layers.append(
            module.coded.layer_cost(
                name, kind=kind, positions=positions.get(name, 1), bias=module.bias
            )
        )
    return NetworkCost(tuple(layers))


def float_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = model(torch.as_tensor(x[start : start + batch_size]))
            correct += int((logits.argmax(1).numpy() == y[start : start + batch_size]).sum())
    return correct / max(1, x.shape[0])


def simulated_predictions(net, x: np.ndarray, method: str, progress, batch: int = 256):
    """The integer network's predictions on ``x``, with a progress bar when ``progress``."""
    chunks = range(0, len(x), batch)
    bar = tqdm(chunks, desc=f"{method}: integer simulation", unit="batch", disable=not progress)
    return np.concatenate([net.predict(x[start : start + batch]) for start in bar])


def config_to_dict(config) -> dict:
    if is_dataclass(config):
        return json_safe_dict(asdict(config))
    return {"repr": repr(config)}


def run_method(
    method: str,
    float_model: nn.Module,
    dataset,
    config,
    *,
    act_bits: int = 8,
    simulate: bool = True,
    calibration_size: int = 512,
    **compress_kwargs,
) -> tuple[dict, nn.Module]:
    """Code a copy of ``float_model`` with ``config``; returns (report entry, coded model).

    ``dataset`` is anything :func:`fewops.data.adapt.as_dataset` takes; it needs a test split
    (the accuracies are measured on it), e.g. ``((x_train, y_train), (x_test, y_test))``.
    """
    dataset = as_dataset(dataset)
    if dataset.num_test == 0:
        raise ValueError(
            "run_method reports test accuracy and needs a test split: pass "
            "data=((x_train, y_train), (x_test, y_test)), a (train, test) pair of torch Datasets "
            "or DataLoaders, or a fewops data set; got training data only."
        )
    start = time.perf_counter()
    model = copy.deepcopy(float_model)
    result = compress_(model, config, data=dataset, **compress_kwargs)
    coded_seconds = time.perf_counter() - start
    entry = {
        "method": method,
        "config": config_to_dict(config),
        "accuracy": {"float": float_accuracy(model, dataset.x_test, dataset.y_test)},
    }
    if simulate:
        net = compile_network(model, dataset.x_train[:calibration_size], act_bits=act_bits)
        sim_start = time.perf_counter()
        pred = simulated_predictions(net, dataset.x_test, method, compress_kwargs.get("progress"))
        entry["accuracy"]["simulated"] = float((pred == dataset.y_test).mean())
        entry["simulation"] = {
            "act_bits": act_bits,
            "seconds": round(time.perf_counter() - sim_start, 3),
        }
    else:
        entry["accuracy"]["simulated"] = None
    entry.update(network_cost(model, dataset.input_shape).to_dict())
    if result.report:
        entry["stages"] = result.report
    if result.history:
        entry["history"] = result.history
    entry["seconds"] = round(coded_seconds, 3)
    return entry, model
