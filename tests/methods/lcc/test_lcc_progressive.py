"""Progressive coding (fine-tuning between coded layer groups) and the pruned-model cache."""

import copy
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from lcc_toy_data import toy_data
from torch import nn

from fewops.cli.compress import build_parser
from fewops.cli.options import config_from_options
from fewops.methods.lcc import (
    LCC_PRESETS,
    CodeFinetune,
    LCCCode,
    LCCConfig,
    LCCSearch,
    PruneSettings,
)
from fewops.methods.lcc import stages as lcc_stages
from fewops.methods.lcc.stages import code_groups
from fewops.nn.api import coded_layers, compress_
from fewops.nn.geometry import output_positions
from fewops.sim import evaluate as simulate
from fewops.train.fit import evaluate, fit
from fewops.train.recipe import Recipe


def _data(n=600, seed=0):
    return toy_data(n, seed, noise=0.3)


def _mlp(data, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3)
    )
    fit(model, data, epochs=4, lr=1e-2, progress=False, seed=seed)
    return model


def test_code_groups_split_in_model_order():
    names = ["a", "b", "c", "d", "e"]
    assert code_groups(names, None) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert code_groups(names, 2) == [["a", "b", "c"], ["d", "e"]]
    assert code_groups(names, 9) == [[n] for n in names]


def test_progressive_coding_fine_tunes_the_float_rest_and_keeps_masked_columns_zero():
    data = _data()
    model = _mlp(data)
    with torch.no_grad():
        model[3].weight[:, 5] = 0  # a masked input group of a later layer: must stay unread
    float_bias = model[1].bias.detach().clone()
    float_w2 = model[3].weight.detach().clone()
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.03, db_max=30.0, db_step=4.0),
        progressive=CodeFinetune(code_finetune_epochs=1),
        train=Recipe(lr=1e-2),
    )
    stages = compress_(model, cfg, data=data, workers=1).report
    json.dumps(stages, allow_nan=False)
    assert stages["search"]["mode"] == "progressive"
    groups = stages["code_finetune"]["groups"]
    assert [g["layers"] for g in groups] == [["1"], ["3"], ["5"]]
    assert [n for n, _ in coded_layers(model)] == ["1", "3", "5"]
    assert stages["tolerance_met"] is True
    assert stages["accuracy"] >= stages["float_accuracy"] - 0.03
    # biases of coded layers and the later float layers were trained after layer 1 was coded
    assert not torch.equal(model[1].bias, float_bias)
    layer3 = stages["lcc"]["layers"]["3"]
    assert layer3["inputs_read"] <= 23
    assert np.all(model[3].coded.matrix[:, 5] == 0)
    # layer 3 was coded from its fine-tuned weights, not from the float ones
    assert not np.allclose(model[3].coded.matrix, float_w2.double().numpy(), atol=1e-3)
    for name, module in coded_layers(model):
        g = module.coded.graph
        x = np.random.default_rng(1).integers(-64, 64, size=(10, g.num_inputs))
        y = simulate(g, x).astype(np.float64) * 2.0 ** (-g.output_scale)
        assert np.array_equal(y, x @ module.coded.matrix.T), name
        assert stages["lcc"]["layers"][name]["adds"] == module.coded.layer_cost(name).graph.adds


