"""Beam-searched row chains ("chain"): the search, the allocation of adds, the code they build."""

from __future__ import annotations

import itertools

import numpy as np

from fewops.codes.lcc import decompose
from fewops.codes.lcc.algorithms import run_algorithm
from fewops.codes.lcc.chains import allocate, backtrack, beam_chains, extend_code
from fewops.codes.lcc.core import best_terms, pow2_round
from fewops.codes.lcc.grow import grow


def _budget(w, db):
    return float(np.einsum("ij,ij->", w, w)) * 10.0 ** (-db / 10.0)


def test_beam_of_one_is_greedy_matching_pursuit():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((20, 6))
    dic = rng.standard_normal((40, 6))
    errors, _ = beam_chains(t, np.zeros_like(t), dic, 1e-30, beam=1, width=1, max_steps=4)
    r = t.copy()
    for step in range(1, 5):
        j, c, _ = best_terms(r, dic)
        r = r - c[:, None] * dic[j]
        np.testing.assert_allclose(errors[:, step], np.einsum("ij,ij->i", r, r), rtol=1e-9)


def test_wider_beam_finds_lower_errors_on_average():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((200, 8))
    dic = rng.standard_normal((300, 8))
    greedy, _ = beam_chains(t, np.zeros_like(t), dic, 1e-30, beam=1, width=1, max_steps=5)
    wide, _ = beam_chains(t, np.zeros_like(t), dic, 1e-30, beam=8, width=8, max_steps=5)
    assert np.log(wide[:, 5]).mean() < np.log(greedy[:, 5]).mean() - 0.1


def test_allocation_is_optimal_on_small_cases():
    rng = np.random.default_rng(2)
    for _ in range(20):
        # Convex decreasing curves (geometric), as chains give.
        start = rng.uniform(1, 4, size=4)
        rate = rng.uniform(0.1, 0.6, size=4)
        errors = start[:, None] * rate[:, None] ** np.arange(5)[None, :]
        budget = float(rng.uniform(0.05, 1.0) * errors[:, 0].sum())
        s = allocate(errors, budget)
        assert errors[np.arange(4), s].sum() <= budget
        best = min(
            sum(c)
            for c in itertools.product(range(5), repeat=4)
            if errors[np.arange(4), list(c)].sum() <= budget
        )
        assert s.sum() == best


def test_allocation_takes_everything_when_the_budget_is_out_of_reach():
    errors = np.array([[4.0, 2.0, 1.0], [4.0, 3.0, 2.5]])
    assert allocate(errors, 0.1).tolist() == [2, 2]


def test_extended_code_reproduces_the_searched_errors():
    rng = np.random.default_rng(3)
    t = rng.standard_normal((64, 6))
    budget = _budget(t, 40.0)
    head = grow(t, _budget(t, 12.0))
    errors, trace = beam_chains(t, head.matrix(), head.values(), budget, beam=4, width=4)
    steps = allocate(errors, budget)
    code = extend_code(head, backtrack(trace, steps))
    d = t - code.matrix()
    per_row = np.einsum("ij,ij->i", d, d)
    np.testing.assert_allclose(per_row, errors[np.arange(64), steps], rtol=1e-6, atol=1e-12)
    assert per_row.sum() <= budget * (1 + 1e-9)
    # One add per chain step, on top of the head's adds.
    assert code.rule_adds() == head.rule_adds() + int(steps.sum())
    # Every chain term is a signed power of two.
    assert np.array_equal(pow2_round(code.term_coef), code.term_coef)


def test_chain_beats_the_fully_sequential_search():
    w = np.random.default_rng(0).standard_normal((128, 7))
    budget = _budget(w, 40.0)
    fs = run_algorithm("fs", w, budget)
    chain = run_algorithm("chain", w, budget)
    assert float(((w - chain.matrix()) ** 2).sum()) <= budget * (1 + 1e-9)
    assert chain.rule_adds() < fs.rule_adds()


def test_chain_same_seed_same_result_whatever_the_workers():
    w = np.random.default_rng(5).standard_normal((40, 10))
    a = decompose(w, 45.0, algorithm="chain", slice_width=5, workers=1)
    b = decompose(w, 45.0, algorithm="chain", slice_width=5, workers=2)
    assert a.adds == b.adds
    assert np.array_equal(a.matrix(), b.matrix())
    assert a.sqnr_db >= 45.0


def test_chain_on_exact_and_zero_rows():
    w = np.vstack([np.eye(4), np.zeros((2, 4)), [[0.75, -3.0, 0.0, 1.0]]])
    res = decompose(w, 80.0, algorithm="chain", slice_width=4, workers=1)
    assert np.array_equal(res.matrix(), w)
    assert res.adds == 4  # the last row: 0.75, -3 and 1 are 5 powers of two
