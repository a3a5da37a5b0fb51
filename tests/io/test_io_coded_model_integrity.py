"""Coded-model folders: content hashes tie model.json to its tensors; bounds before allocation.

Each case is one of the audit's (docs/reliability.md): a torn pair, a changed digit, a flipped
byte, a hostile calibration, input shape, exponent or module tree.
"""

import json
import re
import shutil
import time

import pytest
from fuzz_samples import coded_model_folder, load_model
from safetensors import safe_open
from safetensors.numpy import save_file

from fewops.cli.main import main
from fewops.io import coded_model
from fewops.io.coded_model import load_coded_model
from fewops.io.limits import ModelLimits, limits_from


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return coded_model_folder(base, "csd"), coded_model_folder(base, "dense")


def _copy(folder, tmp_path, name="m"):
    dest = tmp_path / name
    shutil.copytree(folder, dest)
    return dest


def _resign(folder):
    """Recompute both hashes, as a deliberate tamperer could: the bounds must still hold."""
    structure = json.loads((folder / "model.json").read_text())
    with safe_open(str(folder / "tensors.safetensors"), framework="np") as handle:
        arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        meta = dict(handle.metadata())
    structure["tensors_sha256"] = coded_model.tensors_hash(arrays)
    meta["structure_sha256"] = coded_model.structure_hash(structure)
    save_file(arrays, str(folder / "tensors.safetensors"), metadata=meta)
    (folder / "model.json").write_text(json.dumps(structure))


def _edit(folder, change, resign=True):
    structure = json.loads((folder / "model.json").read_text())
    change(structure)
    (folder / "model.json").write_text(json.dumps(structure))
    if resign:
        _resign(folder)


def test_a_saved_model_loads_and_runs(folders):
    assert load_model(folders[0]).shape == (1, 3)


def test_a_torn_pair_is_refused_naming_both_files(folders, tmp_path):
    # audit 5d: the tensors of a dense save placed under the CSD model.json
    folder = _copy(folders[0], tmp_path)
    shutil.copy(folders[1] / "tensors.safetensors", folder / "tensors.safetensors")
    message = (
        f"The model tensor file {folder / 'tensors.safetensors'} does not match "
        f"{folder / 'model.json'}: its content hash differs from the one model.json records"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_coded_model(folder)


def test_a_changed_digit_in_model_json_is_refused(folders, tmp_path):
    # audit 5c: one digit of scale_m changed
    folder = _copy(folders[0], tmp_path)
    _edit(folder, lambda s: s["layers"]["1"].update(scale_m=s["layers"]["1"]["scale_m"] + 1), False)
    message = (
        f"The model structure file {folder / 'model.json'} does not match "
        f"{folder / 'tensors.safetensors'}: its content hash differs"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_coded_model(folder)


def test_a_flipped_tensor_byte_is_refused(folders, tmp_path):
    folder = _copy(folders[0], tmp_path)
    raw = bytearray((folder / "tensors.safetensors").read_bytes())
    raw[-3] ^= 0x10
    (folder / "tensors.safetensors").write_bytes(bytes(raw))
    with pytest.raises(
        ValueError, match=re.escape(f"{folder / 'tensors.safetensors'} does not match")
    ):
        load_coded_model(folder)


def test_version_1_folders_are_refused_with_the_reason(folders, tmp_path):
    folder = _copy(folders[0], tmp_path)
    _edit(folder, lambda s: s.update(version=1), False)
    message = (
        f"The coded model {folder / 'model.json'} has version 1 (saved by an older fewops; "
        "save it again); this fewops reads version 3."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_coded_model(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # audit 5g: scale_e 1e9 gave an OverflowError traceback
        (
            lambda s: s["layers"]["3"].update(scale_e=10**9),
            "The field 'scale_e' in {json} (layer '3') is 1000000000, outside [-512, 512] "
            "(the limit max_exponent=512; raise it to read this file).",
        ),
        # audit 5f: input_shape [1, 1e6, 1e6] asked for 7 TiB
        (
            lambda s: s.update(input_shape=[1, 10**6, 10**6]),
            "The field 'input_shape' in {json} is [1, 1000000, 1000000] (1000000000000 values "
            "per input), beyond the limit max_input_elements=16777216.",
        ),
        (
            lambda s: s.update(sequence=_deep(200)),
            "The module tree in {json} is nested deeper than the limit max_tree_depth=64.",
        ),
    ],
)
def test_hostile_values_are_refused_before_allocation(folders, tmp_path, change, message):
    folder = _copy(folders[0], tmp_path)
    _edit(folder, change)  # hashes recomputed: only the bounds stand between the file and harm
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(message.format(json=folder / "model.json"))):
        load_model(folder)
    assert time.perf_counter() - t0 < 2.0


def _deep(depth):
    node = {"kind": "relu"}
    for _ in range(depth):
        node = {"kind": "sequential", "children": [["0", node]]}
    return node


def test_a_deep_module_tree_is_refused_without_a_recursion_error(folders, tmp_path):
    # audit 5g: a 100,000-deep module tree gave a RecursionError traceback
    folder = _copy(folders[0], tmp_path)
    text = (folder / "model.json").read_text()
    depth = 100_000
    deep = '{"kind": "sequential", "children": [["0", ' * depth + '{"kind": "relu"}' + "]]}" * depth
    (folder / "model.json").write_text(
        text.replace('"sequence": {', f'"sequence": {deep}, "x": {{', 1)
    )
    message = f"The model structure file {folder / 'model.json'} is corrupt or unreadable ("
    with pytest.raises(ValueError, match=re.escape(message)):
        load_model(folder)


def test_a_raised_limit_reads_the_file(folders, tmp_path):
    folder = _copy(folders[0], tmp_path)
    message = (
        f"The model structure file {folder / 'model.json'} has 2 layers, beyond the limit "
        "max_layers=1."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_coded_model(folder, limits=ModelLimits(max_layers=1))
    assert len(load_coded_model(folder).layers) == 2
    assert limits_from(["max_exponent=4096", "max_bits=2048"]) == ModelLimits(
        max_exponent=4096, graph=limits_from(["max_bits=2048"]).graph
    )
    with pytest.raises(ValueError, match=re.escape("--limit takes NAME=VALUE with NAME one of")):
        limits_from(["max_everything=1"])


def test_the_cli_refuses_a_hostile_model_in_seconds_with_rc_2(folders, tmp_path, capsys):
    folder = _copy(folders[0], tmp_path)
    _edit(folder, lambda s: s["layers"]["3"].update(scale_e=10**9))
    t0 = time.perf_counter()
    rc = main(
        ["export", "--verilog", str(tmp_path / "v"), "--model", str(folder), "--testbench", "2"]
    )
    assert rc == 2 and time.perf_counter() - t0 < 5.0
    assert "The field 'scale_e' in" in capsys.readouterr().err
    rc = main(
        [
            "export",
            "--verilog",
            str(tmp_path / "v"),
            "--model",
            str(folder),
            "--limit",
            "max_exponent=x",
        ]
    )
    assert rc == 2
    assert "--limit max_exponent needs an integer value; got 'x'." in capsys.readouterr().err


@pytest.mark.parametrize("error", [MemoryError, OverflowError, RecursionError])
def test_resource_errors_never_reach_the_user_as_tracebacks(monkeypatch, capsys, error, tmp_path):
    def explode(*args, **kwargs):
        raise error("boom")

    monkeypatch.setattr("fewops.io.coded_model.load_coded_model", explode)
    assert main(["export", "--verilog", str(tmp_path / "v"), "--model", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("fewops: error: the command ")
