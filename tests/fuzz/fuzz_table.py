"""Print the fuzzing table of docs/reliability.md: every format x mutation, N files each.

    FEWOPS_FUZZ_N=500 python tests/fuzz/fuzz_table.py      # N per format (the CI size)

Cells are "loaded / refused" counts; a crash, hang or memory overrun is counted in its column
(the pytest suite, tests/fuzz/test_fuzz_formats.py, fails on any).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_samples import FORMATS  # noqa: E402
from fuzzing import MUTATIONS, fuzz_format, fuzz_n  # noqa: E402


def main() -> None:
    n = fuzz_n()
    kinds = [*MUTATIONS, "structured"]
    header = ["format", "N", *kinds, "crashes", "hangs", "over 1 GB", "peak MiB", "slowest s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    t_all = time.perf_counter()
    for name, fmt in FORMATS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = fuzz_format(fmt, Path(tmp), n, seed=zlib.crc32(name.encode()))
        cells = [f"{out[k].loaded} / {out[k].refused}" if k in out else "" for k in kinds]
        crashes = sum(len(o.crashes) for o in out.values())
        hangs = sum(len(o.hangs) for o in out.values())
        memory = sum(len(o.memory) for o in out.values())
        peak = max(o.peak_bytes for o in out.values()) / 2**20
        slowest = max(o.slowest for o in out.values())
        row = [
            name,
            str(n),
            *cells,
            str(crashes),
            str(hangs),
            str(memory),
            f"{peak:.1f}",
            f"{slowest:.2f}",
        ]
        print("| " + " | ".join(row) + " |", flush=True)
    print(
        f"\n{len(FORMATS)} formats x {n} files in {time.perf_counter() - t_all:.0f} s on "
        f"{platform.node()} (Python {platform.python_version()})."
    )


if __name__ == "__main__":
    main()
