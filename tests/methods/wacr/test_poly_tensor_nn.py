"""WACR tensor-product families in PyTorch: reparameterised layers, polynomial biases,
projected and from-scratch retraining, coding through compress_."""

import re
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from poly_data import toy_images
from torch import nn

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.methods.wacr import PolyCode, PolyConfig
from fewops.methods.wacr.retrain import retrain_
from fewops.methods.wacr.tensor import TensorPolyLayer, project_bias, tensor_grid
from fewops.nn.api import LayerSelection, compress_
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.train.recipe import Recipe


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    )


OVERRIDES = {
    "0": {"in_factors": ((None, 1), None, (None, 2)), "out_factor": (4, 1), "bias_degree": 1},
    "3": {
        "in_shape": (8, 4, 4),
        "in_factors": ((None, 1), None, (None, 2)),
        "out_factor": (6, 1),
        "bias_degree": 2,
    },
    "5": {"axis": "fan_in", "interval": 6, "degree": 1},
}


TRAIN_FIELDS = {f.name for f in fields(Recipe)}
CODE_FIELDS = {f.name for f in fields(PolyCode)}


def _scratch(**changes) -> PolyConfig:
    """From-scratch retraining of the OVERRIDES families on the toy images; each change goes to
    the training recipe, the code or the config itself, wherever its field is."""
    train = {"epochs": 2, "lr": 1e-2, "batch_size": 16}
    code = {}
    settings = {"mode": "reparam", "init": "scratch", "layers": LayerSelection(overrides=OVERRIDES)}
    for name, value in changes.items():
        part = train if name in TRAIN_FIELDS else code if name in CODE_FIELDS else settings
        part[name] = value
    return PolyConfig(code=PolyCode(**code), train=Recipe(**train), **settings)


def test_reparameterised_layer_is_the_projection_and_reads_moments_first():
    torch.manual_seed(2)
    lin = nn.Linear(24, 6)
    layout = pt.make_tensor_layout((6, 24), ((None, 1), (None, 2)), (3, 1), (2, 12))
    layer = TensorPolyLayer(lin, layout, bias_degree=1)
    assert layer.params == layout.params + 2
    w = pt.project(lin.weight.detach().double().numpy(), layout)
    np.testing.assert_allclose(layer.weight_matrix().detach().numpy(), w, atol=1e-5)
    b = project_bias(lin.bias.detach().double().numpy(), 1)
    x = torch.randn(5, 24)
    ref = x.double() @ torch.as_tensor(w).t() + torch.as_tensor(b)
    torch.testing.assert_close(layer(x).double(), ref, atol=1e-5, rtol=1e-5)


def test_conv_with_few_moments_mixes_basis_maps_exactly():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 16, 3)
    layout = pt.make_tensor_layout((16, 3, 3, 3), ((None, 2),), None, (27,))
    layer = TensorPolyLayer(conv, layout)
    x = torch.randn(2, 3, 8, 8)
    w = torch.as_tensor(
        pt.project(conv.weight.detach().double().numpy(), layout), dtype=torch.float32
    )
    torch.testing.assert_close(
        layer(x), nn.functional.conv2d(x, w, conv.bias), atol=1e-4, rtol=1e-4
    )
    layer(x).sum().backward()
    assert layer.coefs.grad is not None and layer.coefs.grad.abs().sum() > 0


@pytest.mark.parametrize("stride_padding", [(1, 0), (2, 1)])
def test_channel_separable_conv_forms_moments_channels_first_exactly(stride_padding):
    # (channels, kernel rows, kernel columns) with a linear channel factor: the layer takes
    # the channels-first path (1x1 conv, then grouped tap kernels) and still equals the
    # conv with the projected weight; intervals of 4 channels give 2 x 3 = 6 channel moments.
    stride, padding = stride_padding
    torch.manual_seed(4)
    conv = nn.Conv2d(12, 16, 3, stride=stride, padding=padding)
    layout = pt.make_tensor_layout((16, 12, 3, 3), ((4, 1), None, None), (8, 1))
    layer = TensorPolyLayer(conv, layout)
    assert layer.separable
    x = torch.randn(2, 12, 9, 9)
    w = torch.as_tensor(
        pt.project(conv.weight.detach().double().numpy(), layout), dtype=torch.float32
    )
    expected = nn.functional.conv2d(x, w, conv.bias, stride=stride, padding=padding)
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)
    layer.separable = False  # the general path gives the same maps
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)
    # Free channels (nothing to reduce) keep the general path.
    free = pt.make_tensor_layout((16, 12, 3, 3), (None, (None, 1), None), (8, 1))
    assert not TensorPolyLayer(conv, free).separable


