"""docs/tutorial.md runs: its python blocks in order in one namespace, its fewops commands through
the CLI's main, in a scratch folder (so the tutorial cannot rot)."""

import os
import re
import shlex
import shutil
from pathlib import Path

import torch

from fewops.cli.main import main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(TUTORIAL.read_text())


def test_the_tutorial_has_code_for_every_step():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 6 and kinds.count("bash") == 1
    text = TUTORIAL.read_text()
    for step in ("run_method", "compress_", "write_verilog", "--model tutorial_model:build"):
        assert step in text, step


def test_the_tutorial_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the CLI's caches stay in the scratch folder
    monkeypatch.syspath_prepend(str(tmp_path))  # tutorial_model.py, written by the tutorial
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a busy 2-core runner
    namespace: dict = {"__name__": "tutorial"}
    try:
        for kind, code in blocks():
            if kind == "python":
                exec(compile(code, str(TUTORIAL), "exec"), namespace)  # noqa: S102
                continue
            for line in code.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "fewops", line
                assert main(argv[1:]) == 0, line
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for method in ("dense", "csd", "sst", "lcc", "wacr"):
        assert re.search(rf"^{method}\s+0\.\d+\s+0\.\d+\s+\d+", out, re.M), method
    assert "coded layers: ['hidden', 'out']" in out
    if shutil.which("iverilog"):  # CI installs it: the Verilog really ran, vector by vector
        assert "SimResult(passed=50, failed=0, simulator='iverilog')" in out
    assert (tmp_path / "run_csd" / "report.json").is_file()
    assert os.path.isfile(namespace["out"] / "model" / "model.json")
