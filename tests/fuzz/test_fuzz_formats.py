"""Fuzzing every file format fewops reads: N mutated files each (FEWOPS_FUZZ_N, default 500).

Every mutated file loads or is refused with a ValueError/TypeError/FileNotFoundError naming the
file, within 2 s and 1 GB; see docs/reliability.md for the table and the nightly-size command.
"""

import zlib

import pytest
from fuzz_samples import FORMATS
from fuzzing import fuzz_format, fuzz_n


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_mutated_file_loads_or_is_refused_naming_it(name, tmp_path):
    n = fuzz_n()
    outcomes = fuzz_format(FORMATS[name], tmp_path, n, seed=zlib.crc32(name.encode()))
    assert (
        sum(o.loaded + o.refused for o in outcomes.values())
        + sum(len(o.crashes) + len(o.hangs) + len(o.memory) for o in outcomes.values())
        >= n
    )
    problems = {
        kind: o.crashes[:3]
        + [f"hang: {h}" for h in o.hangs[:3]]
        + [f"memory: {m}" for m in o.memory[:3]]
        for kind, o in outcomes.items()
        if o.crashes or o.hangs or o.memory
    }
    assert problems == {}
