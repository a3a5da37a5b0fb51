"""The local parallel map (joblib/loky): any calling program, identical results, progress bars,
pinned threads, no orphan workers after SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fewops.codes.lcc.algorithms as algorithms
from fewops.codes.lcc import decompose
from fewops.parallel import pmap, resolve_workers, task_threads

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from fewops.codes.lcc import decompose
    print("top level", flush=True)
    w = np.random.default_rng(0).standard_normal((32, 48))
    print("adds", decompose(w, 40.0, workers=2).adds)
    """
)


def _reference_adds() -> int:
    w = np.random.default_rng(0).standard_normal((32, 48))
    return decompose(w, 40.0, workers=1).adds


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The script's top level runs once: the workers never re-run the calling program.
    assert proc.stdout.count("top level") == 1
    assert f"adds {_reference_adds()}" in proc.stdout


def test_decompose_with_workers_from_stdin_dash_c_and_an_unguarded_script(tmp_path):
    py = sys.executable
    run = dict(capture_output=True, text=True, timeout=120, cwd=tmp_path)
    _check(subprocess.run([py, "-"], input=SCRIPT, **run))
    _check(subprocess.run([py, "-c", SCRIPT], **run))
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT)
    _check(subprocess.run([py, str(script)], **run))


def test_decompose_is_identical_for_any_number_of_workers():
    w = np.random.default_rng(1).standard_normal((24, 64))
    results = [decompose(w, 35.0, algorithm="rs", workers=n) for n in (1, 2, 3)]
    for r in results[1:]:
        assert r.adds == results[0].adds
        assert np.array_equal(r.matrix(), results[0].matrix())
        for name in ("op", "a", "b", "sa", "sb", "const"):
            assert np.array_equal(getattr(r.graph, name), getattr(results[0].graph, name))


def test_best_runs_the_tries_of_a_lone_slice_in_parallel_with_identical_results(monkeypatch):
    seen = []
    real = algorithms.pmap

    def spy(fn, items, **kwargs):
        seen.append(kwargs["workers"])
        return real(fn, items, **kwargs)

    monkeypatch.setattr(algorithms, "pmap", spy)
    w = np.random.default_rng(2).standard_normal((16, 6))
    results = [decompose(w, 30.0, algorithm="best", slice_width=6, workers=n) for n in (1, 2)]
    assert seen == [1, 2]  # the one slice handed its workers to the tries
    assert results[1].adds == results[0].adds
    for name in ("op", "a", "b", "sa", "sb", "const"):
        assert np.array_equal(getattr(results[1].graph, name), getattr(results[0].graph, name))


def _square_with_offset(x: int, offset: int) -> int:
    return x * x + offset


def _threads_seen(_: int) -> tuple[int | None, list[int]]:
    return task_threads(), sorted({p["num_threads"] for p in threadpool_info()})


def test_pmap_keeps_order_and_shares_common_arguments():
    items = list(range(11))
    expected = [x * x + 5 for x in items]
    for workers in (1, 2, 4):
        assert pmap(_square_with_offset, items, workers=workers, common={"offset": 5}) == expected
    assert pmap(_square_with_offset, [], workers=2, common={"offset": 5}) == []


def test_progress_bar_counts_every_task(capsys):
    pmap(_square_with_offset, range(7), workers=2, common={"offset": 0}, progress=True, desc="sq")
    err = capsys.readouterr().err
    assert re.search(r"sq: 100%.*7/7", err), err


def test_threads_inside_workers_are_pinned():
    seen = pmap(_threads_seen, range(4), workers=2)
    expected = max(1, joblib.cpu_count() // 2)
    for threads, pools in seen:
        assert threads == expected
        assert all(n <= expected for n in pools), pools
    # Outside a task there is no budget, and a map inside a task runs in that task.
    assert task_threads() is None


def test_workers_must_be_a_positive_whole_number():
    with pytest.raises(
        ValueError,
        match=re.escape("workers must be at least 1 (or None for the CPU count); got 0."),
    ):
        resolve_workers(0, 3)
    with pytest.raises(
        TypeError, match=re.escape("workers must be a whole number or None; got 1.5.")
    ):
        resolve_workers(1.5, 3)


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from fewops.parallel import pmap

    def hold(i, folder):
        open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
        time.sleep(60)
        return i

    pmap(hold, range(2), workers=2, common={"folder": sys.argv[1]})
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its entry waits for its (re)parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_of_the_parent_leaves_no_worker_behind(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert time.monotonic() < deadline, "the workers did not start within 60 s"
            assert proc.poll() is None, "the parent ended early"
            time.sleep(0.1)
        pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
        assert not left, f"workers {left} outlived their parent by 10 s"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in tmp_path.glob("*.pid"):
            if _alive(int(p.stem)):
                os.kill(int(p.stem), signal.SIGKILL)
