"""A throw-away Dask cluster on 127.0.0.1: a scheduler and worker processes, for tests and
benchmarks (a real cluster is started as in docs/parallel.md).

``with loopback_cluster(workers=2) as lc:`` starts ``dask scheduler`` and ``workers`` separate
``dask worker`` processes (one thread each, no nanny, so a killed worker stays dead), all
listening on the loopback interface only, waits until every worker has joined (at most
``timeout`` seconds) and on leaving, even after an error, kills every process it started.
``lc.address`` is the scheduler address; ``lc.worker_pids`` maps worker addresses to their
process ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LoopbackCluster:
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    worker_pids: dict[str, int] = field(default_factory=dict)


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killed as a whole on exit
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def loopback_cluster(workers: int = 2, *, timeout: float = 60.0) -> Iterator[LoopbackCluster]:
    """Start a scheduler and ``workers`` one-thread worker processes on 127.0.0.1 (see above)."""
    # distributed is an optional dependency, needed only for cluster runs.
    from distributed import Client

    if int(workers) < 1:
        raise ValueError(f"A loopback cluster needs at least 1 worker; got {workers}.")
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="fewops-dask-") as tmp:
        folder = Path(tmp)
        info = folder / "scheduler.json"
        procs: list[subprocess.Popen] = []
        try:
            procs.append(
                _start(
                    [
                        "distributed.cli.dask_scheduler",
                        "--host=127.0.0.1",
                        "--port=0",
                        "--no-dashboard",
                        f"--scheduler-file={info}",
                    ],
                    folder / "scheduler.log",
                )
            )
            while not info.exists() or not info.read_text().strip().endswith("}"):
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    log = (folder / "scheduler.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"The Dask scheduler did not start; its log ends:\n{log}")
                time.sleep(0.1)
            address = json.loads(info.read_text())["address"]
            for i in range(int(workers)):
                procs.append(
                    _start(
                        [
                            "distributed.cli.dask_worker",
                            address,
                            "--host=127.0.0.1",
                            "--nthreads=1",
                            "--no-nanny",
                            "--no-dashboard",
                            f"--name=w{i}",
                            f"--local-directory={folder / f'w{i}'}",
                        ],
                        folder / f"worker{i}.log",
                    )
                )
            cluster = LoopbackCluster(address, procs)
            left = max(1.0, deadline - time.monotonic())
            with Client(address, timeout=left, set_as_default=False) as client:
                client.wait_for_workers(int(workers), timeout=left)
                cluster.worker_pids = client.run(os.getpid)
            yield cluster
        finally:
            for proc in reversed(procs):
                _stop(proc)
