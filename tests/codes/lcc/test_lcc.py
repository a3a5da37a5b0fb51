"""Tests of linear computation coding (fewops.codes.lcc): add rule, search, graph, API, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fewops.codes.common import sqnr_db
from fewops.codes.lcc import auto_slice_width, decompose, slice_bounds
from fewops.codes.lcc.core import best_terms, pow2_round, row_adds, split_pow2, top_terms
from fewops.codes.lcc.lower import merged_terms
from fewops.cost.count import count_graph
from fewops.sim import graph_matrix
from fewops.sim.evaluate import evaluate


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- the add rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "adds"),
    [
        ([1, 0.5, -2], 2),
        ([3], 1),
        ([11], 2),
        ([0.75], 1),
        ([7], 1),
        ([], 0),
        ([0, 0], 0),
        ([-1], 0),
    ],
)
def test_add_rule_hand_cases(row, adds):
    assert row_adds(row) == adds


def test_split_pow2_sums_back_and_uses_powers_of_two():
    vals = np.array([11.0, -7.0, 0.75, 3.0, 0.0, 1 / 1024, 2.0**40 + 1])
    idx, exp, sign = split_pow2(vals)
    back = np.zeros_like(vals)
    np.add.at(back, idx, sign * np.ldexp(1.0, exp))
    assert np.array_equal(back, vals)
    assert np.bincount(idx, minlength=vals.size).tolist() == [3, 2, 2, 2, 0, 1, 2]


def test_pow2_round_is_nearest_power_of_two():
    x = np.array([1.0, 1.49, 1.5, 1.51, -3.0, 0.0, 0.7, 5e-30])
    assert pow2_round(x).tolist() == [1.0, 1.0, 2.0, 2.0, -4.0, 0.0, 0.5, 2.0**-97]


# -- the single-term search -----------------------------------------------------------------


def brute_best(r, dic):
    best = (0.0, None, None)
    for j, d in enumerate(dic):
        for e in range(-12, 8):
            for s in (1, -1):
                c = s * 2.0**e
                gain = r @ r - (r - c * d) @ (r - c * d)
                if gain > best[0] + 1e-12:
                    best = (gain, j, c)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_dmp_single_term_is_brute_force_best(seed):
    rng = np.random.default_rng(seed)
    dic = rng.standard_normal((9, 4))
    resid = rng.standard_normal((6, 4)) * 3
    j, c, g = best_terms(resid, dic)
    for i in range(6):
        gain, bj, bc = brute_best(resid[i], dic)
        assert g[i] == pytest.approx(gain, rel=1e-12)
        assert (j[i], c[i]) == (bj, bc)
    tj, tc, tg = top_terms(resid, dic, 3)
    assert np.array_equal(tj[:, 0], j) and np.allclose(tg[:, 0], g)
    assert np.all(np.diff(tg, axis=1) <= 0)


def test_fast_search_matches_exact_search(monkeypatch):
    import fewops.codes.lcc.core as core

    rng = np.random.default_rng(3)
    dic = rng.standard_normal((700, 8))
    resid = rng.standard_normal((400, 8)) * 1e-3
    exact = best_terms(resid, dic)
    monkeypatch.setattr(core, "FAST_ENTRIES", 1)
    monkeypatch.setattr(core, "FAST_CHUNK", 700 * 64)
    fast = best_terms(resid, dic)
    # float32 may pick a near-tie differently; the gain may not be worse than 1e-5 relative.
    assert np.all(fast[2] >= exact[2] * (1 - 1e-5))
    assert np.mean(fast[0] == exact[0]) > 0.99


def test_fast_top_terms_match_exact(monkeypatch):
    import fewops.codes.lcc.core as core

    rng = np.random.default_rng(7)
    resid, dic = rng.standard_normal((300, 6)), rng.standard_normal((120, 6))
    exact = top_terms(resid, dic, 4)
    monkeypatch.setattr(core, "FAST_ENTRIES", 1)
    fast = top_terms(resid, dic, 4, fast=True)
    assert np.array_equal(exact[0], fast[0])
    assert np.array_equal(exact[1], fast[1])
    assert np.allclose(exact[2], fast[2], rtol=0, atol=1e-12)


def test_dmp_layer_with_s1_uses_brute_force_best():
    w = gaussian((12, 3), seed=5)
    res = decompose(w, 1.0, algorithm="dmp", S=1, workers=1)
    code = res.slices[0].code
    # One layer: each row is its best single shifted input.
    assert code.info["layers"] == 1
    approx = code.matrix()
    for i in range(12):
        gain, j, c = brute_best(w[i], np.eye(3))
        expect = np.zeros(3)
        expect[j] = c
        assert np.array_equal(approx[i], expect)


# -- results: accuracy, structure, graph ----------------------------------------------------

ALGOS = [
    ("dmp", {}),
    ("rs", {"mem": 3}),
    ("fs", {}),
    ("mixed", {"depths": (1, 2)}),
    ("grow", {}),
    ("grow", {"polish": True}),
    ("chain", {}),
    ("chain", {"switch_db": 10.0, "beam": 3, "width": 2}),
    ("best", {"restarts": 2}),
]


@pytest.mark.parametrize(("algorithm", "opts"), ALGOS)
def test_meets_target_and_graph_is_exact(algorithm, opts):
    w = gaussian((24, 7), seed=1)
    res = decompose(w, 30.0, algorithm=algorithm, slice_width=4, workers=1, **opts)
    assert len(res.slices) == 2
    assert res.sqnr_db >= 30.0
    assert res.sqnr_db == pytest.approx(sqnr_db(w, res.matrix()))
    cost = count_graph(res.graph)
    assert cost.adds == res.adds
    assert cost.mults == 0
    # The add rule on the wiring rows plus the slice sums gives the same count.
    combine = sum(
        max(int(sum(s.code.out_src[i] >= 0 for s in res.slices)) - 1, 0) for i in range(24)
    )
    assert res.adds == sum(s.adds for s in res.slices) + combine
    assert res.combine_adds == combine
    # Bit-exact: integer simulation equals X @ W_hat^T after the output scale.
    x = np.random.default_rng(2).integers(-128, 128, size=(16, 7))
    y = evaluate(res.graph, x)
    w_hat = res.matrix()
    ref = x @ w_hat.T
    assert np.array_equal(np.ldexp(y.astype(np.float64), -res.graph.output_scale), ref)
    assert np.array_equal(graph_matrix(res.graph), w_hat)


def test_exact_integer_matrix_even_with_long_mantissas():
    w = gaussian((20, 5), seed=4)
    res = decompose(w, 70.0, algorithm="dmp", workers=1)
    m_int = evaluate(res.graph, np.eye(5, dtype=np.int64))  # exact integers (maybe Python ints)
    x = np.random.default_rng(0).integers(-50, 50, size=(8, 5))
    y = evaluate(res.graph, x)
    assert np.array_equal(np.asarray(y, dtype=object), x.astype(object) @ m_int.astype(object))
    assert np.allclose(
        np.ldexp(np.asarray(m_int, dtype=np.float64), -res.graph.output_scale),
        res.matrix().T,
        rtol=0,
        atol=1e-15,
    )


@pytest.mark.parametrize("S", [2, 3])
def test_every_dmp_wiring_entry_is_at_most_s_powers_of_two(S):
    w = gaussian((30, 5), seed=S)
    res = decompose(w, 40.0, algorithm="dmp", S=S, workers=1)
    code = res.slices[0].code
    cw, src, exp, sign = merged_terms(code)
    # Per codeword (wiring row): at most S power-of-two terms in total.
    assert np.bincount(cw).max() <= S
    assert np.all(np.abs(code.term_coef) == np.ldexp(1.0, np.frexp(np.abs(code.term_coef))[1] - 1))


def test_rs_beam_is_no_worse_per_layer_than_dmp():
    from fewops.codes.lcc.dmp import layered

    t = gaussian((40, 6), seed=7)
    for layers in (1, 2):
        d = layered(t, 0.0, s_terms=2, mem=1, max_layers=layers)
        r = layered(t, 0.0, s_terms=3, mem=6, max_layers=layers)
        r1 = layered(t, 0.0, s_terms=2, mem=6, max_layers=1)
        assert r.info["layers"] == layers
        if layers == 1:
            assert r1.info["err"] <= d.info["err"] * (1 + 1e-12)
    assert np.allclose(np.sum((t - r.matrix()) ** 2), r.info["err"])


def test_fs_outputs_are_single_shifted_codewords_and_two_term_codewords():
    w = gaussian((32, 4), seed=2)
    res = decompose(w, 30.0, algorithm="fs", workers=1)
    code = res.slices[0].code
    assert np.all(np.bincount(code.term_cw) == 2)
    # Each output is one codeword times +-2^e: no adds outside the codewords.
    assert res.combine_adds == 0
    assert res.adds <= code.num_codewords


def test_dead_ends_are_removed_before_counting():
    from fewops.codes.lcc.core import SliceCode
    from fewops.codes.lcc.lower import to_graph

    # Ids 2, 3, 4: c0 = x0 + x1, c1 = x0 - 3 x1 (dead: nobody reads it), c2 = c0 + x1/2.
    code = SliceCode(
        num_rows=2,
        num_inputs=2,
        term_cw=np.array([0, 0, 1, 1, 2, 2]),
        term_src=np.array([0, 1, 0, 1, 2, 1]),
        term_coef=np.array([1.0, 1.0, 1.0, -3.0, 1.0, 0.5]),
        level=np.array([1, 1, 2]),
        out_src=np.array([4, 2]),
        out_coef=np.array([1.0, -2.0]),
    )
    assert code.live().tolist() == [True, False, True]
    assert code.rule_adds() == 2  # c1 (2 adds: x0 - 4 x1 + x1) is not counted
    graph = to_graph([code], [0], 2, 2)
    assert count_graph(graph).adds == 2
    assert np.array_equal(graph_matrix(graph), [[1.0, 1.5], [-2.0, -2.0]])
    assert np.array_equal(graph_matrix(graph), code.matrix())


def test_same_seed_same_result_and_workers_do_not_matter():
    w = gaussian((30, 12), seed=9)
    a = decompose(w, 35.0, algorithm="grow", slice_width=4, seed=3, workers=1)
    b = decompose(w, 35.0, algorithm="grow", slice_width=4, seed=3, workers=2)
    assert a.adds == b.adds
    assert np.array_equal(a.matrix(), b.matrix())


def test_best_is_no_worse_than_dmp_and_grow():
    w = gaussian((48, 6), seed=11)
    best = decompose(w, 40.0, algorithm="best", workers=1, restarts=2)
    for alg in ("dmp", "grow"):
        assert best.adds <= decompose(w, 40.0, algorithm=alg, workers=1).adds
    assert best.sqnr_db >= 40.0


def test_best_same_seed_same_result_whatever_the_workers():
    w = gaussian((16, 8), seed=4)
    a = decompose(w, 30.0, algorithm="best", slice_width=4, seed=5, workers=1, restarts=2)
    b = decompose(w, 30.0, algorithm="best", slice_width=4, seed=5, workers=2, restarts=2)
    assert a.adds == b.adds
    assert np.array_equal(a.matrix(), b.matrix())
    assert a.sqnr_db >= 30.0


@pytest.mark.parametrize(("algorithm", "opts"), [("fs", {}), ("dmp", {}), ("fs", {"lookahead": 4})])
def test_polish_never_costs_more_and_keeps_the_code_valid(algorithm, opts):
    from fewops.codes.lcc.algorithms import run_algorithm
    from fewops.codes.lcc.lower import to_graph
    from fewops.codes.lcc.polish import polish

    w = gaussian((32, 5), seed=6)
    budget = 10 ** (-36 / 10) * float(np.sum(w * w))
    code = run_algorithm(algorithm, w, budget, **opts)
    out = polish(code, w, budget)
    assert out.rule_adds() <= code.rule_adds()
    assert float(np.sum((w - out.matrix()) ** 2)) <= budget * (1 + 1e-9)
    # Acyclic (sources are older ids, levels increase) and at most two terms per codeword.
    k = out.num_inputs
    assert np.all(out.term_src < k + out.term_cw)
    src_lvl = np.where(out.term_src >= k, out.level[np.maximum(out.term_src - k, 0)], 0)
    assert np.all(src_lvl < out.level[out.term_cw])
    cw, _, _, _ = merged_terms(out)
    assert np.bincount(cw, minlength=out.num_codewords).max() <= 2
    graph = to_graph([out], [0], w.shape[1], w.shape[0])
    assert count_graph(graph).adds == out.rule_adds()
    assert np.array_equal(graph_matrix(graph), out.matrix())


def test_polish_saves_adds_on_gaussian():
    from fewops.codes.lcc.algorithms import run_algorithm
    from fewops.codes.lcc.polish import polish

    w = gaussian((64, 4), seed=0)
    budget = 10 ** (-47 / 10) * float(np.sum(w * w))
    code = run_algorithm("fs", w, budget)
    out = polish(code, w, budget)
    assert out.rule_adds() < code.rule_adds()
    assert out.info["polish_adds_saved"] == code.rule_adds() - out.rule_adds()
    swapped = polish(code, w, budget, swaps=2)
    assert swapped.rule_adds() <= out.rule_adds()
    assert float(np.sum((w - swapped.matrix()) ** 2)) <= budget * (1 + 1e-9)


def test_grow_beats_dmp_on_gaussian():
    w = gaussian((256, 8), seed=0)
    g = decompose(w, 47.0, algorithm="grow", workers=1)
    d = decompose(w, 47.0, algorithm="dmp", workers=1)
    assert g.sqnr_db >= 47.0
    assert g.adds < 0.9 * d.adds


def test_slicing():
    assert auto_slice_width(4096, 12) == 12
    assert auto_slice_width(256, 1000) == 8
    assert auto_slice_width(1, 5) == 1
    assert slice_bounds(10, 4) == [(0, 3), (3, 7), (7, 10)]
    assert slice_bounds(8, 4) == [(0, 4), (4, 8)]


def test_summary_and_coded_matrix():
    w = gaussian((16, 4), seed=0)
    res = decompose(w, 20.0, algorithm="grow", workers=1)
    s = res.summary()
    assert s["adds"] == res.adds and s["shape"] == [16, 4]
    assert 8 < s["datapath_bits"] <= 40 and s["finest_bit"] == int(res.graph.lsb.min())
    assert res.adds_per_entry == res.adds / 64
    coded = res.coded()
    assert np.array_equal(coded.matrix, res.matrix())


# -- bad and edge input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "message"),
    [
        (
            np.array([[1.0, np.nan]]),
            "W has 1 non-finite entries (NaN or inf), first at [0, 1] = nan.",
        ),
        (
            np.array([[1.0, np.inf]]),
            "W has 1 non-finite entries (NaN or inf), first at [0, 1] = inf.",
        ),
        (np.zeros((0, 3)), "W must not be empty; got shape (0, 3)."),
        (np.ones(4), "W must be a 2-D matrix (out, in); got shape (4,)."),
    ],
)
def test_bad_matrices(w, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        decompose(w, 30.0)


def test_bad_arguments():
    w = gaussian((8, 3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown LCC algorithm 'nope'; choose one of dmp, rs, fs, mixed, grow, chain, best."
        ),
    ):
        decompose(w, 30.0, algorithm="nope")
    with pytest.raises(
        ValueError,
        match=re.escape("target_sqnr_db must be finite and at most 200.0 dB; got 400.0."),
    ):
        decompose(w, 400.0)
    with pytest.raises(
        ValueError, match=re.escape("target_sqnr_db must be finite and at most 200.0 dB; got nan.")
    ):
        decompose(w, math.nan)
    with pytest.raises(
        ValueError, match=re.escape("S (terms per wiring row) must be at least 1; got 0.")
    ):
        decompose(w, 30.0, S=0)
    with pytest.raises(ValueError, match=re.escape("slice_width must be at least 1; got 0.")):
        decompose(w, 30.0, slice_width=0)


def test_unreachable_target_is_a_clear_error():
    w = gaussian((8, 3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "LCC with algorithm 'dmp' could not reach 150.0 dB on columns 0:3: it stopped at 26.02 dB. Lower the target or use another algorithm."
        ),
    ):
        decompose(w, 150.0, algorithm="dmp", max_layers=3, workers=1)


def test_zero_matrix_and_zero_columns():
    res = decompose(np.zeros((5, 3)), 40.0, workers=1)
    assert res.adds == 0
    assert np.array_equal(res.matrix(), np.zeros((5, 3)))
    assert np.array_equal(evaluate(res.graph, np.ones((2, 3), dtype=np.int64)), np.zeros((2, 5)))
    w = gaussian((10, 4))
    w[:, 1] = 0
    w[3] = 0
    for alg in ("dmp", "grow", "fs"):
        r = decompose(w, 30.0, algorithm=alg, workers=1)
        assert r.sqnr_db >= 30.0
        assert np.all(r.matrix()[3] == 0) and np.all(r.matrix()[:, 1] == 0)


def test_exactly_representable_matrix_is_exact():
    w = np.array([[1.0, 0.5], [-2.0, 4.0], [0.25, 0.0]])
    res = decompose(w, 100.0, algorithm="grow", workers=1)
    assert np.array_equal(res.matrix(), w)
    assert res.sqnr_db == math.inf


# -- command line -----------------------------------------------------------------------------


def test_cli_runs_and_writes_outputs(tmp_path, capsys):
    import json

    from fewops.cli.lcc import main

    w = gaussian((32, 5), seed=1)
    np.save(tmp_path / "w.npy", w)
    status = main(
        [
            "lcc",
            str(tmp_path / "w.npy"),
            "--target-db",
            "30",
            "--algorithm",
            "grow",
            "--workers",
            "1",
            "--no-progress",
            "--json",
            str(tmp_path / "out.json"),
            "--save-matrix",
            str(tmp_path / "w_hat.npy"),
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "adds" in out and "dense CSD" in out
    summary = json.loads((tmp_path / "out.json").read_text())
    w_hat = np.load(tmp_path / "w_hat.npy")
    assert summary["sqnr_db"] >= 30.0
    assert sqnr_db(w, w_hat) == pytest.approx(summary["sqnr_db"])
    assert summary["adds"] > 0 and summary["csd"]["adds"] > summary["adds"]
