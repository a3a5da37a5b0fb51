"""Weights on disk: atomic writes and the errors for wrong or damaged files."""

import re

import pytest
import torch
from torch import nn

from fewops.io.tensors import atomic_write, load_module_state, read_tensors, save_tensors


def test_save_and_read_back_with_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.arange(3.0), "b": torch.tensor(7)}, {"format": "demo-1"})
    tensors, meta = read_tensors(path, expected_format="demo-1", what="demo file")
    assert torch.equal(tensors["a"], torch.arange(3.0)) and int(tensors["b"]) == 7
    assert meta == {"format": "demo-1"}
    message = f"The file {path} is not a fewops demo file (format 'demo-1', expected 'other-1')."
    with pytest.raises(ValueError, match=re.escape(message)):
        read_tensors(path, expected_format="other-1", what="demo file")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")

    def failing(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # the test's own error, passed through
        atomic_write(path, failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_damaged_file_and_wrong_model_are_explained(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, nn.Linear(2, 3).state_dict(), {"format": "demo-1"})
    tensors, _ = read_tensors(path, expected_format="demo-1", what="demo file")
    load_module_state(path, nn.Linear(2, 3), tensors)
    # The sentence goes on with torch's own list of mismatches.
    message = f"The weights in {path} do not fit this model: "
    with pytest.raises(ValueError, match=re.escape(message)):
        load_module_state(path, nn.Linear(3, 3), tensors)
    path.write_bytes(path.read_bytes()[:-5])
    # The parenthesis holds safetensors' own reason, which differs between versions.
    message = f"The demo file {path} is corrupt or unreadable ("
    with pytest.raises(
        ValueError, match=re.escape(message) + r".*\)\. Delete it to start afresh\.$"
    ):
        read_tensors(path, expected_format="demo-1", what="demo file")
