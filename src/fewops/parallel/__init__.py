"""One parallel map for every long job: joblib's loky processes here, or a Dask cluster.

``pmap(fn, items, workers=..., common=...)`` returns ``[fn(item, **common) for item in items]``
in order, whatever the number of workers and wherever they run:

- ``workers=1`` (or one item, or a call made inside a task): in this process, one after another;
- otherwise, inside ``with cluster("tcp://HOST:PORT"):``: as Dask tasks on that cluster, with
  ``common`` scattered once to every worker (not sent once per task); a worker that dies is
  replaced by Dask, which runs its tasks again elsewhere;
- otherwise: on joblib's reusable loky process pool. loky starts clean interpreters that never
  re-run the caller's script, so unguarded scripts, ``python - <<EOF``, ``python -c`` and
  notebooks all work; its workers exit when their parent dies (even by SIGKILL); numpy arrays
  in ``common`` over 1 MB go to the workers as shared memory maps.

Inside a task, BLAS/OpenMP pools are limited to ``task_threads()`` threads (the cores divided by
the workers), so two workers do not oversubscribe two cores; code with its own thread pools
reads ``task_threads()`` (None outside a task). Tasks must not depend on the worker they run
in: results are then identical for any number of workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import joblib
from threadpoolctl import threadpool_limits
from tqdm import tqdm

__all__ = ["cluster", "current_cluster", "pmap", "resolve_workers", "task_threads"]

# The Dask client that ``cluster`` made current in this context (None: local processes).
CURRENT_CLIENT: contextvars.ContextVar[Any] = contextvars.ContextVar("fewops_cluster", default=None)
# Threads a task may use; set while ``run_task`` runs a task (None: not inside a task). A context
# variable, so that the tasks a Dask worker runs in its threads each see their own.
TASK_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fewops_task_threads", default=None
)
# In a loky worker: the parent process id its watchdog compares against (None: no watchdog).
WATCHED_PARENT: int | None = None
# How often a worker checks that its parent is still alive, in seconds.
PARENT_POLL_S = 0.25


def task_threads() -> int | None:
    """The thread budget of the task running now, or None when not inside a ``pmap`` task."""
    return TASK_THREADS.get()


def current_cluster():
    """The Dask client made current by :func:`cluster`, or None."""
    return CURRENT_CLIENT.get()


def resolve_workers(workers: int | None, jobs: int) -> int:
    """Workers to use for ``jobs`` tasks: ``workers`` (None: the usable CPU count), at most
    ``jobs``, at least 1; 1 inside a task (no pools within pools)."""
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers):
        raise TypeError(f"workers must be a whole number or None; got {workers!r}.")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1 (or None for the CPU count); got {workers}.")
    if TASK_THREADS.get() is not None:
        return 1
    n = joblib.cpu_count() if workers is None else int(workers)
    return max(1, min(n, jobs))


def run_task(item, fn: Callable, common: dict, threads: int):
    """Run one task with ``threads`` threads for BLAS/OpenMP and for ``task_threads()``."""
    token = TASK_THREADS.set(threads)
    try:
        with threadpool_limits(limits=threads):
            return fn(item, **common)
    finally:
        TASK_THREADS.reset(token)


def pmap(
    fn: Callable,
    items: Iterable,
    *,
    workers: int | None = None,
    common: dict | None = None,
    progress: bool = False,
    desc: str | None = None,
    unit: str = "task",
    local: bool = False,
    on_result: Callable[[int, Any], None] | None = None,
) -> list:
    """``[fn(item, **common) for item in items]``, in parallel (see the module docstring).

    ``fn`` must be a module-level function (it is pickled by name). ``progress`` shows a tqdm
    bar that moves as tasks finish, whatever their order. ``local=True`` never sends the work to
    a cluster (for short steps whose data is cheaper to compute than to send). ``on_result(i,
    result)`` is called here, in the calling process, as soon as task ``i`` finishes (to record
    finished work while the rest still runs).
    """
    jobs: Sequence = list(items)
    common = dict(common or {})
    n = resolve_workers(workers, len(jobs))
    client = None if local or workers == 1 else CURRENT_CLIENT.get()
    bar = tqdm(total=len(jobs), desc=desc, unit=unit) if progress else None

    def done(i: int, result) -> None:
        if on_result is not None:
            on_result(i, result)
        if bar is not None:
            bar.update(1)

    try:
        if client is not None and jobs and TASK_THREADS.get() is None:
            return _on_cluster(client, fn, jobs, common, done)
        if n <= 1:
            out = []
            for i, job in enumerate(jobs):
                out.append(fn(job, **common))
                done(i, out[-1])
            return out
        return _on_loky(fn, jobs, common, n, done)
    finally:
        if bar is not None:
            bar.close()


def _on_loky(fn: Callable, jobs: Sequence, common: dict, n: int, done: Callable) -> list:
    threads = max(1, joblib.cpu_count() // n)
    calls = (joblib.delayed(_indexed)(i, job, fn, common, threads) for i, job in enumerate(jobs))
    out: list = [None] * len(jobs)
    with joblib.parallel_config(backend="loky", inner_max_num_threads=threads):
        runner = joblib.Parallel(n_jobs=n, return_as="generator_unordered")
        for i, result in runner(calls):
            out[i] = result
            done(i, result)
    return out


def _indexed(i: int, item, fn: Callable, common: dict, threads: int) -> tuple[int, Any]:
    watch_parent()
    return i, run_task(item, fn, common, threads)


def watch_parent() -> None:
    """In a worker process: exit as soon as the parent dies (even by SIGKILL).

    loky's idle workers would otherwise wait for their idle timeout (5 minutes) and busy ones
    finish their task first; a daemon thread polls the parent id and ends the process at once.
    """
    global WATCHED_PARENT
    if WATCHED_PARENT is not None:
        return
    WATCHED_PARENT = os.getppid()
    threading.Thread(
        target=_exit_with_parent, args=(WATCHED_PARENT,), name="fewops-parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _on_cluster(client, fn: Callable, jobs: Sequence, common: dict, done: Callable) -> list:
    # distributed is imported only for cluster runs (an optional, heavy dependency).
    from distributed import as_completed

    shared = {k: client.scatter(v, broadcast=True, hash=False) for k, v in common.items()}
    futures = client.map(run_task, jobs, fn=fn, common=shared, threads=1, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    out: list = [None] * len(jobs)
    try:
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            out[i] = future.result()
            done(i, out[i])
        return out
    finally:
        client.cancel(futures + list(shared.values()))


@contextlib.contextmanager
def cluster(address, *, timeout: float = 30.0) -> Iterator[Any]:
    """Send every ``pmap`` in this block to the Dask cluster at ``address``.

    ``address`` is a scheduler address (``"tcp://HOST:PORT"``) or a ``distributed.Client``
    (used as is and left open). Yields the client. The workers need fewops installed, in the
    same version as here.
    """
    try:
        # distributed is an optional dependency, needed only to reach a cluster.
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed comes with the test extra
        raise ValueError(
            f"Reaching the Dask cluster at {address!r} needs the distributed package: "
            "pip install 'fewops[cluster]'."
        ) from exc
    own = isinstance(address, str)
    if own:
        if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
            raise ValueError(f"A cluster address looks like 'tcp://HOST:PORT'; got {address!r}.")
        client = Client(address, timeout=timeout, set_as_default=False)
    else:
        client = address
    token = CURRENT_CLIENT.set(client)
    try:
        yield client
    finally:
        CURRENT_CLIENT.reset(token)
        if own:
            client.close()
