"""SST in networks: torch projection, straight-through QAT, normalisation, compress_, CLI."""

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewops.cli.compress import build_parser
from fewops.cli.options import config_from_options
from fewops.codes.sst import SSTCode
from fewops.methods.registry import demo_config as method_demo_config
from fewops.methods.sst import (
    SST_PRESETS,
    SSTQAT,
    SSTCodeSpec,
    SSTConfig,
    demo_config,
    k_schedule,
    normalize_rows,
    project_tensor,
    retrain,
)
from fewops.nn.api import LayerSelection, compress_, target_layers
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.sim import evaluate as simulate
from fewops.train.fit import evaluate, fit
from fewops.train.recipe import Recipe


def sst(n=8, k=2, per_row_step=False, epochs=6, lr=1e-3, batch_size=128, **rest):
    """An SSTConfig from the settings the old flat config had (the recipe keeps SST's cosine)."""
    return SSTConfig(
        code=SSTCodeSpec(n=n, k=k, per_row_step=per_row_step),
        train=Recipe(epochs=epochs, lr=lr, batch_size=batch_size, lr_schedule="cosine"),
        **rest,
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train far faster on one thread (and a busy CPU punishes two)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Data:
    """A small synthetic task: labels of a random teacher network on 1x4x4 inputs."""

    def __init__(self, seed=0, train=600, test=400):
        g = torch.Generator().manual_seed(seed)
        teacher = torch.randn(16, 4, generator=g)
        x = torch.rand(train + test, 1, 4, 4, generator=g)
        y = (x.reshape(-1, 16) - 0.5) @ teacher
        self.x_train, self.x_test = x[:train].numpy(), x[train:].numpy()
        labels = y.argmax(dim=1).numpy().astype(np.int64)
        self.y_train, self.y_test = labels[:train], labels[train:]


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.0), nn.Linear(32, 4)
    )


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5, 4),
    )


def test_torch_projection_matches_the_code():
    g = torch.Generator().manual_seed(1)
    for n, k, per_row in [(8, 2, False), (4, 1, True), (16, 4, False), (5, 5, True)]:
        w = torch.randn(13, 37, generator=g, dtype=torch.float64)
        got = project_tensor(w, n, k, per_row).numpy()
        want, _ = SSTCode(n, k, per_row_step=per_row).project(w.numpy())
        # identical supports and signs; steps agree up to the code's 16-bit rounding
        np.testing.assert_array_equal(np.sign(got), np.sign(want))
        np.testing.assert_allclose(got, want, rtol=2**-15)


def test_straight_through_forward_and_gradient():
    lin = nn.Linear(16, 3)
    qat = SSTQAT(lin, 8, 2, False)
    x = torch.randn(5, 16)
    wq = project_tensor(lin.weight.detach(), 8, 2)
    out = qat(x)
    torch.testing.assert_close(out, F.linear(x, wq, lin.bias))
    out.square().sum().backward()
    # the shadow weights get exactly the gradient of the quantized weights
    wq_leaf = wq.clone().requires_grad_(True)
    F.linear(x, wq_leaf, lin.bias.detach()).square().sum().backward()
    torch.testing.assert_close(lin.weight.grad, wq_leaf.grad)


def test_qat_step_tracking_between_exact_fits():
    torch.manual_seed(0)  # unseeded, a weight near a threshold failed about one run in four
    lin = nn.Linear(64, 16)
    qat = SSTQAT(lin, 8, 2, False, refit_every=1000)
    x = torch.randn(4, 64)
    exact = qat(x)  # first call: exact fit
    torch.testing.assert_close(qat(x), exact)  # the exact optimum is a fixed point of the update
    with torch.no_grad():
        lin.weight.mul_(1.5)
    tracked = qat.quantized_weight()
    want = project_tensor(lin.weight.detach(), 8, 2)
    # the update follows the rescaled weights without a new sort
    assert torch.count_nonzero(tracked) == torch.count_nonzero(want)
    torch.testing.assert_close(tracked.abs().max(), want.abs().max(), rtol=0.05, atol=0)
    qat.eval()
    torch.testing.assert_close(qat.quantized_weight(), want)


