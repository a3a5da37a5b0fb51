"""The torch-free network: saved as is, read back without torch, hostile files refused."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import safe_open, save_file

from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.models import build
from fewops.network import Coded, Network, Requantize, requantize, store
from fewops.network.cost import count_network
from fewops.network.store import NetworkLimits, load_network, save_network
from fewops.nn.api import compress_
from fewops.nn.fold import fold_batchnorm_
from fewops.nn.to_network import compile_network
from fewops.report.pipeline import network_cost


def _coded(name, shape, seed=0):
    torch.manual_seed(seed)
    model = build(name, shape, 10).eval()
    fold_batchnorm_(model)
    compress_(model, CSDConfig(CSDCode(bits=6)), input_shape=shape)
    return model


@pytest.fixture(scope="module")
def lenet():
    model = _coded("lenet5", (1, 16, 16))
    return model, compile_network(model, np.random.default_rng(1).random((16, 1, 16, 16)))


def test_requantize_rounds_half_up_shifts_and_clips():
    a = np.array([-9, -8, -7, 5, 6, 7, 100])
    assert requantize(a, 2, -2, 3).tolist() == [-2, -2, -2, 1, 2, 2, 3]
    assert requantize(a, -1, -100, 100).tolist() == [-18, -16, -14, 10, 12, 14, 100]
    big = np.array([2**70 + 3], dtype=object)
    assert requantize(big, 1, 0, 2**80).tolist() == [2**69 + 2]


def test_a_sequential_becomes_typed_steps(lenet):
    _, net = lenet
    kinds = [type(s).__name__ for s in net.steps]
    assert kinds[:4] == ["Input", "Coded", "Requantize", "MaxPool"]
    assert kinds.count("Coded") == 5 and kinds[-1] == "Coded"
    assert net.output == net.steps[-1].name and net.calibrated
    relus = [s for s in net.steps if isinstance(s, Requantize)]
    assert all(s.relu and s.lo == 0 and s.hi == 255 for s in relus)
    info = net.values()
    assert info[net.output].shape == (10,)
    x = np.random.default_rng(2).random((6, 1, 16, 16))
    t = net.run(x)
    # the static ranges hold every value the simulator produces
    assert info[net.output].lo <= t.min() and t.max() <= info[net.output].hi


@pytest.mark.parametrize(("name", "shape"), [("lenet5", (1, 16, 16)), ("resnet20", (1, 12, 12))])
def test_saved_network_equals_the_one_in_memory_logit_for_logit(name, shape, tmp_path):
    model = _coded(name, shape)
    rng = np.random.default_rng(0)
    net = compile_network(model, rng.random((16, *shape)))
    x = rng.random((12, *shape))
    save_network(net, tmp_path)
    back = load_network(tmp_path)
    assert np.array_equal(back.run(x), net.run(x))
    assert back.exponent == net.exponent and back.divisor == net.divisor
    # torch is not needed (nor imported) to read and simulate a saved network
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", net.run(x))
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from fewops.network.store import load_network\n"
        f"net = load_network({str(tmp_path)!r})\n"
        f"ok = np.array_equal(net.run(np.load({str(tmp_path / 'x.npy')!r})), "
        f"np.load({str(tmp_path / 't.npy')!r}))\n"
        "print('EQUAL' if ok else 'DIFFERENT')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "EQUAL"


def _rewrite(folder, change):
    """Edit network.json and re-sign both files, as a deliberate tamperer could."""
    body = json.loads((folder / store.JSON_FILE).read_text())
    change(body)
    with safe_open(str(folder / store.TENSOR_FILE), framework="np") as handle:
        arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    body["tensors_sha256"] = store.tensors_hash(arrays)
    meta = {"format": store.FORMAT, "json_sha256": store.json_hash(body)}
    save_file(arrays, str(folder / store.TENSOR_FILE), metadata=meta)
    (folder / store.JSON_FILE).write_text(json.dumps(body))


def _requant(body):
    return next(s for s in body["steps"] if s["kind"] == "requantize")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: _requant(b).update(frac=10**9), "frac=1000000000 (expected an integer in"),
        (lambda b: _requant(b).update(frac=1e9), "frac=1000000000.0 (expected an integer in"),
        (lambda b: b.update(act_bits=4096), "act_bits=4096 (expected an integer in 2..32)"),
        (
            lambda b: b["steps"][0].update(shape=[1, 10**6, 10**6]),
            "makes 1000000000000 values, beyond max_elements=16777216",
        ),
        (lambda b: b["steps"][1].update(bias_int=[10**400] * 6), "bias_int='1000000000"),
        (lambda b: b["steps"][1].update(src="nowhere"), "reads ['nowhere'], which no earlier"),
        (lambda b: b["steps"].append({"kind": "exec", "name": "x"}), "unknown kind 'exec'"),
        (lambda b: b.update(steps=[]), "needs 1 to max_steps=100000 steps"),
    ],
)
def test_hostile_network_files_are_refused_naming_the_value(lenet, tmp_path, change, message):
    save_network(lenet[1], tmp_path)
    _rewrite(tmp_path, change)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_network(tmp_path)


def test_a_changed_file_is_refused_by_its_hash(lenet, tmp_path):
    save_network(lenet[1], tmp_path)
    body = json.loads((tmp_path / store.JSON_FILE).read_text())
    _requant(body)["hi"] = 7
    (tmp_path / store.JSON_FILE).write_text(json.dumps(body))
    with pytest.raises(ValueError, match="do not match"):
        load_network(tmp_path)
    with pytest.raises(ValueError, match=re.escape("max_steps=3")):
        save_network(lenet[1], tmp_path)
        load_network(tmp_path, limits=NetworkLimits(max_steps=3))


def test_an_uncalibrated_network_cannot_be_saved_or_run(lenet, tmp_path):
    _, net = lenet
    steps = tuple(
        Requantize(s.name, s.src, s.bits, s.signed, s.relu) if isinstance(s, Requantize) else s
        for s in net.steps
    )
    raw = Network(steps, net.act_bits, net.output)
    assert not raw.calibrated
    with pytest.raises(ValueError, match="Only a calibrated network can be saved"):
        save_network(raw, tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"Requantize step {steps[2].name!r} is not")):
        raw.run(np.zeros((1, 1, 16, 16)))
    assert isinstance(steps[1], Coded)


def test_counts_read_from_the_network_equal_the_report_s(lenet):
    model, net = lenet
    ours, report = count_network(net), network_cost(model, (1, 16, 16))
    assert [la.name for la in ours.layers] == [la.name for la in report.layers]
    for key in ("adds", "adder_bits", "luts_est", "bias_adds", "scale_mults"):
        assert ours.totals()[key] == report.totals()[key], key
    assert [la.positions for la in ours.layers] == [256, 16, 1, 1, 1]
