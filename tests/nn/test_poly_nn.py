"""WACR in PyTorch: config checks, projection and reparameterisation, retraining, handler, CLI."""

import argparse
import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from poly_data import toy_images
from torch import nn

from fewops.codes import poly
from fewops.methods.wacr.poly import (
    PolyConfig,
    PolyConv2d,
    PolyLinear,
    _Basis,
    add_cli_args,
    config_from_args,
    demo_config,
    layer_layout,
    parse_families,
    parse_layer_override,
    retrain_,
)
from fewops.models import build
from fewops.nn.api import LayerSelection, compress_, target_layers
from fewops.nn.coded import CodedConv2d, CodedLinear


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
        nn.ReLU(),
        nn.Linear(10, 3),
    )


CONFIG = PolyConfig(
    axis="kernel_row",
    interval=3,
    degree=1,
    layers=LayerSelection(
        overrides={"3": {"axis": "fan_in", "interval": 16, "degree": 2}, "5": {"axis": "filters"}}
    ),
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"degree": 3}, "Polynomial degree must be 1 or 2; got 3."),
        ({"coef_bits": 1}, "Coefficient width must be an integer from 2 to 24 bits; got 1."),
        ({"axis": "rows"}, "Unknown polynomial axis 'rows'"),
        ({"interval": 1}, "Interval length must be an integer of at least 2, or None"),
        ({"mode": "ste"}, "Unknown training mode 'ste'; use 'project' or 'reparam'."),
        ({"epochs": -1}, "epochs must be a non-negative integer; got -1."),
        (
            {"qat_epochs": -2, "mode": "reparam"},
            "qat_epochs must be a non-negative integer; got -2",
        ),
        ({"qat_epochs": 2}, "qat_epochs needs mode='reparam'"),
        ({"qat_lr": 0.0}, "qat_lr must be a positive number or None; got 0.0"),
        ({"restarts": 0}, "restarts must be an integer of at least 1; got 0."),
        ({"augment_shift": -1}, "augment_shift must be a non-negative integer; got -1."),
        ({"augment_shift": True}, "augment_shift must be a non-negative integer; got True."),
        ({"lr_schedule": "step"}, "Unknown lr_schedule 'step'; use None (constant) or 'cosine'."),
        ({"dropout": 1.0}, "dropout must be None or a rate in [0, 1); got 1.0."),
        ({"dropout": -0.1}, "dropout must be None or a rate in [0, 1); got -0.1."),
        ({"ema": 1.0}, "ema must be None or a decay in (0, 1); got 1.0."),
        ({"ema": True}, "ema must be None or a decay in (0, 1); got True."),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PolyConfig(**kwargs)


def test_layer_without_the_axis_is_named_before_training():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="A linear layer has no 'kernel_row' axis"):
        compress_(model, PolyConfig(axis="kernel_row", interval=3, epochs=1), data=toy_images())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # nothing trained or swapped


@pytest.mark.parametrize(
    ("shape", "axis", "interval", "degree"),
    [
        ((4, 2, 3, 3), "kernel_row", 3, 1),
        ((5, 5, 3, 3), "channels", 3, 2),
        ((6, 40), "fan_in", 16, 2),
        ((7, 12), "filters", 3, 1),
    ],
)
def test_torch_projection_matches_exact_least_squares(shape, axis, interval, degree):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    basis = _Basis(poly.make_layout(shape, axis, interval, degree))
    projected = w.clone().float()
    basis.project_(projected)
    expected = poly.project(w.numpy(), axis, interval, degree)
    np.testing.assert_allclose(projected.numpy(), expected, atol=1e-5)


