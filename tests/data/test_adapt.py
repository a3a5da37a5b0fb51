"""as_dataset: every form of user data becomes one data set; LCC, SST and WACR take them all."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fewops.data import load
from fewops.data.adapt import ArrayDataset, as_dataset, load_npz
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.methods.lcc import LCCCode, LCCConfig, LCCSearch
from fewops.methods.sst import SSTCodeSpec, SSTConfig
from fewops.methods.wacr import PolyConfig
from fewops.nn.api import compress_
from fewops.nn.coded import CodedLinear
from fewops.report.pipeline import run_method
from fewops.train.recipe import Recipe


def arrays(n=40, features=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features)).astype(np.float64), rng.integers(0, 3, n)


def test_arrays_tensors_datasets_and_loaders_give_the_same_training_set():
    x, y = arrays()
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    forms = [
        (x, y),
        (tx, ty),
        TensorDataset(tx, ty),
        DataLoader(TensorDataset(tx, ty), batch_size=7),
        SimpleNamespace(x_train=x, y_train=y),
    ]
    for form in forms:
        data = as_dataset(form)
        assert isinstance(data, ArrayDataset)
        assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
        np.testing.assert_array_equal(data.x_train, x.astype(np.float32))
        np.testing.assert_array_equal(data.y_train, y)
        assert data.input_shape == (6,) and data.num_classes == 3 and data.num_test == 0


def test_a_train_and_test_pair_keeps_both_splits():
    (x, y), (xt, yt) = arrays(), arrays(10, seed=1)
    loaders = (
        DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=8),
        DataLoader(TensorDataset(torch.tensor(xt), torch.tensor(yt)), batch_size=8),
    )
    for form in (((x, y), (xt, yt)), loaders):
        data = as_dataset(form)
        assert (data.num_train, data.num_test) == (40, 10)
        np.testing.assert_array_equal(data.y_test, yt)


def test_fewops_data_sets_pass_through_and_names_load():
    digits = load("digits")
    assert as_dataset(digits) is digits
    assert as_dataset("digits").input_shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            42,
            "Data must be a fewops Dataset or data set name, (x, y) arrays or tensors, a torch "
            "Dataset or DataLoader of (x, y), a pair ((x_train, y_train), (x_test, y_test)) of "
            "those, or an object with x_train and y_train; got int.",
        ),
        (
            (np.zeros((4, 3)), np.zeros(5, np.int64)),
            "y must hold one label per sample of x (4); got shape (5,).",
        ),
        (
            (np.zeros(4), np.zeros(4, np.int64)),
            "x must be shaped (N, features) or (N, C, H, W); got shape (4,).",
        ),
        (
            (np.zeros((3, 2)), np.array([0.5, 1.0, 2.0])),
            "y must hold integer class indices; got dtype float64 (e.g. [0.5, 1.0, 2.0]).",
        ),
        (
            ([1, 2], [3, 4]),
            "The training data must be (x, y) arrays or tensors, a torch Dataset "
            "or a DataLoader of (x, y); got list.",
        ),
    ],
)
def test_bad_data_are_refused_with_the_reason(data, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        as_dataset(data)


def test_npz_files_load_without_pickle(tmp_path):
    (x, y), (xt, yt) = arrays(), arrays(10, seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    data = load_npz(tmp_path / "d.npz")
    assert (data.num_train, data.num_test, data.input_shape) == (40, 10, (6,))
    np.savez(tmp_path / "partial.npz", x_train=x, y_train=y)
    with pytest.raises(ValueError, match=re.escape("lacks x_test, y_test; it holds x_train")):
        load_npz(tmp_path / "partial.npz")
    np.savez(
        tmp_path / "obj.npz", x_train=np.array([{}], dtype=object), y_train=y, x_test=xt, y_test=yt
    )
    with pytest.raises(ValueError, match=re.escape("cannot be read without pickle")):
        load_npz(tmp_path / "obj.npz")


def digits_flat():
    d = load("digits")
    return (d.x_train.reshape(len(d.x_train), -1), d.y_train), (
        d.x_test.reshape(len(d.x_test), -1),
        d.y_test,
    )


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def test_lcc_takes_a_dataloader():
    (x, y), _ = digits_flat()
    loader = DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=64)
    model = mlp()
    config = LCCConfig(
        code=LCCCode(algorithm="dmp"), search=LCCSearch(search_samples=200, max_rounds=1)
    )
    result = compress_(model, config, data=loader, workers=1)
    assert result.layers == ["0", "2"] and isinstance(model[0], CodedLinear)
    assert result.report["search_set"] == "200 training samples"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            SSTConfig(),
            "SST retrains the model onto its (n, k) code for 6 epochs and needs training data: "
            "pass data=(x_train, y_train) (arrays or tensors), a torch Dataset or DataLoader, or "
            "a fewops data set; or set train=Recipe(epochs=0) (--epochs 0) to code the float "
            "weights without retraining (post-training coding, far less accurate).",
        ),
        (
            PolyConfig(train=Recipe(epochs=3)),
            "WACR retrains the model onto its polynomial families for 3 epochs and needs "
            "training data",
        ),
    ],
)
def test_a_method_that_retrains_refuses_to_run_without_data(config, message):
    model = mlp()
    with pytest.raises(ValueError, match=re.escape(message)):
        compress_(model, config)
    assert isinstance(model[0], nn.Linear) and not isinstance(model[0], CodedLinear)


def test_post_training_coding_is_explicit():
    model = mlp()
    compress_(model, SSTConfig(SSTCodeSpec(n=8, k=2), Recipe(epochs=0)))
    assert isinstance(model[0], CodedLinear)


def test_sst_retrains_on_flat_tensors_and_run_method_reports_on_the_test_split():
    train, test = digits_flat()
    config = SSTConfig(SSTCodeSpec(n=8, k=2), Recipe(epochs=2, lr=3e-3))
    entry, coded = run_method("sst", mlp(), (train, test), config)
    assert entry["history"]["qat"]["epoch"] == [1, 2]
    assert entry["accuracy"]["simulated"] is not None
    with pytest.raises(
        ValueError, match=re.escape("run_method reports test accuracy and needs a test split")
    ):
        run_method("csd", mlp(), train, CSDConfig(CSDCode(bits=8)))
