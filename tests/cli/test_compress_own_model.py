"""``fewops compress`` with your own model (--model package.module:factory, --weights) and data
(--data file.npz), and the per-model defaults it picks without --preset."""

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fewops.cli import compress
from fewops.cli.main import main
from fewops.methods.registry import METHODS
from fewops.methods.wacr.config import WACR_FALLBACK_NOTE

MODEL_SOURCE = """
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(F.relu(self.a(x.view(x.size(0), -1))))


def build():
    return Net()
"""


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A folder with my_net.py and data.npz, as the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the working folder
    (tmp_path / "my_net.py").write_text(MODEL_SOURCE)
    rng = np.random.default_rng(0)
    x = rng.random((800, 6)).astype(np.float32)
    y = (x[:, 0] * 3).astype(np.int64).clip(0, 2)  # learnable: the class is x0's third
    np.savez(
        tmp_path / "data.npz", x_train=x[:600], y_train=y[:600], x_test=x[600:], y_test=y[600:]
    )
    yield tmp_path
    sys.modules.pop("my_net", None)  # imported by the CLI: must not leak into other tests


def test_own_model_with_weights_and_npz_data(own):
    torch.manual_seed(0)
    net = compress.custom_model("my_net:build", None)  # as the CLI builds it
    save_file(net.state_dict(), str(own / "w.safetensors"))
    argv = ["compress", "--method", "csd", "--model", "my_net:build", "--weights", "w.safetensors"]
    argv += ["--data", "data.npz", "--out", "run", "--quiet"]
    assert main(argv) == 0
    report = json.loads((own / "run" / "report.json").read_text())
    methods = [entry["method"] for entry in report["methods"]]
    assert methods == ["dense", "csd"]
    assert report["float_model"]["cached"] is False
    csd = report["methods"][1]
    assert csd["accuracy"]["simulated"] is not None
    assert (own / "run" / "model" / "model.json").is_file()


def test_own_model_without_weights_is_trained_first(own):
    argv = ["compress", "--method", "sst", "--model", "my_net:build", "--data", "data.npz"]
    argv += ["--float-epochs", "40", "--float-lr", "2e-2", "--epochs", "2", "--n", "2", "--k", "1"]
    argv += ["--out", "run", "--quiet"]
    assert main(argv) == 0
    report = json.loads((own / "run" / "report.json").read_text())
    assert report["float_model"]["accuracy"] > 0.7  # trained: chance is 1/3
    assert report["methods"][-1]["method"] == "sst"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", "no_such_module:build"],
            "--model 'no_such_module:build': cannot import 'no_such_module' (No module named "
            "'no_such_module').",
        ),
        (["--model", "my_net:nothing"], "--model 'my_net:nothing': 'my_net' has no callable "),
        (
            ["--model", "mlp", "--weights", "w.safetensors"],
            "--weights goes with --model package.module:factory (your own model).",
        ),
        (
            ["--model", "my_net:build", "--weights", "bad.safetensors"],
            "--weights 'bad.safetensors' is not a readable .safetensors file",
        ),
        (["--data", "missing.npz"], "No data file at 'missing.npz'"),
    ],
)
def test_bad_models_weights_and_data_are_refused_before_any_work(own, argv, message, capsys):
    (own / "bad.safetensors").write_bytes(b"not a safetensors file")
    calls = []
    original = compress.run_compress
    compress.run_compress = lambda *a, **k: calls.append(a)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["compress", "--method", "csd", *argv, "--out", "run"])
    finally:
        compress.run_compress = original
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert calls == []


@pytest.mark.parametrize(
    ("method", "model", "data", "preset"),
    [
        ("lcc", "mlp", "digits", "mlp-digits"),
        ("lcc", "mlp", "mnist", "mlp"),
        ("lcc", "lenet5", "mnist", "default"),
        ("wacr", "mnist-cnn", "mnist", "mnist-cnn-tensor-blocks-q"),
        ("wacr", "mlp", "digits", "mlp-digits"),
        ("sst", "mlp", "mnist", "default"),
    ],
)
def test_no_preset_runs_the_model_family_default(
    method, model, data, preset, monkeypatch, tmp_path
):
    seen = {}
    monkeypatch.setattr(compress, "run_compress", lambda m, config, out, **k: seen.update(c=config))
    monkeypatch.setattr(compress, "summary", lambda report: "")
    argv = ["compress", "--method", method, "--model", model, "--data", data]
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert seen["c"] == METHODS[method].config(preset)


def test_lcc_mlp_digits_default_is_the_measured_recipe():
    config = METHODS["lcc"].config_for("mlp", "digits")
    assert config.code.algorithm == "grow"
    assert (config.prune.prune_lambda, config.train.epochs, config.prune.finetune_epochs) == (
        0.0875,
        10,
        20,
    )
    assert config.progressive.code_finetune_epochs == 3


def test_wacr_without_a_measured_preset_refuses_to_code_blind(monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(compress, "run_compress", lambda *a, **k: ran.append(1) or {})
    monkeypatch.setattr(compress, "summary", lambda report: "")
    argv = ["compress", "--method", "wacr", "--model", "lenet5", "--data", "mnist", "--quiet"]
    argv += ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert f"error: {WACR_FALLBACK_NOTE} {compress.BLIND_DEFAULT_HINT}" in err
    assert ran == [] and not (tmp_path / "o").exists()
    # Asked for explicitly, or with any method option, it runs (and still says so).
    assert main([*argv, "--preset", "default"]) == 0
    assert main([*argv, "--epochs", "3", "--mode", "reparam"]) == 0
    assert f"fewops compress: note: {WACR_FALLBACK_NOTE}" in capsys.readouterr().err
    assert len(ran) == 2