def test_straight_through_conv():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    qat = SSTQAT(conv, 4, 1, True)
    x = torch.randn(2, 2, 5, 5)
    wq = project_tensor(conv.weight.detach().reshape(3, -1), 4, 1, True).reshape(3, 2, 3, 3)
    torch.testing.assert_close(qat(x), F.conv2d(x, wq, conv.bias, padding=1))


def test_k_schedule():
    assert k_schedule(SSTConfig()) == [4, 4, 3, 2, 2, 2]
    assert k_schedule(sst(n=8, k=2, epochs=6)) == [4, 4, 3, 2, 2, 2]
    assert k_schedule(sst(n=8, k=2, epochs=4, k_start=8, ramp_epochs=3)) == [8, 6, 4, 2]
    assert k_schedule(sst(n=8, k=2, epochs=3, gradual=False)) == [2, 2, 2]
    assert k_schedule(sst(n=4, k=3, epochs=2)) == [4, 3]
    assert k_schedule(sst(n=8, k=8, epochs=2)) == [8, 8]


@pytest.mark.parametrize("make", [small_mlp, small_cnn])
def test_normalize_rows_keeps_the_function_and_evens_rows(make):
    model = make()
    with torch.no_grad():
        first = model[1] if isinstance(model[1], nn.Linear) else model[0]
        first.weight.mul_(
            torch.linspace(0.1, 5, first.weight.shape[0]).reshape(
                -1, *[1] * (first.weight.dim() - 1)
            )
        )
    x = torch.rand(8, 1, 4, 4)
    before = model(x)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    done = normalize_rows(model, names)
    assert done == names[:-1]  # every layer but the classifier has a next layer to take the scale
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    rms = first.weight.detach().reshape(first.weight.shape[0], -1).pow(2).mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, float(rms.mean())))


def test_compress_without_data_projects_and_swaps_every_layer():
    model = small_cnn()
    original = copy.deepcopy(model)
    config = sst(
        n=8, k=2, epochs=0, layers=LayerSelection(overrides={"3": {"n": 4, "k": 1}}, skip=("6",))
    )
    result = compress_(model, config)  # epochs 0: post-training coding, no data needed
    assert result.layers == ["0", "3"] and result.history == {} and result.report == {}
    assert isinstance(model[0], CodedConv2d)
    assert isinstance(model[3], CodedConv2d)
    assert isinstance(model[6], nn.Linear) and not isinstance(model[6], CodedLinear)
    for idx, (n, k) in ((0, (8, 2)), (3, (4, 1))):
        w = original[idx].weight.detach().double().reshape(original[idx].weight.shape[0], -1)
        want, _ = SSTCode(n, k).project(w.numpy())
        np.testing.assert_array_equal(model[idx].coded.matrix, want)
        assert model[idx].coded.config == {"n": n, "k": k, "per_row_step": False}
    x = torch.rand(3, 1, 4, 4)
    w0 = torch.as_tensor(model[0].coded.matrix, dtype=torch.float32).reshape(6, 1, 3, 3)
    torch.testing.assert_close(model[0](x), F.conv2d(x, w0, original[0].bias, padding=1))


def test_coded_layer_simulates_exactly():
    model = small_mlp()
    compress_(model, SSTConfig(SSTCodeSpec(n=4, k=1, per_row_step=True), Recipe(epochs=0)))
    coded = model[1].coded
    x = np.random.default_rng(0).integers(-128, 128, size=(9, 16))
    y = simulate(coded.graph, x)
    real = np.ldexp(y.astype(np.float64), coded.scale_e - coded.graph.output_scale) * coded.scale_m
    np.testing.assert_array_equal(real, x @ coded.matrix.T)


