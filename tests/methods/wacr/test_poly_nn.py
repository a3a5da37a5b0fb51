"""WACR in PyTorch: config checks, projection and reparameterisation, retraining, handler, CLI."""

import copy
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from poly_data import toy_images
from torch import nn

from fewops.cli.compress import build_parser
from fewops.cli.options import config_from_options
from fewops.codes import poly
from fewops.methods.registry import METHODS
from fewops.methods.wacr import MNIST_CNN_TENSOR_BLOCKS_Q, WACR_PRESETS, PolyCode, PolyConfig
from fewops.methods.wacr.layers import Basis, PolyConv2d, PolyLinear, layer_layout
from fewops.methods.wacr.retrain import retrain_
from fewops.models import build
from fewops.nn.api import LayerSelection, compress_, target_layers
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.train.recipe import Recipe

DOCS = Path(__file__).resolve().parents[3] / "docs"


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
    code=PolyCode(axis="kernel_row", interval=3, degree=1),
    layers=LayerSelection(
        overrides={"3": {"axis": "fan_in", "interval": 16, "degree": 2}, "5": {"axis": "filters"}}
    ),
)


def _config(part: str, kwargs: dict) -> PolyConfig:
    """A PolyConfig with ``kwargs`` in its code, its training recipe or itself."""
    if part == "code":
        return PolyConfig(code=PolyCode(**kwargs))
    if part == "train":
        return PolyConfig(train=Recipe(**kwargs))
    return PolyConfig(**kwargs)


