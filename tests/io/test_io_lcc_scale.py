"""LCC at any finite scale: coded in a normalised scale, SQNR re-measured, bad requests refused."""

import json
import math
import re

import numpy as np
import pytest

from fewops.cli.main import main
from fewops.codes.common import sqnr_db
from fewops.codes.lcc import decompose
from fewops.sim.evaluate import graph_matrix

W = np.random.default_rng(0).standard_normal((16, 16))


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-160, 1e154, 1e200, 1e300])
def test_extreme_scales_are_coded_to_the_target_and_the_graph_computes_it(scale):
    # audit 4e/4f/4g: 0 adds and SQNR inf or nan (true SQNR 0 dB), or a false "stopped at 0 dB"
    res = decompose(W * scale, 30.0, algorithm="dmp", workers=1)
    assert math.isfinite(res.sqnr_db) and res.sqnr_db >= 30.0
    assert res.adds > 100
    # measured again from what the graph computes, against the matrix at its own scale
    assert sqnr_db(W, graph_matrix(res.graph) / scale) >= 30.0
    assert res.datapath_bits < 64  # the 2**k sits in the output shifts, not in the datapath
    assert np.array_equal(res.weight, W * scale)


def test_targets_at_or_below_0_db_are_refused():
    # audit 4h: 0, -5 and 1e-9 dB were accepted (48 adds at 3.98 dB)
    for target in (0, -5):
        message = (
            f"target_sqnr_db must be above 0 dB (at 0 dB the error is as large as W); got {target}."
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            decompose(W, target, workers=1)


def test_unknown_options_are_refused():
    # audit 4j: polsh=True (a typo of polish) was silently ignored
    with pytest.raises(
        TypeError, match=re.escape("decompose got unknown options ['polsh']; the algorithms read ")
    ):
        decompose(W, 30.0, algorithm="grow", workers=1, polsh=True)


def test_the_lcc_command_reports_a_finite_measured_sqnr_for_huge_matrices(tmp_path, capsys):
    path = tmp_path / "h.npy"
    np.save(path, W * 1e200)
    out = tmp_path / "h.json"
    assert main(["lcc", str(path), "--target-db", "30", "--workers", "1", "--json", str(out)]) == 0
    summary = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert 30.0 <= summary["sqnr_db"] < 100 and summary["adds"] > 100
