"""The LCC network pipeline: search, coding, reports and its refusals."""

import json
import re

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
from fewops.methods.lcc.config import ToleranceNotMet
from fewops.nn.api import LayerSelection, coded_layers, compress_
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.nn.to_network import compile_network
from fewops.sim import evaluate as simulate
from fewops.sim import graph_matrix
from fewops.train.fit import fit
from fewops.train.recipe import Recipe


def _toy_data(n=600, seed=0):
    """Linearly separable 3-class data on 1x4x4 images (some pixels always zero)."""
    return toy_data(n, seed, noise=0.15, dead_pixels=3)


def _fixed(db, **kwargs):
    """A config coding every layer at ``db`` dB (no search)."""
    return LCCConfig(code=LCCCode(target_db=db, **kwargs.pop("code", {})), **kwargs)


def _trained_mlp(data, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    fit(model, data, epochs=4, lr=1e-2, progress=False, seed=seed)
    return model


def test_pipeline_codes_every_layer_within_tolerance_and_reports_stages():
    data = _toy_data()
    model = _trained_mlp(data)
    cfg = LCCConfig(search=LCCSearch(tolerance=0.02, db_max=30.0, db_step=4.0))
    stages = compress_(model, cfg, data=data, workers=1).report
    json.dumps(stages, allow_nan=False)  # JSON-able for report.json
    assert [n for n, _ in coded_layers(model)] == ["1", "3"]
    assert stages["tolerance_met"] is True
    assert stages["accuracy"] >= stages["float_accuracy"] - 0.02
    layers = stages["lcc"]["layers"]
    assert set(layers) == {"1", "3"}
    for name, module in coded_layers(model):
        g = module.coded.graph
        assert layers[name]["adds"] == module.coded.layer_cost(name).graph.adds
        x = np.random.default_rng(1).integers(-128, 128, size=(20, g.num_inputs))
        y = simulate(g, x).astype(np.float64) * 2.0 ** (-g.output_scale)
        assert np.array_equal(y, x @ module.coded.matrix.T)
        assert np.array_equal(graph_matrix(g), module.coded.matrix)
        assert layers[name]["sqnr_db"] >= layers[name]["level_db"] - 0.5


def test_fixed_target_needs_no_data_and_meets_sqnr():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    result = compress_(model, _fixed(30.0, share=False), workers=1)
    assert isinstance(model[0], CodedLinear)
    for layer in result.report["lcc"]["layers"].values():
        assert layer["sqnr_db"] >= 30.0
        assert layer["clusters"] == layer["inputs_read"]


@pytest.mark.parametrize("algorithm", ["grow", "chain"])
def test_every_matrix_algorithm_codes_a_network(algorithm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    cfg = _fixed(30.0, share=False, code={"algorithm": algorithm})
    result = compress_(model, cfg, workers=1)
    for name, module in coded_layers(model):
        layer = result.report["lcc"]["layers"][name]
        assert layer["sqnr_db"] >= 30.0
        assert np.array_equal(graph_matrix(module.coded.graph), module.coded.matrix)


def test_search_without_data_is_refused():
    model = nn.Sequential(nn.Linear(4, 2))
    message = (
        "LCCConfig(code=LCCCode(target_db=None)) searches per-layer SQNRs against accuracy and "
        "needs data: pass data=dataset (or LCCConfig(validation=(x, y))), or set "
        "code.target_db to code every layer at one SQNR."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, LCCConfig(), workers=1)


def test_unmet_tolerance_reports_the_best_found():
    data = _toy_data()
    model = _trained_mlp(data)
    search = LCCSearch(tolerance=0.0, db_min=1.0, db_max=1.0, max_rounds=1)
    cfg = LCCConfig(search=search, share=False)
    with pytest.warns(ToleranceNotMet, match="could not keep accuracy within 0"):
        stages = compress_(model, cfg, data=data, workers=1).report
    assert stages["tolerance_met"] is False
    assert stages["accuracy"] < stages["float_accuracy"]
    assert len(stages["search"]["rounds"]) == 1


def test_uncodable_layer_is_named():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2))
    rest = (
        "; the pipeline codes Linear and ungrouped, zero-padded Conv2d layers. Skip it with "
        "LCCConfig(layers=LayerSelection(skip=('0',))) to keep it in float."
    )
    message = f"LCC cannot code layer '0': it is a Conv1d{rest}"
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, _fixed(20.0), workers=1)
    grouped = nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Flatten(), nn.Linear(8, 2))
    message = f"LCC cannot code layer '0': it is a grouped convolution (groups=2){rest}"
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(grouped, _fixed(20.0), workers=1)
    # skipped, it stays in float and the rest is coded
    cfg = _fixed(20.0, layers=LayerSelection(skip=("0",)))
    compress_(grouped, cfg, input_shape=(2, 2, 2), workers=1)
    assert isinstance(grouped[2], CodedLinear) and isinstance(grouped[0], nn.Conv2d)


