"""Tests of merged copies (cse.dedupe), shared moves (grow share=True) and the term floor."""

from __future__ import annotations

import numpy as np
import pytest

from fewops.codes.lcc import decompose
from fewops.codes.lcc.algorithms import run_algorithm
from fewops.codes.lcc.core import SliceCode
from fewops.codes.lcc.cse import dedupe
from fewops.codes.lcc.grow import grow
from fewops.codes.lcc.lower import merged_terms, to_graph
from fewops.cost.count import count_graph
from fewops.sim import graph_matrix
from fewops.sim.evaluate import evaluate


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _code(k, terms, levels, out_src, out_coef):
    cw, src, coef = (np.array(x) for x in zip(*terms, strict=True))
    return SliceCode(
        num_rows=len(out_src),
        num_inputs=k,
        term_cw=cw.astype(np.int64),
        term_src=src.astype(np.int64),
        term_coef=coef.astype(np.float64),
        level=np.array(levels, dtype=np.int64),
        out_src=np.array(out_src, dtype=np.int64),
        out_coef=np.array(out_coef, dtype=np.float64),
    )


def test_dedupe_merges_copies_up_to_sign_and_shift():
    # ids 0, 1: inputs. 2 = x0 + x1; 3 = 2 x0 + 2 x1 (a shifted copy); 4 = -x1 - x0 (a negated
    # copy, terms in another order); 5 = 3 + 0.5 x0 reads the copy; 6 = 2/2 + x0/8 (a copy of 5
    # once 3 is merged into 2).
    terms = [
        (0, 0, 1.0), (0, 1, 1.0),
        (1, 0, 2.0), (1, 1, 2.0),
        (2, 1, -1.0), (2, 0, -1.0),
        (3, 3, 1.0), (3, 0, 0.5),
        (4, 2, 0.5), (4, 0, 0.125),
    ]  # fmt: skip
    code = _code(2, terms, [1, 1, 1, 2, 2], [2, 3, 4, 5, 6], [1.0, -1.0, 4.0, 1.0, -8.0])
    assert code.rule_adds() == 5
    merged = dedupe(code)
    assert merged.info["merged_codewords"] == 3
    assert merged.rule_adds() == 2
    assert np.array_equal(merged.matrix(), code.matrix())
    graph = to_graph([merged], [0], 2, 5)
    assert count_graph(graph).adds == 2
    assert np.array_equal(graph_matrix(graph), code.matrix())


def test_dedupe_without_copies_returns_the_same_code():
    code = run_algorithm("fs", gaussian((20, 4), seed=2), 1e-2)
    assert dedupe(code).rule_adds() <= code.rule_adds()
    assert np.array_equal(dedupe(code).matrix(), code.matrix())


@pytest.mark.parametrize("lookahead", [0, 4])
def test_shared_grow_meets_target_and_its_graph_is_exact(lookahead):
    t = gaussian((300, 6), seed=3)
    budget = 1e-4 * float(np.sum(t * t))
    code = grow(t, budget, batch=0.25, keep_depth=4, share=True, lookahead=lookahead)
    assert code.info["err"] <= budget
    d = t - code.matrix()
    assert float(np.sum(d * d)) <= budget * (1 + 1e-9)
    merged = dedupe(code)
    graph = to_graph([merged], [0], 6, 300)
    assert np.array_equal(graph_matrix(graph), code.matrix())
    x = np.random.default_rng(1).integers(-100, 100, size=(5, 6))
    y = evaluate(graph, x)
    assert np.array_equal(np.ldexp(y.astype(np.float64), -graph.output_scale), x @ code.matrix().T)
    again = grow(t, budget, batch=0.25, keep_depth=4, share=True, lookahead=lookahead)
    assert np.array_equal(again.matrix(), code.matrix())


def test_tall_slices_share_and_workers_do_not_matter():
    w = gaussian((600, 12), seed=5)
    a = decompose(w, 30.0, algorithm="grow", slice_width=6, workers=1)
    b = decompose(w, 30.0, algorithm="grow", slice_width=6, workers=2)
    assert a.sqnr_db >= 30.0
    assert a.adds == b.adds == count_graph(a.graph).adds
    assert np.array_equal(a.matrix(), b.matrix())
    assert np.array_equal(graph_matrix(a.graph), a.matrix())


def test_fast_search_threads_do_not_change_the_result(monkeypatch):
    import fewops.codes.lcc.core as core

    t = gaussian((200, 6), seed=8)
    budget = 1e-4 * float(np.sum(t * t))
    monkeypatch.setattr(core, "FAST_ENTRIES", 1)
    monkeypatch.setattr(core, "FAST_CHUNK", 64 * 50)
    monkeypatch.setattr(core, "FAST_THREADS", 1)
    one = grow(t, budget, batch=0.25)
    monkeypatch.setattr(core, "FAST_THREADS", 2)
    two = grow(t, budget, batch=0.25)
    assert np.array_equal(one.matrix(), two.matrix())


@pytest.mark.parametrize("algorithm", ["dmp", "rs", "fs", "grow", "best"])
def test_no_terms_far_below_the_target_error(algorithm):
    # Rows of size 1e-60 cannot matter at 40 dB; no term may be spent on them (no 2^-200 shifts).
    w = gaussian((40, 4), seed=6)
    w[::7] *= 1e-60
    res = decompose(w, 40.0, algorithm=algorithm, workers=1, restarts=1, mem=2)
    assert res.sqnr_db >= 40.0
    for s in res.slices:
        cw, _, exp, _ = merged_terms(s.code)
        live = s.code.live()[cw]
        assert exp[live].min(initial=0) > -40
    assert np.array_equal(graph_matrix(res.graph), res.matrix())