@pytest.mark.parametrize(
    ("part", "kwargs", "message"),
    [
        ("code", {"degree": 3}, "Polynomial degree must be 1 or 2; got 3."),
        (
            "code",
            {"coef_bits": 1},
            "Coefficient width must be an integer from 2 to 24 bits; got 1.",
        ),
        (
            "code",
            {"axis": "rows"},
            "Unknown polynomial axis 'rows'; choose one of kernel_row, kernel_col, channels, "
            "fan_in, filters.",
        ),
        (
            "code",
            {"interval": 1},
            "Interval length must be an integer of at least 2, or None for the whole axis; got 1.",
        ),
        (
            "code",
            {"in_factors": [[4, 2]]},
            "PolyCode.in_factors must be a tuple or None; got [[4, 2]] (list).",
        ),
        ("config", {"mode": "ste"}, "Unknown training mode 'ste'; use 'project' or 'reparam'."),
        ("train", {"epochs": -1}, "Recipe.epochs must be a non-negative integer; got -1."),
        (
            "config",
            {"qat_epochs": -2, "mode": "reparam"},
            "PolyConfig.qat_epochs must be a non-negative integer; got -2.",
        ),
        (
            "config",
            {"qat_epochs": 2},
            "PolyConfig.qat_epochs=2 needs mode='reparam' (it trains the coefficients); "
            "got mode='project'.",
        ),
        (
            "config",
            {"qat_lr": 0.0},
            "PolyConfig.qat_lr must be a positive number or None; got 0.0.",
        ),
        ("config", {"restarts": 0}, "PolyConfig.restarts must be an integer of at least 1; got 0."),
        (
            "config",
            {"augment_shift": -1},
            "PolyConfig.augment_shift must be a non-negative integer; got -1.",
        ),
        (
            "config",
            {"augment_shift": True},
            "PolyConfig.augment_shift must be a non-negative integer; got True.",
        ),
        (
            "config",
            {"precondition": "yes"},
            "PolyConfig.precondition must be True or False; got 'yes'.",
        ),
        (
            "train",
            {"lr_schedule": "step"},
            "Recipe.lr_schedule must be None (constant) or 'cosine'; got 'step'.",
        ),
        (
            "config",
            {"dropout": 1.0},
            "PolyConfig.dropout must be None or a rate in [0, 1); got 1.0.",
        ),
        (
            "config",
            {"dropout": -0.1},
            "PolyConfig.dropout must be None or a rate in [0, 1); got -0.1.",
        ),
        ("train", {"ema": 1.0}, "Recipe.ema must be None or a decay in (0, 1); got 1.0."),
        ("train", {"ema": True}, "Recipe.ema must be None or a decay in (0, 1); got True."),
        ("config", {"code": {"degree": 2}}, "PolyConfig.code must be a PolyCode; got dict."),
    ],
)
def test_config_rejects_bad_values(part, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(part, kwargs)


def test_per_layer_override_of_a_training_field_is_refused():
    model = _model()
    config = PolyConfig(layers=LayerSelection(overrides={"0": {"lr": 0.1}}))
    message = (
        "Override for layer '0' sets 'lr', which is not a field of PolyCode (per-layer "
        "overrides may set only: axis, bias_degree, coef_bits, degree, in_factors, in_shape, "
        "interval, out_factor)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, config)
    assert isinstance(model[0], nn.Conv2d)  # nothing coded


def test_per_layer_override_values_are_checked_by_the_code():
    config = PolyConfig(layers=LayerSelection(overrides={"3": {"degree": 3}}))
    with pytest.raises(ValueError, match=re.escape("Polynomial degree must be 1 or 2; got 3.")):
        compress_(_model(), config)


def test_layer_without_the_axis_is_named_before_training():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    message = "A linear layer has no 'kernel_row' axis; its axes are 'fan_in', 'filters'."
    with pytest.raises(ValueError, match=re.escape(message)):
        config = PolyConfig(code=PolyCode(axis="kernel_row", interval=3), train=Recipe(epochs=1))
        compress_(model, config, data=toy_images())
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
    basis = Basis(poly.make_layout(shape, axis, interval, degree))
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
    config = replace(CONFIG, mode=mode, train=Recipe(epochs=1, batch_size=16))
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
    config = replace(CONFIG, code=replace(CONFIG.code, coef_bits=12))
    result = compress_(model, config)
    assert result.model is model and result.layers == ["0", "3", "5"]
    assert result.history == {}  # no data: nothing retrained
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


def _parse(argv: list[str], preset: str = "default") -> PolyConfig:
    """The config ``fewops compress --method wacr --preset PRESET ARGV`` runs with."""
    args = build_parser("wacr", preset).parse_args(["--method", "wacr", *argv])
    return config_from_options(WACR_PRESETS[preset], args)


def test_cli_options_build_the_config():
    overrides = {"7": {"axis": "fan_in", "interval": None, "degree": 2}, "9": {"axis": "filters"}}
    config = _parse(
        "--axis kernel_row --interval 3 --degree 2 --coef-bits 6 --mode reparam --epochs 5 "
        "--float-epochs 9 --lr 0.01".split()
        + ["--layer-overrides", json.dumps(overrides)]
    )
    assert config.code == PolyCode(axis="kernel_row", interval=3, degree=2, coef_bits=6)
    assert (config.mode, config.train.epochs, config.train.lr) == ("reparam", 5, 0.01)
    assert config.layers.overrides == overrides
    assert _parse(["--interval", "full"]).code.interval is None
    assert _parse([]) == PolyConfig()  # no options: the default preset as it is


def test_cli_layer_overrides_json_file_or_string(tmp_path):
    family = {
        "7": {
            "in_shape": [64, 12, 12],
            "in_factors": [[None, 1], [6, 2], [6, 2]],
            "out_factor": [32, 1],
            "bias_degree": 2,
        },
        "10": {"axis": "fan_in", "interval": 32, "degree": 1},
    }
    path = tmp_path / "families.json"
    path.write_text(json.dumps(family))
    for source in (str(path), json.dumps(family)):
        config = _parse(
            ["--layer-overrides", source, "--init", "scratch", "--mode", "reparam"]
            + ["--batch-size", "64"]
        )
        assert config.layers.overrides == {
            "7": {
                "in_shape": (64, 12, 12),
                "in_factors": ((None, 1), (6, 2), (6, 2)),
                "out_factor": (32, 1),
                "bias_degree": 2,
            },
            "10": {"axis": "fan_in", "interval": 32, "degree": 1},
        }
        assert (config.init, config.train.batch_size, config.precondition) == ("scratch", 64, True)
    assert _parse(["--no-precondition"]).precondition is False
    config = _parse(["--mode", "reparam", "--qat-epochs", "3", "--qat-lr", "1e-4"])
    assert (config.qat_epochs, config.qat_lr) == (3, 1e-4)
    assert _parse(["--restarts", "3"]).restarts == 3
    assert _parse(["--augment-shift", "2"]).augment_shift == 2
    assert _parse([]).qat_epochs == 0
    recipe = _parse(["--lr-schedule", "cosine", "--dropout", "0"])
    assert (recipe.train.lr_schedule, recipe.dropout) == ("cosine", 0.0)
    default = _parse([])
    assert (default.train.lr_schedule, default.dropout, default.train.ema) == (None, None, None)
    assert _parse(["--ema", "0.998"]).train.ema == 0.998
    assert _parse(["--in-factors", "[[4, 2], null]"]).code.in_factors == ((4, 2), None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--layer-overrides", "no_such_file.json"],
            "--layer-overrides takes JSON or a .json file; no file at 'no_such_file.json'.",
        ),
        (
            ["--layer-overrides", "{not json"],
            "--layer-overrides is not valid JSON (Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)).",
        ),
        (
            ["--layer-overrides", '{"7": 3}'],
            '--layer-overrides must map layer names to field dicts, e.g. {"0": {"bits": 12}}.',
        ),
        (["--interval", "one"], "--interval takes an int or none; got 'one'."),
        (["--axis", "cols"], "argument --axis: invalid choice: 'cols'"),
        (["--epochs", "-1"], "Recipe.epochs must be a non-negative integer; got -1."),
    ],
)
def test_cli_bad_options_are_named(argv, message, capsys):
    with pytest.raises((SystemExit, ValueError)) as raised:
        _parse(argv)
    text = str(raised.value) if raised.type is ValueError else capsys.readouterr().err
    assert message in text