def test_qat_recovers_accuracy_lost_by_projection():
    data = Data()
    model = small_mlp()
    fit(model, data, epochs=15, lr=1e-2, batch_size=100, progress=False)
    float_acc = evaluate(model, data.x_test, data.y_test)
    projected = copy.deepcopy(model)
    compress_(projected, sst(n=4, k=1, epochs=0))
    proj_acc = evaluate(projected, data.x_test, data.y_test)
    trained = copy.deepcopy(model)
    config = sst(n=4, k=1, epochs=6, lr=3e-3, batch_size=100)
    result = compress_(trained, config, data=data)
    assert result.history["qat"]["epoch"] == [1, 2, 3, 4, 5, 6]
    assert result.report["k_per_epoch"] == {"1": [2, 2, 2, 1, 1, 1], "4": [2, 2, 2, 1, 1, 1]}
    qat_acc = evaluate(trained, data.x_test, data.y_test)
    assert isinstance(trained[1], CodedLinear) and isinstance(trained[4], CodedLinear)
    assert float_acc > 0.8
    assert qat_acc > proj_acc + 0.05, (float_acc, proj_acc, qat_acc)
    # the coded weights obey the code: at most k nonzeros per group of n
    t = np.sign(trained[1].coded.matrix).reshape(32, -1, 4)
    assert np.count_nonzero(t, axis=-1).max() <= 1


def test_retrain_follows_the_schedule_and_restores_modules():
    data = Data(train=128, test=64)
    model = small_mlp()
    config = sst(n=8, k=2, epochs=3, k_start=8, ramp_epochs=2, batch_size=64, normalize=True)
    info = retrain(model, config, target_layers(model, config), data)
    assert info["k_per_epoch"] == {"1": [8, 5, 2], "4": [8, 5, 2]}
    assert info["history"]["epoch"] == [1, 2, 3]
    assert info["normalized"] == ["1"]
    assert type(model[1]) is nn.Linear and type(model[4]) is nn.Linear


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SSTCodeSpec(n=8, k=9), "k=9 nonzeros per group cannot exceed the group size n=8."),
        (lambda: SSTCodeSpec(n=20), "The group size n=20 is over the supported limit of 16."),
        (lambda: Recipe(epochs=-1), "Recipe.epochs must be a non-negative integer; got -1."),
        (lambda: Recipe(lr=0.0), "Recipe.lr must be a positive number; got 0.0."),
        (lambda: SSTConfig(k_start=1), "SSTConfig.k_start must lie between k=2 and n=8; got 1."),
        (
            lambda: SSTConfig(ramp_epochs=9),
            "SSTConfig.ramp_epochs must lie between 0 and train.epochs=6; got 9.",
        ),
    ],
)
def test_config_errors(make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_config_parts_must_have_their_types():
    message = "SSTConfig.code must be an SSTCodeSpec; got SSTCode SSTCode(n=8, k=2)."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        SSTConfig(code=SSTCode(8, 2))
    message = "SSTConfig.train must be a Recipe; got dict {'epochs': 3}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        SSTConfig(train={"epochs": 3})


def test_overrides_may_set_only_the_code():
    message = (
        "Override for layer '1' sets 'epochs', which is not a field of SSTCodeSpec (per-layer "
        "overrides may set only: k, n, per_row_step)."
    )
    config = SSTConfig(layers=LayerSelection(overrides={"1": {"epochs": 2}}))
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        compress_(small_mlp(), config)


def test_cli_options():
    parser = build_parser("sst")
    args = parser.parse_args(
        ["--n", "4", "--k", "1", "--epochs", "0", "--per-row-step", "--normalize"]
    )
    config = config_from_options(SST_PRESETS["default"], args)
    assert config == SSTConfig(
        code=SSTCodeSpec(n=4, k=1, per_row_step=True),
        train=Recipe(epochs=0, lr_schedule="cosine"),
        normalize=True,
    )


def test_cli_options_start_from_the_preset():
    args = build_parser("sst", "demo").parse_args(["--k", "3", "--n", "16", "--no-normalize"])
    config = config_from_options(SST_PRESETS["demo"], args)
    assert (config.code.n, config.code.k, config.normalize) == (16, 3, False)
    assert config.train == SST_PRESETS["demo"].train  # 20 epochs at lr 3e-3, as the preset


def test_demo_config_is_registered_for_the_demo():
    assert method_demo_config("sst") == demo_config() == SST_PRESETS["demo"]
    assert (demo_config().code.n, demo_config().code.k) == (8, 2)
    assert SST_PRESETS["default"] == SSTConfig()


def test_public_api_exposes_the_config():
    import fewops

    assert fewops.SSTConfig is SSTConfig
    assert fewops.SSTCode is SSTCode
    with pytest.raises(
        AttributeError, match=re.escape("module 'fewops' has no attribute 'nothing'")
    ):
        fewops.nothing  # noqa: B018
