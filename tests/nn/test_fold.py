"""Folding inference-mode BatchNorm into the layer that feeds it."""

import re

import pytest
import torch
from torch import nn

from fewops.models import build
from fewops.nn.fold import find_foldable, fold_batchnorm_


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen))


def test_resnet20_folds_every_norm_and_keeps_its_outputs():
    torch.manual_seed(0)
    model = build("resnet20", (1, 28, 28), 10).eval()
    _randomise_norms(model)
    x = torch.rand(4, 1, 28, 28)
    before = model(x)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm_(model)
    assert len(folded) == norms == 19
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.get_submodule("stem.0").bias is not None
    torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)


def test_only_named_layers_and_only_private_pairs_fold():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 4)
            self.bn = nn.BatchNorm1d(4)
            self.conv_out = nn.Linear(4, 4)
            self.bn2 = nn.BatchNorm1d(4)

        def forward(self, x):
            h = self.lin(x)
            y = self.conv_out(h)
            return self.bn(h) + self.bn2(y)  # lin is also read by conv_out: not foldable

    model = Shared().eval()
    _randomise_norms(model)
    assert find_foldable(model) == {"conv_out": "bn2"}
    x = torch.randn(6, 5)
    before = model(x)
    assert fold_batchnorm_(model, layers=["lin"]) == []
    assert [f["batchnorm"] for f in fold_batchnorm_(model)] == ["bn2"]
    assert isinstance(model.bn, nn.BatchNorm1d) and isinstance(model.bn2, nn.Identity)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_linear_with_bias_and_norm_without_affine():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 3), nn.BatchNorm1d(3, affine=False), nn.ReLU()).eval()
    model[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    model[1].running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
    x = torch.randn(5, 6)
    before = model(x)
    fold_batchnorm_(model)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_norm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    message = (
        "BatchNorm '1' keeps no running statistics (track_running_stats=False), so it has no "
        "inference form to fold into '0'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        fold_batchnorm_(model)
