"""The same tasks on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1,
started for these tests, bounded in time and killed even when a test fails."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from fewops.cli.main import main
from fewops.codes.lcc import decompose
from fewops.methods.lcc import LCCCode, LCCConfig
from fewops.nn.api import compress_
from fewops.parallel import cluster
from fewops.parallel.loopback import loopback_cluster


@pytest.fixture(scope="module")
def lc():
    with loopback_cluster(workers=2, timeout=90) as started:
        yield started


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 4)
    )


def _coded_layers(workers):
    model = _mlp()
    cfg = LCCConfig(code=LCCCode(target_db=30.0), share=False)
    result = compress_(model, cfg, workers=workers)
    return model, result.report


def test_loopback_cluster_listens_on_loopback_only(lc):
    assert lc.address.startswith("tcp://127.0.0.1:")
    assert len(lc.worker_pids) == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in lc.worker_pids)


def test_a_matrix_coded_on_the_cluster_equals_the_local_code(lc):
    w = np.random.default_rng(3).standard_normal((32, 80))
    local = decompose(w, 40.0, workers=2)
    with cluster(lc.address) as client:
        remote = decompose(w, 40.0)
        # The matrix went to every worker once (scattered), not once per slice.
        assert client.run(lambda: 1) == dict.fromkeys(lc.worker_pids, 1)
    assert remote.adds == local.adds
    assert np.array_equal(remote.matrix(), local.matrix())
    for name in ("op", "a", "b", "sa", "sb", "const"):
        assert np.array_equal(getattr(remote.graph, name), getattr(local.graph, name))


def test_a_network_coded_on_the_cluster_equals_the_local_code(lc):
    local_model, local_report = _coded_layers(workers=2)
    with cluster(lc.address):
        remote_model, remote_report = _coded_layers(workers=None)
    assert remote_report["lcc"]["adds"] == local_report["lcc"]["adds"]
    x = torch.randn(5, 16)
    assert torch.equal(remote_model(x), local_model(x))


def test_a_worker_killed_during_the_job_still_gives_the_complete_result(lc):
    # 28 slices of about 0.15 s each: the kill lands while most are still to run.
    w = np.random.default_rng(5).standard_normal((128, 196))
    local = decompose(w, 50.0, algorithm="rs", workers=1)
    outcome: dict = {}

    def run():
        try:
            with cluster(lc.address):
                outcome["result"] = decompose(w, 50.0, algorithm="rs")
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    victim_addr, victim_pid = sorted(lc.worker_pids.items())[0]
    thread = threading.Thread(target=run)
    thread.start()
    with cluster(lc.address) as client:
        deadline = time.monotonic() + 30
        while not client.processing().get(victim_addr):
            assert thread.is_alive(), f"the job ended before the kill: {outcome}"
            assert time.monotonic() < deadline, "no task reached the worker within 30 s"
            time.sleep(0.05)
        os.kill(victim_pid, signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the job did not finish within 120 s of the kill"
        assert "error" not in outcome, outcome.get("error")
        remote = outcome["result"]
        assert remote.adds == local.adds
        assert np.array_equal(remote.matrix(), local.matrix())
        assert victim_addr not in client.scheduler_info()["workers"]


def test_a_cluster_address_must_look_like_one():
    with pytest.raises(
        ValueError, match="A cluster address looks like 'tcp://HOST:PORT'; got '127.0.0.1:8786'."
    ):
        with cluster("127.0.0.1:8786"):
            pass


def test_fewops_lcc_takes_the_cluster_option(lc, tmp_path, capsys):
    w = np.random.default_rng(4).standard_normal((16, 40))
    np.save(tmp_path / "W.npy", w)
    args = ["lcc", str(tmp_path / "W.npy"), "--target-db", "40", "--algorithm", "dmp"]
    assert main([*args, "--no-progress", "--json", str(tmp_path / "local.json")]) == 0
    assert main([*args, "--cluster", lc.address, "--json", str(tmp_path / "remote.json")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert remote["adds"] == local["adds"] and remote["sqnr_db"] == local["sqnr_db"]
    capsys.readouterr()
    bad = [*args, "--cluster", "127.0.0.1:1"]
    assert main(bad) == 2
    assert "A cluster address looks like 'tcp://HOST:PORT'; got '127.0.0.1:1'." in (
        capsys.readouterr().err
    )


def test_the_loopback_cluster_is_cleaned_up_when_the_job_fails():
    with pytest.raises(RuntimeError, match="the job failed"):
        with loopback_cluster(workers=1, timeout=60) as started:
            procs = list(started.processes)
            assert all(p.poll() is None for p in procs)
            raise RuntimeError("the job failed")
    assert all(p.poll() is not None for p in procs)
