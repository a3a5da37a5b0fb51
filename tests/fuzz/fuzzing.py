"""Seeded byte (and value) mutation of a sample file, and the check every reader must pass.

Each mutated file must load (the reader returns) or be refused with the project's error (a
ValueError, TypeError or FileNotFoundError whose message names the file), within ``SECONDS``
seconds and ``MEMORY_BYTES`` of newly allocated memory. Anything else is a *crash* (another
exception, a message without the file), a *hang* (over time) or *memory* (over the budget).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SECONDS = 2.0
MEMORY_BYTES = 1 << 30
DEFAULT_N = 500  # per format in CI; FEWOPS_FUZZ_N sets another (nightly: 20000)

MUTATIONS = ("bitflip", "bytes", "truncate", "insert", "delete", "splice", "values")
INTERESTING = [
    0,
    -1,
    1,
    255,
    256,
    65535,
    2**31 - 1,
    2**31,
    2**32,
    2**63 - 1,
    2**64,
    10**9,
    -(10**9),
    10**12,
    10**30,
    1e308,
    1e400,
]


def fuzz_n() -> int:
    return int(os.environ.get("FEWOPS_FUZZ_N", DEFAULT_N))


def _mutate_json_values(text: str, rng: np.random.Generator) -> str:
    """Replace 1-3 numbers (or nest one value deeply) in a JSON text."""
    numbers = list(re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text))
    if not numbers or rng.random() < 0.1:
        depth = int(rng.choice([10, 1000, 100_000]))
        return "[" * depth + text + "]" * depth
    for _ in range(int(rng.integers(1, 4))):
        m = numbers[int(rng.integers(len(numbers)))]
        value = INTERESTING[int(rng.integers(len(INTERESTING)))]
        text = (
            text[: m.start()]
            + json.dumps(value if value != 1e400 else 1e308 * 10)
            + text[m.end() :]
        )
        numbers = list(re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text))
    return text


def mutate(raw: bytes, kind: str, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    n = len(data)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(n))
            data[i] ^= 1 << int(rng.integers(8))
    elif kind == "bytes":
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(n))
            data[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
    elif kind == "truncate":
        data = data[: int(rng.integers(n))]
    elif kind == "insert":
        i = int(rng.integers(n + 1))
        data[i:i] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == "delete":
        i = int(rng.integers(n))
        del data[i : i + int(rng.integers(1, 64))]
    elif kind == "splice":  # a block of the file copied over another place of it
        i, j = (int(v) for v in rng.integers(n, size=2))
        k = int(rng.integers(1, 256))
        data[j : j + k] = data[i : i + k]
    return bytes(data)


@dataclass
class Outcome:
    loaded: int = 0
    refused: int = 0
    crashes: list = field(default_factory=list)
    hangs: list = field(default_factory=list)
    memory: list = field(default_factory=list)
    peak_bytes: int = 0
    slowest: float = 0.0


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def fuzz_format(fmt, workdir: Path, n: int, seed: int = 0, kinds=MUTATIONS) -> dict[str, Outcome]:
    """Mutate ``fmt``'s sample ``n`` times (cycling through ``kinds``); one Outcome per kind."""
    sample_dir = workdir / "sample"
    sample_dir.mkdir(parents=True)
    sample = fmt.make(sample_dir)
    rel = sample.relative_to(sample_dir)
    raw = sample.read_bytes()
    fmt.load(sample)  # the unmutated sample loads
    kinds = [k for k in kinds if k != "values" or fmt.kind == "json"]
    if fmt.custom is not None:
        kinds = ["structured"]
    rng = np.random.default_rng(seed)
    out = {k: Outcome() for k in kinds}
    case_dir = workdir / "case"
    old = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    limit = resource.getrlimit(resource.RLIMIT_AS)
    try:
        for i in range(n):
            kind = kinds[i % len(kinds)]
            if case_dir.exists():
                shutil.rmtree(case_dir)
            shutil.copytree(sample_dir, case_dir)
            target = case_dir / rel
            if kind == "structured":
                fmt.custom(target, rng)
            elif kind == "values":
                target.write_bytes(_mutate_json_values(raw.decode(), rng).encode())
            else:
                target.write_bytes(mutate(raw, kind, rng))
            if fmt.resign is not None:
                fmt.resign(target)
            _run_case(fmt, target, case_dir, out[kind], f"{kind} #{i}")
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, limit)
    return out


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _run_case(fmt, target: Path, case_dir: Path, outcome: Outcome, label: str) -> None:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    # The address space may grow by the budget (plus slack for thread stacks); beyond it an
    # allocation fails and is counted against the reader.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + MEMORY_BYTES + (256 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (min(cap, hard) if hard > 0 else cap, hard))
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    t0 = time.perf_counter()
    try:
        fmt.load(target)
        outcome.loaded += 1
    except _Timeout:
        outcome.hangs.append(label)
    except MemoryError:
        outcome.memory.append(label)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if str(case_dir) in str(exc):
            outcome.refused += 1
        else:
            outcome.crashes.append(f"{label}: {type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # noqa: BLE001 - every other exception is what the fuzzer looks for
        outcome.crashes.append(f"{label}: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    elapsed = time.perf_counter() - t0
    outcome.slowest = max(outcome.slowest, elapsed)
    if elapsed > SECONDS and label not in outcome.hangs:
        outcome.hangs.append(label)
    peak = tracemalloc.get_traced_memory()[1] - base
    outcome.peak_bytes = max(outcome.peak_bytes, peak)
    if peak > MEMORY_BYTES:
        outcome.memory.append(label)