def test_cli_unknown_override_field_is_named():
    config = _parse(["--layer-overrides", '{"3": {"degre": 2}}'])
    message = (
        "Override for layer '3' sets 'degre', which is not a field of PolyCode (per-layer "
        "overrides may set only: axis, bias_degree, coef_bits, degree, in_factors, in_shape, "
        "interval, out_factor)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(_model(), config)


def test_demo_config_codes_the_demo_mlp():
    torch.manual_seed(4)
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    config = WACR_PRESETS["demo"]
    assert config.train.epochs > 0
    compress_(mlp, replace(config, train=replace(config.train, epochs=0), init="float"))
    assert [m.coded.params for m in mlp if isinstance(m, CodedLinear)] == [
        (64 // 8 * 2) * (2 * 3) * (2 * 3),  # K 16 features x M 36 block moments
        (32 // 8 * 2) * (64 // 8 * 3),  # K 8 x M 24
        10 * (32 // 8 * 2),  # free outputs x M 8
    ]


@pytest.mark.parametrize("name", ["wacr-tensor-blocks.json", "wacr-tensor-blocks-q.json"])
def test_documented_tensor_blocks_family_builds_on_the_keras_cnn(name):
    """docs/wacr-tensor-blocks*.json (the README's command uses -q) parse as --layer-overrides
    and fit the Keras CNN's four layers with the coefficient counts the benchmark reports
    (96 + 144 + 576 + 80: dense1 K 8 x M 72, or K 12 x M 48 with units quadratic)."""
    config = _parse(
        ["--mode", "reparam", "--init", "scratch"] + ["--layer-overrides", str(DOCS / name)]
    )
    model = build("mnist-cnn", (1, 28, 28), 10)
    targets = target_layers(model, config)
    counts = {name: layer_layout(m, cfg.code).params for name, m, cfg in targets}
    assert counts == {"0": 96, "2": 144, "7": 576, "10": 80}


def test_mnist_cnn_preset_is_the_documented_recipe():
    """The preset mnist-cnn-tensor-blocks-q is docs/wacr-tensor-blocks-q.json with the README's
    retraining recipe."""
    preset = WACR_PRESETS["mnist-cnn-tensor-blocks-q"]
    from_docs = _parse(["--layer-overrides", str(DOCS / "wacr-tensor-blocks-q.json")])
    assert preset.layers.overrides == from_docs.layers.overrides == MNIST_CNN_TENSOR_BLOCKS_Q
    assert preset.train == Recipe(epochs=80, lr=2e-2, batch_size=64, lr_schedule="cosine")
    assert (preset.mode, preset.init, preset.qat_epochs, preset.qat_lr) == (
        "reparam",
        "scratch",
        5,
        None,
    )
    assert (preset.augment_shift, preset.dropout, preset.code) == (1, 0.0, PolyCode())


def test_readme_command_runs_the_preset(monkeypatch):
    """The README's `fewops compress --method wacr --model mnist-cnn` command, with no method
    options, runs the preset mnist-cnn-tensor-blocks-q (the model family's default)."""
    monkeypatch.chdir(DOCS.parent)  # the command names docs/... relative to the repository
    readme = (DOCS.parent / "README.md").read_text()
    start = readme.index("fewops compress --method wacr --model mnist-cnn")
    command = readme[start:].split("#", 1)[0].replace("\\\n", " ")
    argv = shlex.split(command)[2:]  # after "fewops compress"
    args = build_parser("wacr").parse_args(argv)
    assert args.preset is None  # no method options: the model's measured preset
    config = config_from_options(METHODS["wacr"].config_for(args.model, args.data), args)
    assert config == WACR_PRESETS["mnist-cnn-tensor-blocks-q"]