@pytest.mark.parametrize(
    ("mode", "init"), [("project", "float"), ("reparam", "float"), ("reparam", "scratch")]
)
def test_retraining_ends_on_the_family_with_polynomial_biases(mode, init):
    model = _model()
    config = _scratch(mode=mode, init=init)
    retrain_(model, config, toy_images(), progress=False)
    for name in ("0", "3"):
        module = model.get_submodule(name)
        o = OVERRIDES[name]
        layout = pt.make_tensor_layout(
            tuple(module.weight.shape), o["in_factors"], o["out_factor"], o.get("in_shape")
        )
        w = module.weight.detach().double().numpy()
        np.testing.assert_allclose(pt.project(w, layout), w, atol=1e-5)
        b = module.bias.detach().double().numpy()
        np.testing.assert_allclose(project_bias(b, o["bias_degree"]), b, atol=1e-5)


def test_compress_codes_tensor_layers_and_counts_bias_coefficients():
    model = _model()
    config = _scratch(epochs=1)
    data = toy_images()
    result = compress_(model, config, data=data, progress=False)
    assert len(result.history["retrain"]["loss"]) == 1  # the handler reports its retraining
    assert "qat" not in result.history and result.report == {}
    conv, lin = model[0], model[3]
    assert isinstance(conv, CodedConv2d) and isinstance(lin, CodedLinear)
    # conv: M = 2 x 3 x 3 = 18 moments (channel linear, kernel row free, column quadratic),
    # K = 2 intervals x 2 = 4 features. dense: M = 2 x 4 x 3 = 24, K = 2 x 2 = 4.
    assert conv.coded.params == 4 * 18 and conv.coded.extra["bias_params"] == 2
    assert lin.coded.params == 4 * 24 and lin.coded.extra["bias_params"] == 3
    assert "bias_params" not in model[5].coded.extra
    b = lin.bias.detach().double().numpy()
    np.testing.assert_allclose(project_bias(b, 2), b, atol=1e-6)
    # The coded model still runs.
    out = model(torch.as_tensor(data.x_test))
    assert out.shape == (16, 3) and torch.isfinite(out).all()