def test_pruning_in_the_pipeline_shrinks_and_refuses_a_whole_layer():
    data = _toy_data()
    model = _trained_mlp(data)
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.05),
        prune=PruneSettings(prune_lambda=0.4, finetune_epochs=3),
        train=Recipe(epochs=2, lr=1e-2),
    )
    prune = compress_(model, cfg, data=data, workers=1).report["prune"]
    assert prune["params_after"] < prune["params_before"]
    assert prune["layers"]["3"]["removed"] > 0 and prune["layers"]["3"]["feeder"] == "1"
    assert model[3].in_features == model[1].out_features < 24
    model = _trained_mlp(data)
    cfg = LCCConfig(prune=PruneSettings(prune_lambda=1e4), train=Recipe(epochs=1, lr=1e-2))
    message = (
        "Pruning with group-lasso strength lambda=10000 drove all 16 input groups of layer '1' "
        "to zero: removing them would delete the layer and disconnect the network. Use a "
        "smaller lambda (e.g. 2500), or leave this layer out of the pruning."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, cfg, data=data, workers=1)


def _cli_config(*options: str) -> LCCConfig:
    """The config ``fewops compress --method lcc OPTIONS`` builds."""
    args = build_parser("lcc").parse_args(["--method", "lcc", "--out", "x", *options])
    return config_from_options(LCC_PRESETS["default"], args)


def test_cli_options_make_the_config():
    cfg = _cli_config(
        "--algorithm", "fs", "--tolerance", "0.01", "--no-share", "--prune-layers", '["1", "3"]'
    )
    assert cfg == LCCConfig(
        code=LCCCode(algorithm="fs"),
        search=LCCSearch(tolerance=0.01),
        prune=PruneSettings(prune_layers=("1", "3")),
        share=False,
    )
    assert cfg.code.algorithm == "fs" and cfg.search.tolerance == pytest.approx(0.01)
    assert cfg.share is False
    assert _cli_config() == LCCConfig()
    message = "Unknown LCC algorithm 'x'; choose one of dmp, rs, fs, mixed, grow, chain, best."
    with pytest.raises(ValueError, match=re.escape(message)):
        LCCCode(algorithm="x")


def test_cli_options_cover_every_part_of_the_config():
    cfg = _cli_config(
        *("--target-db", "30", "--S", "3", "--db-step", "4", "--prune-lambda", "0.2"),
        *("--finetune-epochs", "5", "--no-prune-relative", "--code-finetune-epochs", "2"),
        *("--code-groups", "3", "--code-finetune-slack", "0.005", "--epochs", "7", "--lr", "0.01"),
        *("--seed", "4", "--share-margin-db", "3", "--no-fold-batchnorm", "--csd-bits", "10"),
        *("--skip-layers", "0", "--layer-overrides", '{"3": {"algorithm": "grow"}}'),
    )
    api = LCCConfig(
        code=LCCCode(target_db=30.0, S=3),
        search=LCCSearch(db_step=4.0),
        prune=PruneSettings(prune_lambda=0.2, finetune_epochs=5, prune_relative=False),
        progressive=CodeFinetune(code_finetune_epochs=2, code_groups=3, code_finetune_slack=0.005),
        train=Recipe(epochs=7, lr=0.01, seed=4),
        share_margin_db=3.0,
        fold_batchnorm=False,
        csd_bits=10,
        layers=LayerSelection(skip=("0",), overrides={"3": {"algorithm": "grow"}}),
    )
    assert cfg == api
    demo = config_from_options(
        LCC_PRESETS["demo"],
        build_parser("lcc", "demo").parse_args(["--method", "lcc", "--out", "x"]),
    )
    assert demo.search.search_samples == 1000


