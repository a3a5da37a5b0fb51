"""``fewops compress`` resumes after SIGKILL and ends with the same report; a folder of another
run is refused unless --overwrite."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fewops.io.records import LayerStore, RunRecord, read_json_record, write_json_record

ARGS = [
    "compress",
    "--method",
    "lcc",
    "--hidden",
    "32",
    "--float-epochs",
    "3",
    "--epochs",
    "2",
    "--finetune-epochs",
    "1",
    "--code-finetune-epochs",
    "1",
    "--quiet",
    "--workers",
    "2",
]
# Fields that measure wall time or say where a result came from (computed now or read back):
# they differ between any two runs, interrupted or not. Everything else must be equal.
VOLATILE = re.compile(r"(^|_)seconds$|^cached$")


def comparable(value):
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def _env(home: Path) -> dict:
    # Each HOME has its own float-model cache, so the float training itself can be interrupted.
    return {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _start(out: Path, home: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fewops.cli", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _report(out: Path) -> dict:
    report = comparable(json.loads((out / "report.json").read_text()))
    # The float model's cache file: the same name, under each run's own HOME.
    report["float_model"]["path"] = Path(report["float_model"]["path"]).name
    return report


@pytest.mark.slow
def test_compress_killed_five_times_ends_with_the_uninterrupted_report(tmp_path):
    reference = tmp_path / "reference"
    _finish(_start(reference, tmp_path / "home-ref"))
    expected = _report(reference)

    out, home = tmp_path / "resumed", tmp_path / "home"
    models = home / ".cache" / "fewops" / "models"
    # Kill points, one per stage: during the float training (its checkpoint exists), after the
    # float model (baselines), after pruning and fine-tuning, after the first coded layer, and
    # at the end (while the report and the model are written); each with a random delay.
    triggers = [
        lambda: any(models.glob("*.partial.safetensors")),
        lambda: (out / "stages" / "float.json").exists(),
        lambda: any((out / "stages" / "prune").glob("*.safetensors")),
        lambda: any((out / "stages" / "layers").glob("*.npz")),
        lambda: (out / "model").exists(),
    ]
    rng = np.random.default_rng(19)
    killed = 0
    for trigger in triggers:
        proc = _start(out, home)
        deadline = time.monotonic() + 240
        while proc.poll() is None and not trigger():
            assert time.monotonic() < deadline, "the run reached no kill point within 240 s"
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
    assert killed >= 4, f"only {killed} of 5 runs were still running at their kill point"
    _finish(_start(out, home))
    assert _report(out) == expected


def test_a_folder_of_another_run_is_refused_unless_overwrite(tmp_path):
    record = RunRecord(tmp_path / "out")
    assert record.claim({"method": "lcc", "config": {"epochs": 2}}) is False
    assert record.claim({"method": "lcc", "config": {"epochs": 2}}) is True
    record.finish("float", {"path": "x"})
    message = (
        f"The folder {tmp_path / 'out'} holds a run with other settings (config.epochs: 2 there, "
        "3 here); pass --overwrite (overwrite=True) to replace it, or choose another output "
        "folder."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        record.claim({"method": "lcc", "config": {"epochs": 3}})
    assert record.claim({"method": "lcc", "config": {"epochs": 3}}, overwrite=True) is False
    assert record.finished("float") is None  # the other run's stages are gone
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "mine.txt").write_text("a user's file")
    message = (
        f"The folder {stray} is not empty and holds no fewops run record; pass --overwrite "
        "(overwrite=True) to write into it anyway, or choose another output folder."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        RunRecord(stray).claim({"method": "lcc"})


def test_the_cli_names_the_difference(tmp_path):
    out = tmp_path / "out"
    RunRecord(out).claim({"method": "csd"})
    proc = _start(out, tmp_path / "home")
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"The folder {out} holds a run with other settings" in text
    assert "pass --overwrite" in text


def test_a_torn_or_changed_record_is_not_trusted(tmp_path):
    path = tmp_path / "stages" / "x.json"
    write_json_record(path, {"a": 1})
    assert read_json_record(path) == {"a": 1}
    path.write_text(path.read_text().replace('"a": 1', '"a": 2'))
    assert read_json_record(path) is None
    path.write_text(path.read_text()[:10])
    assert read_json_record(path) is None


def test_a_layer_store_round_trip_and_a_damaged_entry(tmp_path):
    from fewops.codes.lcc.column_sharing import share_and_decompose

    w = np.random.default_rng(0).standard_normal((12, 20))
    coded = share_and_decompose(w, 30.0)
    store = LayerStore(tmp_path)
    key = LayerStore.key(w, 30.0, {"algorithm": "dmp"})
    assert store.get(key) is None
    store.put(key, coded, 1.5)
    back, seconds = store.get(key)
    assert seconds == 1.5
    assert back.extra == coded.extra and back.method == coded.method
    assert np.array_equal(back.matrix, coded.matrix)
    assert key != LayerStore.key(w, 31.0, {"algorithm": "dmp"})
    path = tmp_path / f"{key}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.get(key) is None