def test_handler_history_has_the_qat_stage_and_the_restarts():
    result = compress_(_model(), _scratch(epochs=1, qat_epochs=1, restarts=2), data=toy_images())
    assert len(result.history["retrain"]["loss"]) == len(result.history["qat"]["loss"]) == 1
    assert [run["seed"] for run in result.report["restarts"]] == [0, 1]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PolyCode(bias_degree=3), "Polynomial degree must be 1 or 2; got 3."),
        (lambda: PolyConfig(init="zeros"), "Unknown init 'zeros'; use 'float' or 'scratch'."),
        (
            lambda: PolyConfig(init="scratch", mode="project"),
            "PolyConfig.init='scratch' needs mode='reparam' (it draws the coefficients); "
            "got mode='project'.",
        ),
    ],
)
def test_config_rejects_bad_tensor_settings(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def _dense_and_conv_layers():
    torch.manual_seed(5)
    lin = nn.Linear(24, 6)
    dense = TensorPolyLayer(
        lin, pt.make_tensor_layout((6, 24), ((None, 1), (None, 2)), (3, 1), (2, 12))
    )
    conv = nn.Conv2d(12, 16, 3, padding=1)
    mixed = TensorPolyLayer(
        conv, pt.make_tensor_layout((16, 12, 3, 3), ((4, 1), None, None), (8, 1))
    )
    return [(dense, torch.rand(7, 24) * 5), (mixed, torch.rand(2, 12, 6, 6) * 5)]


def test_moment_scale_changes_the_coordinates_not_the_layer():
    for layer, x in _dense_and_conv_layers():
        before_w = layer.weight_matrix().detach().clone()
        before_y = layer(x).detach().clone()
        scale = torch.linspace(0.5, 40.0, layer.moment_scale.numel())
        layer.set_moment_scale_(scale)
        torch.testing.assert_close(layer.moment_scale, scale)
        torch.testing.assert_close(layer.weight_matrix(), before_w, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(layer(x), before_y, atol=1e-4, rtol=1e-4)
        n = scale.numel()
        message = f"A moment scale must be ({n},) positive numbers; got 0.0 among them."
        with pytest.raises(ValueError, match=re.escape(message)):
            layer.set_moment_scale_(torch.zeros_like(scale))
        message = f"A moment scale must be ({n},) positive numbers; got shape (3,)."
        with pytest.raises(ValueError, match=re.escape(message)):
            layer.set_moment_scale_(torch.ones(3))


def test_precondition_scales_every_moment_to_unit_rms():
    from fewops.methods.wacr.tensor import moment_rms, precondition_

    for layer, x in _dense_and_conv_layers():
        model = nn.Sequential(layer)
        raw = moment_rms(layer, x)
        assert float(raw.max() / raw.min()) > 3  # non-negative inputs: very uneven moments
        precondition_(model, [layer], x)
        torch.testing.assert_close(layer.moment_scale, raw)
        m = layer.moments(x)
        if m.dim() == 4:
            m = m.transpose(0, 1).reshape(m.shape[1], -1).t()
        rms = (m / layer.moment_scale).pow(2).mean(0).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=1e-4)


def _fit_dense(precondition: bool) -> float:
    """Final training loss of a tensor-family dense layer whose labels depend on moments of
    very different sizes (half the inputs 200x smaller), after the same Adam steps."""
    from fewops.methods.wacr.tensor import precondition_

    gen = torch.Generator().manual_seed(1)
    scales = torch.ones(12, 4)
    scales[:, 2:] = 0.005
    x = (torch.rand(512, 12, 4, generator=gen) * scales).reshape(512, 48)
    torch.manual_seed(0)
    layout = pt.make_tensor_layout((3, 48), ((4, 2), (None, 1)), None, (12, 4))
    layer = TensorPolyLayer(nn.Linear(48, 3), layout)
    m = layer.moments(x)
    teacher = torch.randn(3, m.shape[1], generator=gen) / m.std(0)
    y = ((m - m.mean(0)) @ teacher.t()).argmax(1)
    if precondition:
        precondition_(layer, [layer], x)
    opt = torch.optim.Adam(layer.parameters(), lr=3e-3)
    for _ in range(200):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(layer(x), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_preconditioned_training_gets_further_in_the_same_steps():
    assert _fit_dense(True) < 0.8 * _fit_dense(False)


def test_retraining_with_and_without_preconditioning_both_end_on_the_family():
    data = toy_images()
    for precondition in (True, False):
        model = _model()
        cfg = PolyConfig(
            mode="reparam",
            init="scratch",
            train=Recipe(epochs=2, lr=3e-3),
            precondition=precondition,
            layers=LayerSelection(overrides=OVERRIDES),
        )
        retrain_(model, cfg, data)
        w = model[3].weight.detach().double().numpy()
        layout = pt.make_tensor_layout(
            tuple(model[3].weight.shape), ((None, 1), None, (None, 2)), (6, 1), (8, 4, 4)
        )
        np.testing.assert_allclose(pt.project(w, layout), w, atol=1e-4)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_forward_is_what_the_encoder_stores(bits):
    """With quantization-aware training on, a layer computes with exactly the weight the
    encoder will decode (integer coefficients times their power-of-two steps)."""
    for layer, _ in _dense_and_conv_layers():
        w = layer.weight_matrix().detach().double().numpy()
        stored = pt.encode(w.reshape(layer.layout.shape), layer.layout, bits).matrix
        assert np.abs(stored - w).max() > 1e-4  # quantization changes the weight ...
        layer.quantize_(tensor_grid(layer.layout, bits))
        q = layer.weight_matrix().detach().double().numpy()
        np.testing.assert_allclose(q, stored, atol=1e-5 * np.abs(w).max())  # ... to this
        layer.quantize_(None)
        np.testing.assert_allclose(layer.weight_matrix().detach().double().numpy(), w, atol=1e-6)


def test_quantization_aware_retraining_ends_on_the_stored_grid():
    data = toy_images()

    def retrained(qat_epochs, ema=None):
        model = _model()
        config = _scratch(coef_bits=4, qat_epochs=qat_epochs, ema=ema)
        history = retrain_(model, config, data, progress=False)
        return model, history

    def encode_error(model):
        """Largest relative change the encoders make to the retrained weights (the tensor
        layers 0 and 3 and the 1-D layer 5, which trains in tensor form)."""
        errors = []
        for name in ("0", "3", "5"):
            module = model.get_submodule(name)
            o = OVERRIDES[name]
            w = module.weight.detach().double().numpy()
            if "axis" in o:
                stored = poly.encode(w, o["axis"], o["interval"], o["degree"], 4).matrix
            else:
                layout = pt.make_tensor_layout(
                    tuple(w.shape), o["in_factors"], o["out_factor"], o.get("in_shape")
                )
                stored = pt.encode(w, layout, 4).matrix
            errors.append(np.abs(stored.reshape(w.shape) - w).max() / np.abs(w).max())
        return max(errors)

    plain, _ = retrained(0)
    qat, history = retrained(2)
    assert len(history["qat"]["loss"]) == 2
    assert encode_error(plain) > 1e-3  # 4-bit coefficients move an ordinary retrained weight
    assert encode_error(qat) < 1e-5  # after QAT the encoder stores the weights as they are
    # With a moving average of the coefficients the model ends on the grid as well (the
    # average is rounded in the forward pass like the coefficients themselves).
    averaged, _ = retrained(2, ema=0.9)
    assert encode_error(averaged) < 1e-5
    assert not torch.equal(averaged.get_submodule("3").weight, qat.get_submodule("3").weight)


def test_restarts_keep_the_run_with_the_lowest_training_loss():
    data = toy_images()
    config = _scratch(seed=3, restarts=3)
    model = _model()
    history = retrain_(model, config, data, progress=False)
    runs = history["restarts"]
    assert [r["seed"] for r in runs] == [3, 4, 5]
    losses = [r["loss"] for r in runs]
    assert len(set(losses)) == 3  # different seeds, different runs
    assert history["loss"][-1] == min(losses)  # the history (and model) of the best run
    # The model holds the chosen run's weights: retraining that seed alone gives them again.
    best_seed = runs[int(np.argmin(losses))]["seed"]
    alone = _model()
    alone_config = replace(config, train=replace(config.train, seed=best_seed), restarts=1)
    retrain_(alone, alone_config, data, progress=False)
    for a, b in zip(model.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_augment_shift_moves_the_training_images_reproducibly():
    data = toy_images()

    def retrained(shift):
        model = _model()
        history = retrain_(model, _scratch(augment_shift=shift), data, progress=False)
        return model, history["loss"]

    plain, plain_loss = retrained(0)
    shifted, shifted_loss = retrained(1)
    again, again_loss = retrained(1)
    assert plain_loss != shifted_loss  # the shifted images train a different model
    assert shifted_loss == again_loss  # and the same one again from the same seed
    for a, b in zip(shifted.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_augment_shift_needs_images():
    flat = toy_images()
    flat.x_train = flat.x_train.reshape(len(flat.x_train), -1)
    model = nn.Sequential(nn.Linear(72, 8), nn.ReLU(), nn.Linear(8, 2))
    config = PolyConfig(train=Recipe(epochs=1), mode="reparam", augment_shift=2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "augment_shift=2 moves images, but the training inputs have shape (72,) "
            "(expected (channels, height, width))."
        ),
    ):
        retrain_(model, config, flat, progress=False)


def _with_dropout(rate: float) -> nn.Sequential:
    """_model() with a Dropout before its last layer (which becomes layer "6")."""
    layers = list(_model())
    return nn.Sequential(*layers[:5], nn.Dropout(rate), layers[5])


def _dropout_config(**changes) -> PolyConfig:
    overrides = {"0": OVERRIDES["0"], "3": OVERRIDES["3"], "6": OVERRIDES["5"]}
    return _scratch(layers=LayerSelection(overrides=overrides), **changes)


def test_dropout_rate_applies_while_retraining_and_is_restored():
    data = toy_images()
    kept = _with_dropout(0.5)
    kept_loss = retrain_(kept, _dropout_config(), data, progress=False)["loss"]
    off = _with_dropout(0.5)
    off_loss = retrain_(off, _dropout_config(dropout=0.0), data, progress=False)["loss"]
    zero = _with_dropout(0.0)  # the same network built without dropout trains the same way
    zero_loss = retrain_(zero, _dropout_config(), data, progress=False)["loss"]
    assert off_loss != kept_loss
    assert off_loss == zero_loss
    assert off[5].p == 0.5  # the model's own rate is back after retraining


def test_lr_schedule_cosine_anneals_the_retraining_rate():
    data = toy_images()
    constant = retrain_(_model(), _scratch(epochs=3), data, progress=False)["lr"]
    cosine = retrain_(_model(), _scratch(epochs=3, lr_schedule="cosine"), data, progress=False)
    assert constant == [1e-2] * 3
    assert cosine["lr"][0] == pytest.approx(1e-2)
    assert cosine["lr"][0] > cosine["lr"][1] > cosine["lr"][2] > 0
