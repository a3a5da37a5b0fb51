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
    family = '{"1": {"in_shape": [8, 8], "in_factors": [[4, 2], [4, 2]], "out_factor": [8, 1]}}'
    code = main(
        ["compress", "--method", "wacr", "--model", "mlp", "--data", "digits", "--hidden", "16"]
        + ["--epochs", "10", "--out", str(out), "--quiet", "--mode", "reparam"]
        + [
            "--init",
            "scratch",
            "--retrain-epochs",
            "8",
            "--retrain-lr",
            "0.01",
            "--batch-size",
            "32",
            "--qat-epochs",
            "2",
        ]
        + ["--families", family, "--layer-poly", "3=fan_in:8:1"]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    wacr = next(m for m in report["methods"] if m["method"] == "wacr")
    assert wacr["config"]["epochs"] == 8 and wacr["config"]["lr"] == 0.01
    assert wacr["config"]["init"] == "scratch" and wacr["config"]["precondition"] is True
    assert wacr["config"]["qat_epochs"] == 2 and wacr["config"]["qat_lr"] is None
    first = wacr["layers"][0]
    assert first["params"] == 16 // 8 * 2 * (2 * 3) * (2 * 3)  # K x M of the 2-D family
    assert wacr["accuracy"]["simulated"] > 0.6  # retrained from random coefficients
