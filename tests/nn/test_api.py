"""compress_: its result, per-layer overrides of the code, and the refusal of other keys."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from fewops.codes import csd
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.nn.api import (
    HANDLERS,
    CompressResult,
    LayerSelection,
    MethodOutcome,
    compress_,
    target_layers,
)
from fewops.nn.coded import CodedLinear, layer_matrix


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def test_compress_result_carries_model_config_layers_history_and_report():
    model = mlp()
    config = CSDConfig(CSDCode(bits=6), layers=LayerSelection(skip=("4",)))
    result = compress_(model, config)
    assert isinstance(result, CompressResult)
    assert result.model is model and result.config is config
    assert result.layers == ["0", "2"]
    assert result.history == {} and result.report == {}  # CSD trains nothing
    assert isinstance(model[0], CodedLinear) and type(model[4]) is nn.Linear


class Recording:
    """A config whose handler reports a history and a report."""

    code = CSDCode()


def recording_handler(model, config, targets, **kwargs):
    return MethodOutcome(
        history={"stage": {"epoch": [1, 2]}}, report={"seen": [n for n, _, _ in targets]}
    )


def test_compress_result_passes_the_handler_outcome_on(monkeypatch):
    monkeypatch.setitem(HANDLERS, Recording, recording_handler)
    result = compress_(mlp(), Recording())
    assert result.history == {"stage": {"epoch": [1, 2]}}
    assert result.report == {"seen": ["0", "2", "4"]}
    assert result.layers == ["0", "2", "4"]


def test_overrides_with_an_unknown_key_are_refused_naming_it_and_the_allowed_fields():
    config = CSDConfig(layers=LayerSelection(overrides={"0": {"bits": 4, "epochs": 3}}))
    message = (
        "Override for layer '0' sets 'epochs', which is not a field of CSDCode (per-layer "
        "overrides may set only: bits, target_db)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compress_(mlp(), config)
    two = CSDConfig(layers=LayerSelection(overrides={"2": {"lr": 1, "fold_batchnorm": False}}))
    message = (
        "Override for layer '2' sets 'fold_batchnorm', 'lr', which are not fields of CSDCode "
        "(per-layer overrides may set only: bits, target_db)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compress_(mlp(), two)


def test_an_override_with_a_bad_value_names_the_layer():
    config = CSDConfig(layers=LayerSelection(overrides={"2": {"bits": 1}}))
    message = "Override for layer '2': CSDCode.bits must be an integer of at least 2; got 1."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compress_(mlp(), config)


def test_overrides_of_code_fields_apply_per_layer():
    original = mlp()
    model = mlp()
    config = CSDConfig(
        CSDCode(bits=8), layers=LayerSelection(overrides={"0": {"bits": 4}, "[24]": {"bits": 6}})
    )
    targets = target_layers(model, config)
    assert [(name, cfg.code.bits) for name, _, cfg in targets] == [("0", 4), ("2", 6), ("4", 6)]
    assert all(cfg.fold_batchnorm == config.fold_batchnorm for _, _, cfg in targets)
    compress_(model, config)
    for index, bits in ((0, 4), (2, 6), (4, 6)):
        want = csd.encode(layer_matrix(original[index]).numpy(), bits).matrix
        np.testing.assert_array_equal(model[index].coded.matrix, want)


def test_a_config_without_a_code_part_refuses_overrides(monkeypatch):
    class NoCode:
        layers = LayerSelection(overrides={"0": {"bits": 4}})

    monkeypatch.setitem(HANDLERS, NoCode, lambda *args, **kwargs: None)
    message = "NoCode has no code part that overrides could change."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        compress_(mlp(), NoCode())
