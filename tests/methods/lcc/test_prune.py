"""Group-lasso pruning: exact removal of zero groups, feeders shrink with them, bad lambdas refused."""

import re

import pytest
import torch
from torch import nn

from fewops.methods.lcc.prune import (
    GroupLasso,
    GroupProx,
    find_feeders,
    group_norms,
    remove_zero_groups,
)
from fewops.models import build


def _zero_groups(module, idx):
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            module.weight[:, idx] = 0
        else:
            module.weight[:, idx] = 0


def test_mlp_removal_keeps_outputs_and_shrinks_feeders():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)
    )
    _zero_groups(model[1], [0, 5])  # network inputs: masked, not removable
    _zero_groups(model[3], [1, 2, 9])  # fed by model[1]: removable
    _zero_groups(model[5], [4])
    x = torch.randn(64, 20)
    before = model(x)
    report = remove_zero_groups(model)
    after = model(x)
    assert torch.allclose(before, after, atol=1e-6, rtol=0)  # only summation order differs
    assert model[1].weight.shape == (13, 20) and model[1].bias.shape == (13,)
    assert model[3].weight.shape == (11, 13) and model[3].in_features == 13
    assert model[5].weight.shape == (3, 11)
    assert report.layers["1"]["masked"] == 2 and report.layers["1"]["removed"] == 0
    assert report.layers["3"]["removed"] == 3 and report.layers["3"]["feeder"] == "1"
    assert report.params_after == 13 * 20 + 11 * 13 + 3 * 11 < report.params_before


def test_resnet_block_conv2_shrinks_conv1_and_bn():
    torch.manual_seed(1)
    model = build("resnet20", (1, 12, 12), 4).eval()
    feeders = find_feeders(model)
    assert feeders["stages.0.0.conv2"].feeder == "stages.0.0.conv1"
    assert feeders["stages.0.0.conv2"].between == ("stages.0.0.bn1", "stages.0.0.relu1")
    # conv1 reads the residual stream: no feeder to shrink
    assert "stages.0.1.conv1" not in feeders and "fc" not in feeders
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    conv2 = model.get_submodule("stages.1.0.conv2")
    _zero_groups(conv2, [0, 3, 31])
    _zero_groups(model.get_submodule("stages.0.1.conv1"), [2])
    x = torch.rand(5, 1, 12, 12)
    before = model(x)
    remove_zero_groups(model)
    assert model.get_submodule("stages.1.0.conv1").out_channels == 29
    assert model.get_submodule("stages.1.0.bn1").running_mean.shape == (29,)
    assert conv2.weight.shape == (32, 29, 3, 3)
    assert torch.allclose(before, model(x), atol=1e-5, rtol=0)


def test_lambda_that_prunes_a_whole_layer_is_refused():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    GroupProx(lam=1e6, lr=1.0, layers=["2"])(model)
    assert float(group_norms(model[2]).detach().max()) == 0.0
    message = (
        "Pruning with group-lasso strength lambda=1e+06 drove all 4 input groups of layer '2' "
        "to zero: removing them would delete the layer and disconnect the network. Use a "
        "smaller lambda (e.g. 250000), or leave this layer out of the pruning."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        remove_zero_groups(model, lam=1e6)
    assert model[2].weight.shape == (2, 4)  # nothing was changed


def test_prox_zeroes_small_groups_exactly_and_shrinks_others():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.1, 0.0], [4.0, 0.0, 0.2]]))
    GroupProx(lam=1.0, lr=0.5)(model)
    w = model[0].weight
    assert torch.allclose(w[:, 0], torch.tensor([2.7, 3.6]))  # norm 5 -> 4.5
    assert torch.equal(w[:, 1:], torch.zeros(2, 2))


def test_group_lasso_value_and_bad_lambda():
    model = nn.Sequential(nn.Conv2d(2, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1))
    assert float(GroupLasso(0.5)(model).detach()) == pytest.approx(3.5)
    message = "The group-lasso strength lambda must be a finite number >= 0; got -1."
    with pytest.raises(ValueError, match=re.escape(message)):
        GroupLasso(-1)


def test_relative_prox_shrinks_every_layer_at_the_same_pace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 3))
    with torch.no_grad():
        model[0].weight.mul_(100.0)  # group norms two orders of magnitude apart
    before = [group_norms(model[i]).detach().clone() for i in (0, 2)]
    prox = GroupProx(lam=0.1, lr=1e-3, relative=True, steps_per_epoch=10)
    prox(model)
    for i, old in zip((0, 2), before, strict=True):
        t = 0.1 * float(old.square().mean().sqrt()) / 10  # lam * rms_0 / steps_per_epoch
        new = group_norms(model[i]).detach()
        assert torch.allclose(new, (old - t).clamp_min(0), rtol=1e-5, atol=1e-6)
    # the scale is the one of the first step, not recomputed as the norms shrink
    scale = dict(prox.scale)
    prox(model)
    assert prox.scale == scale
    with pytest.raises(ValueError, match=re.escape("steps_per_epoch must be at least 1; got 0.")):
        GroupProx(lam=1.0, lr=1e-3, relative=True, steps_per_epoch=0)