def test_a_per_layer_override_of_a_search_setting_is_refused():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    cfg = LCCConfig(layers=LayerSelection(overrides={"0": {"tolerance": 0.1}}))
    message = (
        "Override for layer '0' sets 'tolerance', which is not a field of LCCCode (per-layer "
        "overrides may set only: S, algorithm, max_datapath_bits, mem, slice_width, target_db)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, cfg, workers=1)


def test_a_per_layer_code_override_changes_only_that_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    cfg = _fixed(
        30.0,
        code={"algorithm": "dmp"},
        share=False,
        layers=LayerSelection(overrides={"2": {"algorithm": "grow"}}),
    )
    layers = compress_(model, cfg, workers=1).report["lcc"]["layers"]
    assert layers["0"]["algorithm_used"] == "dmp" and layers["2"]["algorithm_used"] == "grow"
    searched = LCCConfig(layers=LayerSelection(overrides={"2": {"target_db": 20.0}}))
    message = (
        "Layer '2' overrides target_db=20.0, but the config searches every layer's SQNR "
        "(code.target_db=None); set code.target_db to code all layers at fixed SQNRs, or leave "
        "target_db out of the overrides."
    )
    fresh = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(fresh, searched, workers=1)


def test_conv_layers_code_through_im2col_with_positions():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2), nn.Flatten()
    )
    x = torch.rand(3, 2, 7, 7)
    with torch.no_grad():
        ref = model(x)
    # dmp, whose thin-matrix fallback to grow this test checks (grow is the default).
    cfg = _fixed(35.0, code={"algorithm": "dmp"})
    report = compress_(model, cfg, input_shape=(2, 7, 7), workers=1).report
    assert isinstance(model[0], CodedConv2d) and isinstance(model[2], CodedConv2d)
    layers = report["lcc"]["layers"]
    assert layers["0"]["positions"] == 49 and layers["2"]["positions"] == 9
    assert report["lcc"]["adds"] == 49 * layers["0"]["adds"] + 9 * layers["2"]["adds"]
    # DMP reaches 35 dB on conv2's thin 4 x 54 matrix only through shifts of 2^-170 and below:
    # that layer is recoded with grow (max_datapath_bits=64) and its record says so.
    for layer in layers.values():
        assert layer["datapath_bits"] <= 64
    fallback = layers["2"]["width_fallback"]
    assert layers["2"]["algorithm_used"] == "grow" and fallback["from"] == "dmp"
    assert fallback["datapath_bits"] > 64
    g = model[2].coded.graph
    # Graph.matrix() converts the exact integers to float64; LCC graphs can hold shifts far below
    # 2**-53 of the largest entry, so compare to float64 precision here.
    assert np.allclose(graph_matrix(g), model[2].coded.matrix, rtol=0, atol=1e-15)
    w32 = model[2].weight.double().reshape(4, -1).numpy()
    assert np.allclose(w32, model[2].coded.matrix, rtol=1e-6, atol=0)
    with torch.no_grad():
        out = model(x)
    err = float((out - ref).norm() / ref.norm())
    assert err < 0.05  # both layers at >= 35 dB


def test_default_pruning_leaves_out_a_one_channel_stem():
    data = _toy_data()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 3),
    )
    fit(model, data, epochs=3, lr=1e-2, progress=False)
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.05),
        prune=PruneSettings(prune_lambda=0.3, finetune_epochs=1),
        train=Recipe(epochs=1, lr=1e-2),
    )
    prune = compress_(model, cfg, data=data, workers=1).report["prune"]["layers"]
    # its single input channel could only be pruned whole, which would be refused
    assert set(prune) == {"3", "6"}


def test_pruned_shared_coded_network_simulates_bit_exactly():
    """The whole network after pruning, sharing and LCC, run in integers, equals its float64
    evaluation with the decoded weights (logits, not only predictions)."""
    data = _toy_data()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3)
    )
    fit(model, data, epochs=4, lr=1e-2, progress=False, seed=0)
    cfg = LCCConfig(
        search=LCCSearch(tolerance=0.03, db_max=30.0, db_step=4.0),
        prune=PruneSettings(prune_lambda=0.3, finetune_epochs=1),
        train=Recipe(epochs=2, lr=1e-2),
    )
    stages = compress_(model, cfg, data=data, workers=1).report
    assert sum(v["removed"] for v in stages["prune"]["layers"].values()) > 0  # really pruned
    assert any(v["clusters"] < v["inputs_read"] for v in stages["lcc"]["layers"].values())
    net = compile_network(model, data.x_train[:200])
    t = net.run(data.x_test)
    r = net.reference(data.x_test)
    assert np.array_equal(np.ldexp(t.astype(np.float64), net.exponent), r)
    with torch.no_grad():  # the reference is the coded model itself, up to activation rounding
        torch_pred = model(torch.as_tensor(data.x_test)).argmax(1).numpy()
    assert (r.argmax(1) == torch_pred).mean() > 0.95


def test_batchnorm_is_folded_before_coding_so_no_multiplier_is_left():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)
    ).eval()
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 3.0)
    bn.weight.data.uniform_(0.5, 2.0)
    x = torch.rand(8, 1, 6, 6)
    before = model(x).detach()
    report = compress_(model, _fixed(60.0, share=False), input_shape=(1, 6, 6), workers=1).report
    assert report["fold"] == [{"layer": "0", "batchnorm": "1"}]
    assert isinstance(model[1], nn.Identity)
    err = (model(x) - before).norm() / before.norm()
    assert err < 0.01  # 60 dB layers, the folded norm included
    kept = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    cfg = _fixed(30.0, fold_batchnorm=False)
    report = compress_(kept, cfg, input_shape=(1, 5, 5), workers=1).report
    assert isinstance(kept[1], nn.BatchNorm2d) and "fold" not in report


def test_max_datapath_bits_option():
    assert _cli_config().code.max_datapath_bits == 64
    assert _cli_config("--max-datapath-bits", "none").code.max_datapath_bits is None
    assert _cli_config("--max-datapath-bits", "48").code.max_datapath_bits == 48
    message = "LCCCode.max_datapath_bits must be None or at least 8 (the input width); got 4."
    with pytest.raises(ValueError, match=re.escape(message)):
        LCCCode(max_datapath_bits=4)
