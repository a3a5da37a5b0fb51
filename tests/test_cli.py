import json

import pytest

from fewops.cli.main import main

REQUIRED_TOTALS = {"adds", "mults", "negs", "weight_bits", "params", "table_reads", "bias_adds"}


@pytest.mark.slow
def test_compress_csd_writes_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "compress",
            "--method",
            "csd",
            "--model",
            "mlp",
            "--data",
            "digits",
            "--hidden",
            "32",
            "--float-epochs",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "digits" and report["model"] == "mlp"
    names = [m["method"] for m in report["methods"]]
    assert names[:2] == ["dense", "csd"]
    for m in report["methods"]:
        assert REQUIRED_TOTALS <= set(m["totals"])
        assert 0.0 <= m["accuracy"]["simulated"] <= 1.0
        for layer in m["layers"]:
            assert {"name", "shape", "adds", "mults", "weight_bits", "params"} <= set(layer)
    assert (out / "report.md").exists() and (out / "pareto.png").stat().st_size > 1000
    assert "| csd |" in capsys.readouterr().out


@pytest.mark.slow
def test_compress_sst_with_generated_options(tmp_path, capsys):
    out = tmp_path / "sst"
    code = main(
        ["compress", "--method", "sst", "--model", "mlp", "--data", "digits", "--hidden", "32"]
        + ["--float-epochs", "3", "--out", str(out), "--quiet", "--no-simulate"]
        + ["--n", "8", "--k", "2", "--epochs", "2", "--lr", "3e-3", "--batch-size", "64"]
        + ["--normalize", "--layer-overrides", '{"3": {"n": 4, "k": 1}}']
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    sst = next(m for m in report["methods"] if m["method"] == "sst")
    assert sst["config"]["code"] == {"n": 8, "k": 2, "per_row_step": False}
    assert sst["config"]["train"]["epochs"] == 2 and sst["config"]["train"]["lr"] == 3e-3
    assert sst["config"]["normalize"] is True
    assert sst["config"]["layers"]["overrides"] == {"3": {"n": 4, "k": 1}}
    assert sst["history"]["qat"]["epoch"] == [1, 2]
    assert sst["stages"]["k_per_epoch"] == {"1": [4, 2], "3": [2, 1]}
    assert [layer["name"] for layer in sst["layers"]] == ["1", "3"]
    assert "| sst |" in capsys.readouterr().out


def test_unknown_method_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--method", "nope", "--out", "x"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    code = main(["compress", "--method", "csd", "--data", "nope", "--out", str(tmp_path)])
    assert code == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_compress_wacr_retrains_a_tensor_family_from_the_cli(tmp_path):
    out = tmp_path / "wacr"
    families = {
        "1": {"in_shape": [8, 8], "in_factors": [[4, 2], [4, 2]], "out_factor": [8, 1]},
        "3": {"axis": "fan_in", "interval": 8, "degree": 1},
    }
    code = main(
        ["compress", "--method", "wacr", "--model", "mlp", "--data", "digits", "--hidden", "16"]
        + ["--float-epochs", "10", "--out", str(out), "--quiet", "--mode", "reparam"]
        + ["--init", "scratch", "--epochs", "8", "--lr", "0.01", "--batch-size", "32"]
        + ["--qat-epochs", "2", "--layer-overrides", json.dumps(families)]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    wacr = next(m for m in report["methods"] if m["method"] == "wacr")
    config = wacr["config"]
    assert config["train"]["epochs"] == 8 and config["train"]["lr"] == 0.01
    assert config["init"] == "scratch" and config["precondition"] is True
    assert config["qat_epochs"] == 2 and config["qat_lr"] is None
    assert len(wacr["history"]["retrain"]["loss"]) == 8  # the retraining history is reported
    assert len(wacr["history"]["qat"]["loss"]) == 2
    first = wacr["layers"][0]
    assert first["params"] == 16 // 8 * 2 * (2 * 3) * (2 * 3)  # K x M of the 2-D family
    assert wacr["accuracy"]["simulated"] > 0.6  # retrained from random coefficients