def test_reparameterised_layers_start_at_the_projection_and_learn_coefficients():
    torch.manual_seed(3)
    conv, lin = nn.Conv2d(2, 4, 3), nn.Linear(40, 6)
    pconv = PolyConv2d(conv, poly.make_layout((4, 2, 3, 3), "kernel_col", 3, 1))
    plin = PolyLinear(lin, poly.make_layout((6, 40), "fan_in", None, 2))
    assert plin.params == 6 * 3 and pconv.params == 4 * 2 * 3 * 2
    assert sum(p.numel() for p in plin.coefs) == 18
    w = poly.project(lin.weight.detach().double().numpy(), "fan_in", None, 2)
    np.testing.assert_allclose(plin.weight.detach().numpy(), w, atol=1e-5)
    x = torch.randn(5, 2, 7, 7)
    wc = poly.project(conv.weight.detach().double().numpy(), "kernel_col", 3, 1)
    ref = torch.nn.functional.conv2d(x, torch.as_tensor(wc, dtype=torch.float32), conv.bias)
    torch.testing.assert_close(pconv(x), ref, atol=1e-5, rtol=1e-5)
    pconv(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pconv.coefs)


@pytest.mark.parametrize("mode", ["project", "reparam"])
def test_retraining_ends_on_the_family_and_changes_the_weights(mode):
    model = _model()
    start = copy.deepcopy(model)
    config = PolyConfig(**{**CONFIG.__dict__, "epochs": 1, "mode": mode, "batch_size": 16})
    history = retrain_(model, config, toy_images())
    assert len(history["loss"]) == 1
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[3], nn.Linear)  # swapped back
    for index, (axis, interval, degree) in {
        0: ("kernel_row", 3, 1),
        3: ("fan_in", 16, 2),
        5: ("filters", None, 1),
    }.items():
        w = model[index].weight.detach().double().numpy()
        np.testing.assert_allclose(poly.project(w, axis, interval, degree), w, atol=1e-5)
        w0 = poly.project(start[index].weight.detach().double().numpy(), axis, interval, degree)
        assert np.abs(w - w0).max() > 1e-4  # training moved it


def test_compress_swaps_layers_and_codes_the_trained_weights():
    model = _model()
    expected = {
        0: poly.project(model[0].weight.detach().double().numpy(), "kernel_row", 3, 1),
        3: poly.project(model[3].weight.detach().double().numpy(), "fan_in", 16, 2),
        5: poly.project(model[5].weight.detach().double().numpy(), "filters", None, 1),
    }
    config = PolyConfig(**{**CONFIG.__dict__, "coef_bits": 12})
    compress_(model, config)
    assert isinstance(model[0], CodedConv2d)
    assert isinstance(model[3], CodedLinear) and isinstance(model[5], CodedLinear)
    assert model[0].coded.params == 4 * 2 * 3 * 2
    assert model[3].coded.params == 10 * 4 * 3
    assert model[5].coded.params == 10 * 2
    assert "row_stationary" in model[0].coded.extra and "row_stationary" not in model[3].coded.extra
    for index, w in expected.items():
        w_hat = model[index].coded.matrix
        err = np.linalg.norm(w_hat - w.reshape(w_hat.shape)) / np.linalg.norm(w)
        assert err < 2e-3  # 12-bit coefficients on top of the exact projection
    model(torch.rand(2, 2, 6, 6))  # still runs


def test_cli_hooks_build_the_config():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)  # a shared option is reused, not doubled
    add_cli_args(parser)
    args = parser.parse_args(
        "--axis kernel_row --interval 3 --degree 2 --coef-bits 6 --mode reparam "
        "--layer-poly 7=fan_in:full:2 --layer-poly 9=filters:4".split()
    )
    config = config_from_args(args)
    assert (config.axis, config.interval, config.degree, config.coef_bits) == (
        "kernel_row",
        3,
        2,
        6,
    )
    assert (config.mode, config.epochs) == ("reparam", 5)
    assert config.layers.overrides == {
        "7": {"axis": "fan_in", "interval": None, "degree": 2},
        "9": {"axis": "filters", "interval": 4},
    }


