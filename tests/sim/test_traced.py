"""Integer simulation of coded networks that are not a chain (ResNets), through torch.fx."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from fewops.data import load
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.methods.lcc import LCCCode, LCCConfig
from fewops.models import build
from fewops.nn.api import compress_
from fewops.nn.fold import fold_batchnorm_
from fewops.nn.to_network import SUPPORTED_TEXT, compile_network
from fewops.nn.to_network import compile_network as compile_traced


def _images(n, size=12, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size))


def _coded_resnet(shortcut, config, seed=0):
    torch.manual_seed(seed)
    model = build("resnet20", (1, 12, 12), 10, shortcut=shortcut).eval()
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():  # trained-looking norms, so folding really rescales
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    fold_batchnorm_(model)
    compress_(model, config, input_shape=(1, 12, 12))
    return model


@pytest.mark.parametrize(
    ("shortcut", "config"),
    [
        ("A", CSDConfig(CSDCode(bits=8))),
        ("B", CSDConfig(CSDCode(bits=6))),
        ("A", LCCConfig(code=LCCCode(target_db=30.0), share=False)),
    ],
)
def test_resnet_runs_bit_exactly_and_matches_torch(shortcut, config):
    model = _coded_resnet(shortcut, config)
    x = _images(24)
    net = compile_traced(model, _images(16, seed=1))
    t = net.run(x)
    assert t.dtype == np.int64
    reference = net.reference(x)
    assert np.array_equal(np.ldexp(t.astype(np.float64), net.exponent), reference)
    assert net.divisor == 3 * 3  # the global average pool of the last 3x3 stage, as a sum
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert (net.logits(t).argmax(1) == logits.argmax(1)).mean() >= 0.9  # 8-bit activations
    spread = np.abs(logits).max()
    assert np.abs(net.logits(t) - logits).max() < 0.1 * spread


def test_a_chain_gives_the_same_logits_as_the_sequential_simulator():
    digits = load("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    compress_(model, CSDConfig(CSDCode(bits=6)))
    chain = compile_network(model, digits.x_train[:300])
    traced = compile_traced(model, digits.x_train[:300])
    t = traced.run(digits.x_test)
    assert np.array_equal(t, chain.run(digits.x_test))
    assert (t.argmax(1) == digits.y_test).mean() > 0.85


def test_csd_baseline_folds_batchnorm_so_a_resnet_simulates_as_coded():
    torch.manual_seed(0)
    model = build("resnet20", (1, 12, 12), 10).eval()
    compress_(model, CSDConfig(CSDCode(bits=8)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    net = compile_network(model, _images(8))
    x = _images(6, seed=2)
    assert np.array_equal(np.ldexp(net.run(x).astype(np.float64), net.exponent), net.reference(x))


def test_compile_network_takes_residual_models_too():
    model = _coded_resnet("A", CSDConfig(CSDCode(bits=8)))
    net = compile_network(model, _images(8))
    x = _images(6, seed=3)
    assert np.array_equal(net.predict(x), compile_traced(model, _images(8)).predict(x))


def test_unfolded_norm_uncoded_layer_and_unknown_op_are_named():
    torch.manual_seed(0)
    model = build("resnet20", (1, 12, 12), 10).eval()
    supported = f"supported: {SUPPORTED_TEXT}."
    assert SUPPORTED_TEXT.startswith("coded Linear/Conv2d, ReLU (nn.ReLU, F.relu, torch.relu, ")
    assert SUPPORTED_TEXT.endswith(
        "Dropout and Identity (fold BatchNorm first, e.g. LCCConfig(fold_batchnorm=True))"
    )
    message = (
        "Layer 'stem.0' (Conv2d) is not coded; code every Linear and Conv2d layer "
        "(fewops.compress_) before integer simulation."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_traced(model, _images(2))
    compress_(model, CSDConfig(CSDCode(bits=8), fold_batchnorm=False))
    message = f"Integer simulation does not support module 'stem.1' (BatchNorm); {supported}"
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_traced(model, _images(2))

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return torch.sigmoid(self.lin(x.flatten(1)))

    gated = Gate()
    compress_(gated, CSDConfig(CSDCode(bits=8)))
    # The function is named as people write it, and every unsupported node in one error.
    message = (
        "Integer simulation does not support function torch.sigmoid at node 'sigmoid'. "
        f"Supported: {SUPPORTED_TEXT}."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        compile_traced(gated, np.random.default_rng(0).random((2, 1, 2, 2)))
