import re

import numpy as np
import pytest
import torch
from torch import nn

from fewops.data import load
from fewops.methods.baselines import CSDCode, CSDConfig, DenseCode, DenseConfig
from fewops.nn.api import compress_
from fewops.nn.to_network import compile_network


@pytest.fixture(scope="module")
def digits():
    return load("digits", seed=0)


def trained(model, data, steps=150):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.mark.parametrize("config", [CSDConfig(CSDCode(bits=6)), DenseConfig(DenseCode(bits=12))])
def test_integer_predictions_equal_float_reference_on_whole_test_set(digits, config):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    trained(model, digits)
    compress_(model, config)
    net = compile_network(model, digits.x_train[:300])
    logits_int = net.run(digits.x_test)
    reference = net.reference(digits.x_test)
    assert np.array_equal(logits_int.argmax(1), reference.argmax(1))
    # Stronger: the logits themselves agree exactly.
    assert np.array_equal(np.ldexp(logits_int.astype(np.float64), net.exponent), reference)
    assert (logits_int.argmax(1) == digits.y_test).mean() > 0.85


def test_conv_network_with_pooling_is_exact(digits):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 10)
    )
    trained(model, digits, steps=60)
    compress_(model, CSDConfig(CSDCode(bits=8)))
    net = compile_network(model, digits.x_train[:200])
    t = net.run(digits.x_test)
    r = net.reference(digits.x_test)
    assert np.array_equal(np.ldexp(t.astype(np.float64), net.exponent), r)


def test_uncoded_layer_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Layer '1' (Linear) is not coded; code every Linear and Conv2d layer (fewops.compress_) before integer simulation."
        ),
    ):
        compile_network(model, np.zeros((2, 1, 8, 8)))


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Sigmoid())
    compress_(model, CSDConfig(CSDCode(bits=8)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Integer simulation does not support module '2' (Sigmoid). Supported: coded Linear/Conv2d, ReLU"
        ),
    ):
        compile_network(model, np.zeros((2, 1, 8, 8)))
