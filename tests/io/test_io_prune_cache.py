"""The LCC pruned-model cache: safetensors with a content hash, rebuilt when damaged."""

import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from fewops.methods.lcc import LCCConfig, PruneSettings, stages
from fewops.train.recipe import Recipe


def _setup():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 16)).astype(np.float32)
    y = (x[:, :3].argmax(1)).astype(np.int64)
    data = SimpleNamespace(x_train=x, y_train=y)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    )
    cfg = LCCConfig(
        prune=PruneSettings(prune_lambda=0.5, finetune_epochs=0), train=Recipe(epochs=1)
    )
    return model, data, cfg


def _prune(model, data, cfg, cache):
    return stages.prune_stage(model, data, ["0", "2", "4"], cfg, prune_cache=cache)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    cache = tmp_path_factory.mktemp("prune")
    model, data, cfg = _setup()
    report, cached = _prune(model, data, cfg, cache)
    assert cached is False
    (entry,) = cache.iterdir()
    return cache, entry, model, report


def _fresh_copy(cache, tmp_path):
    dest = tmp_path / "c"
    dest.mkdir()
    for f in cache.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest, next(dest.iterdir())


def test_entry_is_safetensors_and_a_reload_gives_the_pruned_model(first, tmp_path):
    cache, entry, pruned, report = first
    assert entry.suffix == ".safetensors"
    with safe_open(str(entry), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == stages.PRUNE_CACHE_FORMAT and len(meta["content_sha256"]) == 64
    model, data, cfg = _setup()
    report2, cached = _prune(model, data, cfg, cache)
    assert cached is True and report2 == report
    assert [p.shape for p in model.parameters()] == [p.shape for p in pruned.parameters()]
    assert model[2].in_features == pruned[2].in_features
    for a, b in zip(model.state_dict().values(), pruned.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CACHE",))


@pytest.mark.parametrize("damage", ["pickle", "random", "flip", "nan", "truncated"])
def test_a_damaged_or_planted_entry_is_pruned_again_not_trusted(
    first, tmp_path, damage, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cache, entry = _fresh_copy(first[0], tmp_path)
    raw = entry.read_bytes()
    if damage == "pickle":
        torch.save({"model": _Payload(), "report": {}}, entry)
    elif damage == "random":
        entry.write_bytes(np.random.default_rng(1).bytes(len(raw)))
    elif damage == "flip":
        entry.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    elif damage == "nan":
        # a NaN written with a matching hash (someone recomputed it): still refused
        with safe_open(str(entry), framework="pt") as handle:
            meta = dict(handle.metadata())
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        tensors["0.weight"][0, 0] = float("nan")
        from fewops.io.tensors import save_tensors

        save_tensors(entry, tensors, meta)
    else:
        entry.write_bytes(raw[: len(raw) // 2])
    model, data, cfg = _setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report, cached = _prune(model, data, cfg, cache)
    assert cached is False
    assert not (tmp_path / "PWNED_BY_CACHE").exists()
    assert any(f"Ignoring the pruned-model cache entry {entry}" in str(w.message) for w in caught)
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    # the rebuilt entry is whole again and trusted next time
    again, _, _ = _setup()
    assert _prune(again, data, cfg, cache)[1] is True
