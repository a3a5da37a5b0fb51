"""The trained-model cache and checkpoints record a content hash; damage is never trusted."""

import re

import pytest
import torch
from fuzz_samples import checkpoint_file, load_checkpoint_file
from safetensors import safe_open
from safetensors.torch import save_file

from fewops.data import load
from fewops.io.tensors import save_tensors
from fewops.train.cache import CacheEntryRebuilt, train_or_load

KW = dict(epochs=1, seed=0, hidden=(8,), progress=False)


@pytest.fixture(scope="module")
def digits():
    return load("digits", seed=0)


def _entry(tmp_path, digits):
    _, info = train_or_load("mlp", "digits", dataset=digits, cache_dir=tmp_path, **KW)
    with safe_open(str(info["path"]), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        meta = dict(handle.metadata())
    return info["path"], tensors, meta


def test_flipped_bytes_in_the_cached_model_are_refused(tmp_path, digits):
    # audit 6e: 4 flipped bytes gave a NaN weight, loaded as "cached" (real accuracy 10%)
    path, _, _ = _entry(tmp_path, digits)
    raw = bytearray(path.read_bytes())
    raw[-20:-16] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(raw))
    message = (
        f"Not trusting the cached model {path}: it is corrupt or unreadable (it fails its "
        "content hash: changed or torn since it was written); training it again."
    )
    with pytest.warns(CacheEntryRebuilt, match=f"^{re.escape(message)}$"):
        model, info = train_or_load("mlp", "digits", dataset=digits, cache_dir=tmp_path, **KW)
    _assert_rebuilt(path, model, info, digits)


def test_a_nan_written_with_a_matching_hash_is_refused(tmp_path, digits):
    path, tensors, meta = _entry(tmp_path, digits)
    name = sorted(k for k in tensors if k.endswith("weight"))[0]
    tensors[name][0, 0] = float("nan")
    save_tensors(path, tensors, meta)  # the hash is recomputed: only the NaN check is left
    message = (
        f"Not trusting the cached model {path}: its tensor {name!r} holds NaN or inf values; "
        "training it again."
    )
    with pytest.warns(CacheEntryRebuilt, match=f"^{re.escape(message)}$"):
        model, info = train_or_load("mlp", "digits", dataset=digits, cache_dir=tmp_path, **KW)
    _assert_rebuilt(path, model, info, digits)


def _assert_rebuilt(path, model, info, digits):
    """The damaged entry was trained again, replaced on disk, and is trusted next time."""
    assert info["cached"] is False
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    again, info2 = train_or_load("mlp", "digits", dataset=digits, cache_dir=path.parent, **KW)
    assert info2["cached"] is True
    assert all(
        torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters(), strict=True)
    )


def test_an_entry_without_a_hash_is_trained_again_not_trusted(tmp_path, digits):
    path, tensors, meta = _entry(tmp_path, digits)
    meta.pop("content_sha256", None)
    tensors = {
        k: torch.full_like(v, 7.0) if v.is_floating_point() else v for k, v in tensors.items()
    }
    save_file(tensors, str(path), metadata=meta)  # as an older fewops wrote it (and then changed)
    model, info = train_or_load("mlp", "digits", dataset=digits, cache_dir=tmp_path, **KW)
    assert info["cached"] is False
    assert not any(bool((p == 7.0).all()) for p in model.parameters())
    with safe_open(str(path), framework="pt") as handle:
        assert len(handle.metadata()["content_sha256"]) == 64


def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path):
    path = checkpoint_file(tmp_path)
    assert load_checkpoint_file(path)[0] == 1
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x01
    path.write_bytes(bytes(raw))
    message = f"The checkpoint {path} is corrupt or unreadable (it fails its content hash"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_checkpoint_file(path)
