import json

import pytest

from fewops.cli import main

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
            "--epochs",
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