def test_progressive_coding_needs_data_and_checks_its_options():
    message = "CodeFinetune.code_finetune_epochs must be >= 0 (0: no progressive coding); got -1."
    with pytest.raises(ValueError, match=re.escape(message)):
        CodeFinetune(code_finetune_epochs=-1)
    message = "CodeFinetune.code_groups must be None or >= 1; got 0."
    with pytest.raises(ValueError, match=re.escape(message)):
        CodeFinetune(code_groups=0)
    message = (
        "CodeFinetune.code_finetune_slack is an accuracy fraction in [0, 1) "
        "(0.005 = 0.5 points); got 2.0."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        CodeFinetune(code_finetune_slack=2.0)
    data = _data()
    model = _mlp(data)
    x = torch.as_tensor(data.x_test[:100])
    y = torch.as_tensor(data.y_test[:100])
    message = (
        "Progressive coding (progressive.code_finetune_epochs > 0) fine-tunes the model and "
        "needs data=dataset."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        cfg = LCCConfig(progressive=CodeFinetune(code_finetune_epochs=1), validation=(x, y))
        compress_(model, cfg, workers=1)


def test_pruned_model_is_cached_and_reused(tmp_path):
    data = _data()
    base = _mlp(data)
    cfg = LCCConfig(
        code=LCCCode(target_db=20.0),
        search=LCCSearch(tolerance=0.9),
        prune=PruneSettings(prune_lambda=0.4, finetune_epochs=1),
        train=Recipe(epochs=2, lr=1e-2),
    )
    run = {"data": data, "workers": 1, "prune_cache": str(tmp_path)}
    first = copy.deepcopy(base)
    p1 = compress_(first, cfg, **run).report["prune"]
    assert p1["cached"] is False
    assert len(list(tmp_path.glob("pruned-*.safetensors"))) == 1
    second = copy.deepcopy(base)
    p2 = compress_(second, cfg, **run).report["prune"]
    assert p2["cached"] is True
    assert p2["params_after"] == p1["params_after"] < p1["params_before"]
    assert second[3].in_features == first[3].in_features
    assert np.array_equal(second[5].coded.matrix, first[5].coded.matrix)
    # other settings (or other weights) miss the cache
    third = copy.deepcopy(base)
    other = replace(cfg, prune=replace(cfg.prune, prune_lambda=0.3))
    assert compress_(third, other, **run).report["prune"]["cached"] is False
    assert len(list(tmp_path.glob("pruned-*.safetensors"))) == 2


def test_cli_progressive_options():
    args = ["--code-finetune-epochs", "2", "--code-groups", "3", "--code-finetune-slack", "0.005"]
    parsed = build_parser("lcc").parse_args(["--method", "lcc", "--out", "x", *args])
    cfg = config_from_options(LCC_PRESETS["default"], parsed)
    assert cfg.progressive == CodeFinetune(
        code_finetune_epochs=2, code_groups=3, code_finetune_slack=0.005
    )
    assert cfg == LCCConfig(progressive=cfg.progressive)
    assert LCC_PRESETS["default"].progressive.code_finetune_epochs == 0


def test_group_below_the_floor_is_measured_from_where_it_starts(monkeypatch):
    """A group that starts below the keep floor (pruning used the budget) is searched against
    its own starting accuracy, not pinned at the highest SQNR: with slack when fine-tuning
    follows, without for the last group."""
    data = _data()
    model = _mlp(data)
    names = ["1", "3", "5"]
    x, y = data.x_test, data.y_test
    start = evaluate(model, x, y)
    float_acc = 1.0  # as if pruning had cost the points up to 100%
    assert start < 0.94
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.03, db_max=30.0, db_step=4.0, max_rounds=1),
        progressive=CodeFinetune(code_finetune_epochs=1, code_finetune_slack=0.01),
        train=Recipe(lr=1e-2),
    )
    floors = []
    real_search = lcc_stages.search_levels

    def spy(model, mats, cost, x, y, floor, cfg):
        floors.append(floor)
        return real_search(model, mats, cost, x, y, floor, cfg)

    monkeypatch.setattr(lcc_stages, "search_levels", spy)
    positions = output_positions(model, torch.as_tensor(x[:1]), names)
    *_, report = lcc_stages.code_progressively(
        model, names, positions, data, x, y, float_acc, cfg, workers=1
    )
    search = cfg.search
    keep = float_acc - search.proxy_share * search.tolerance
    first = report["groups"][0]
    assert first["accuracy_before"] == pytest.approx(start)
    assert floors[0] == pytest.approx(start - search.proxy_share * search.tolerance - 0.01)
    assert floors[0] < keep - 0.01 - 0.05  # far below the float-relative floor
    last = report["groups"][-1]
    last_start = min(keep, last["accuracy_before"] - search.proxy_share * search.tolerance)
    assert last_start < keep
    assert floors[-1] == pytest.approx(last_start)  # the last group: start-relative, no slack
    assert first["proxy_levels"]["1"] < search.db_max
    assert set(last["proxy_levels"].values()) != {search.db_max}


def test_progressive_coding_folds_each_groups_batchnorm_as_it_codes_it():
    data = _data()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 24),
        nn.BatchNorm1d(24),
        nn.ReLU(),
        nn.Linear(24, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 3),
    )
    fit(model, data, epochs=4, lr=1e-2, progress=False, seed=0)
    model.eval()
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.05, db_max=30.0, db_step=4.0),
        progressive=CodeFinetune(code_finetune_epochs=1),
    )
    stages = compress_(model, cfg, data=data, workers=1).report
    assert stages["fold"] == [
        {"layer": "1", "batchnorm": "2"},
        {"layer": "4", "batchnorm": "5"},
    ]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert stages["accuracy"] >= stages["float_accuracy"] - 0.05