def test_cli_families_json_file_or_string(tmp_path):
    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    family = {
        "7": {
            "in_shape": [64, 12, 12],
            "in_factors": [[None, 1], [6, 2], [6, 2]],
            "out_factor": [32, 1],
            "bias_degree": 2,
        }
    }
    path = tmp_path / "families.json"
    path.write_text(json.dumps(family))
    for source in (str(path), json.dumps(family)):
        args = parser.parse_args(
            ["--families", source, "--init", "scratch", "--mode", "reparam", "--batch-size", "64"]
            + ["--layer-poly", "10=fan_in:32:1"]
        )
        config = config_from_args(args)
        assert config.layers.overrides == {
            "7": {
                "in_shape": (64, 12, 12),
                "in_factors": ((None, 1), (6, 2), (6, 2)),
                "out_factor": (32, 1),
                "bias_degree": 2,
            },
            "10": {"axis": "fan_in", "interval": 32, "degree": 1},
        }
        assert (config.init, config.batch_size, config.precondition) == ("scratch", 64, True)
    args = parser.parse_args(["--no-precondition"])
    assert config_from_args(args).precondition is False
    config = config_from_args(
        parser.parse_args(["--mode", "reparam", "--qat-epochs", "3", "--qat-lr", "1e-4"])
    )
    assert (config.qat_epochs, config.qat_lr) == (3, 1e-4)
    assert config_from_args(parser.parse_args(["--restarts", "3"])).restarts == 3
    assert config_from_args(parser.parse_args(["--augment-shift", "2"])).augment_shift == 2
    assert config_from_args(parser.parse_args([])).qat_epochs == 0
    recipe = config_from_args(
        parser.parse_args(["--retrain-schedule", "cosine", "--retrain-dropout", "0"])
    )
    assert (recipe.lr_schedule, recipe.dropout) == ("cosine", 0.0)
    default = config_from_args(parser.parse_args([]))
    assert (default.lr_schedule, default.dropout, default.ema) == (None, None, None)
    assert config_from_args(parser.parse_args(["--retrain-ema", "0.998"])).ema == 0.998


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no_such_file.json", "no file 'no_such_file.json'"),
        ("{not json", "not valid JSON"),
        ('{"7": 3}', "must map layer names to objects"),
        ('{"7": {"degre": 2}}', "layer '7' has unknown setting(s) degre"),
    ],
)
def test_cli_bad_families_are_named(text, message):
    from fewops.methods.wacr.poly import parse_families

    with pytest.raises(ValueError, match=re.escape(message)):
        parse_families(text)


def test_bad_layer_override_is_named():
    with pytest.raises(ValueError, match=re.escape("NAME=AXIS[:INTERVAL[:DEGREE]]; got '7'.")):
        parse_layer_override("7")
    with pytest.raises(ValueError, match="Unknown polynomial axis 'cols'"):
        parse_layer_override("7=cols:3")


def test_demo_config_codes_the_demo_mlp():
    torch.manual_seed(4)
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    config = demo_config()
    assert config.epochs > 0
    compress_(mlp, PolyConfig(**{**config.__dict__, "epochs": 0, "init": "float"}))
    assert [m.coded.params for m in mlp if isinstance(m, CodedLinear)] == [
        (64 // 8 * 2) * (2 * 3) * (2 * 3),  # K 16 features x M 36 block moments
        (32 // 8 * 2) * (64 // 8 * 3),  # K 8 x M 24
        10 * (32 // 8 * 2),  # free outputs x M 8
    ]


@pytest.mark.parametrize("name", ["wacr-tensor-blocks.json", "wacr-tensor-blocks-q.json"])
def test_documented_tensor_blocks_family_builds_on_the_keras_cnn(name):
    """docs/wacr-tensor-blocks*.json (the README's command uses -q) parse and fit the Keras
    CNN's four layers with the coefficient counts the benchmark reports (96 + 144 + 576 + 80:
    dense1 K 8 x M 72, or K 12 x M 48 with units quadratic)."""
    path = Path(__file__).resolve().parents[2] / "docs" / name
    families = parse_families(str(path))
    config = PolyConfig(mode="reparam", init="scratch", layers=LayerSelection(overrides=families))
    model = build("mnist-cnn", (1, 28, 28), 10)
    counts = {name: layer_layout(m, cfg).params for name, m, cfg in target_layers(model, config)}
    assert counts == {"0": 96, "2": 144, "7": 576, "10": 80}
