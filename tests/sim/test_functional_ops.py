"""The integer simulator on models written with functional ops (not an nn.Sequential), the one
error that names every unsupported op, and saving such a model with its traced network."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewops.io.coded_model import load_coded_model, save_coded_model
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.network import Network
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network


class Functional(nn.Module):
    """Conv, F.relu, F.max_pool2d, x.view(x.size(0), -1), torch.clamp, F.relu6, reshape with
    x.shape[0], torch.flatten, F.dropout: what people write in forward()."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = x.view(x.size(0), -1)
        x = torch.clamp(self.fc(x), 0, 0.5)
        x = F.relu6(x)
        x = torch.flatten(x.reshape(x.shape[0], 4, 4), 1)
        return self.out(F.dropout(x, 0.1, self.training))


def images(n, seed=0):
    return np.random.default_rng(seed).random((n, 1, 8, 8))


def coded_functional():
    torch.manual_seed(0)
    model = Functional().eval()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    return model


def test_functional_ops_simulate_bit_exactly_and_match_torch():
    model = coded_functional()
    net = compile_network(model, images(32, seed=1))
    assert isinstance(net, Network)
    x = images(64)
    t = net.run(x)
    assert np.array_equal(np.ldexp(t.astype(np.float64), net.exponent), net.reference(x))
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert (net.logits(t).argmax(1) == logits.argmax(1)).mean() >= 0.9
    assert np.abs(net.logits(t) - logits).max() < 0.05 * np.abs(logits).max() + 0.01


def test_the_clamp_caps_what_it_says():
    class Capped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.clamp(self.a(x), min=0, max=0.25))

    torch.manual_seed(0)
    model = Capped().eval()
    with torch.no_grad():
        model.a.weight.copy_(torch.eye(4) * 4)
        model.a.bias.zero_()
        model.b.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model.b.bias.zero_()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    x = np.array([[0.5, 0.01, 0, 0]])  # 2.0 is capped at 0.25; 0.04 passes
    net = compile_network(model, np.array([[1.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(net.logits(net.run(x))[0], [0.25, 0.04], atol=0.01)


def test_every_unsupported_op_is_named_in_one_error():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            h = torch.tanh(x.view(x.size(0), -1))
            return torch.sigmoid(self.fc(h))

    model = Odd()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    message = (
        "Integer simulation does not support function torch.tanh at node 'tanh'; function "
        "torch.sigmoid at node 'sigmoid'. Supported: coded Linear/Conv2d, ReLU"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_network(model, images(4))


def test_max_pool_is_named_not_its_dispatcher():
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.flatten(F.max_pool2d(self.conv(x), 2, padding=1, ceil_mode=True), 1)

    model = Padded()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    with pytest.raises(ValueError, match=re.escape("max pooling 'max_pool2d' with ceil_mode")):
        compile_network(model, images(4))


def test_a_clamp_that_is_not_relu_like_is_named():
    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return torch.clamp(self.fc(x.flatten(1)), -1, 1)

    model = Shifted()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    message = (
        "Integer simulation does not support clamp with min=-1 at node 'clamp' (only min=0, the "
        "ReLU-like clamp torch.clamp(x, 0, max), is simulated)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_network(model, images(4))


def test_a_non_sequential_model_saves_with_its_network(tmp_path):
    model = coded_functional()
    net = compile_network(model, images(16))
    out = save_coded_model(model, tmp_path / "m", method="csd", input_shape=(1, 8, 8), network=net)
    saved = load_coded_model(out)
    assert [name for name, _ in saved.layers] == ["conv", "fc", "out"]
    assert saved.model is None  # no torch module tree, but the integer network as simulated
    x = images(8, seed=3)
    assert np.array_equal(saved.integer_network().run(x), net.run(x))
    for (_, layer), original in zip(saved.layers, (model.conv, model.fc, model.out), strict=True):
        np.testing.assert_array_equal(layer.coded.matrix, original.coded.matrix)
