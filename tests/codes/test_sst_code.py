"""SST (n, k) code: pattern counts, enumerative index, packing, projection, step fit, graph."""

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewops.codes import sst as sst_code
from fewops.codes.sst import SSTCode, num_codewords
from fewops.cost import count_graph
from fewops.sim import evaluate


def brute_patterns(n, k):
    """Every ternary vector of length n with at most k nonzeros, by plain enumeration."""
    return np.array(
        [p for p in itertools.product((-1, 0, 1), repeat=n) if np.count_nonzero(p) <= k]
    )


# -- counts and the index ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "count", "bits"),
    [
        (8, 2, 129, 8),
        (4, 1, 9, 4),
        (8, 1, 17, 5),
        (16, 4, 34113, 16),
        (1, 1, 3, 2),
        (16, 16, 3**16, 26),
    ],
)
def test_num_codewords_and_bits(n, k, count, bits):
    code = SSTCode(n, k)
    assert num_codewords(n, k) == count
    assert code.num_codewords == count
    assert code.bits_per_group == bits
    assert code.bits_per_group == math.ceil(math.log2(count))


def test_8_2_is_one_bit_per_weight():
    assert SSTCode(8, 2).bits_per_weight == 1.0


@pytest.mark.parametrize(("n", "k"), [(1, 1), (3, 2), (4, 1), (5, 5), (8, 2), (6, 3)])
def test_table_is_every_pattern_once_in_canonical_order(n, k):
    code = SSTCode(n, k)
    table = code.table()
    assert table.shape == (num_codewords(n, k), n)
    expected = {tuple(p) for p in brute_patterns(n, k)}
    assert {tuple(r) for r in table} == expected
    assert len({tuple(r) for r in table}) == table.shape[0]
    assert not table[0].any()
    nnz = np.count_nonzero(table, axis=1)
    assert np.all(np.diff(nnz) >= 0)  # ordered by the number of nonzeros first


@pytest.mark.parametrize(("n", "k"), [(8, 2), (4, 1), (16, 4), (7, 7), (16, 1)])
def test_round_trip_every_pattern(n, k):
    code = SSTCode(n, k)
    everything = np.arange(code.num_codewords)
    patterns = code.decode(everything[:, None])
    assert patterns.shape == (code.num_codewords, n)
    assert np.all(np.count_nonzero(patterns, axis=1) <= k)
    np.testing.assert_array_equal(code.encode(patterns)[:, 0], everything)


@pytest.mark.parametrize(("n", "k"), [(16, 16), (16, 8), (15, 7)])
def test_round_trip_random_indices_of_large_codes(n, k):
    code = SSTCode(n, k)
    idx = np.random.default_rng(n + k).integers(0, code.num_codewords, size=(50, 40))
    idx[0, :2] = [0, code.num_codewords - 1]
    t = code.decode(idx)
    assert np.all(np.count_nonzero(t.reshape(50, 40, n), axis=-1) <= k)
    np.testing.assert_array_equal(code.encode(t), idx)
    np.testing.assert_array_equal(code.unpack(code.pack(idx), idx.shape), idx)


def test_known_indices_of_the_8_2_code():
    code = SSTCode(8, 2)
    # 0: nothing; 1 + 2p (+1 if negative): one nonzero at p; two nonzeros start at 17.
    t = np.zeros((5, 8), dtype=np.int8)
    t[1, 0] = 1
    t[2, 7] = -1
    t[3, [0, 1]] = [1, 1]
    t[4, [6, 7]] = [-1, -1]
    np.testing.assert_array_equal(code.encode(t)[:, 0], [0, 1, 16, 17, 128])


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 16),
    data=st.data(),
)
def test_round_trip_random_matrices_with_padding(n, data):
    k = data.draw(st.integers(1, n))
    rows = data.draw(st.integers(1, 4))
    cols = data.draw(st.integers(1, 3 * n + 2))
    seed = data.draw(st.integers(0, 2**31))
    code = SSTCode(n, k)
    w = np.random.default_rng(seed).normal(size=(rows, cols))
    t, _ = code.ternary(w)
    idx = code.encode(t)
    assert idx.shape == (rows, code.num_groups(cols))
    back = code.decode(idx)
    assert back.shape == (rows, code.num_groups(cols) * n)
    np.testing.assert_array_equal(back[:, :cols], t)
    assert not back[:, cols:].any()
    np.testing.assert_array_equal(code.unpack(code.pack(idx), idx.shape), idx)


def test_pack_is_dense_and_file_round_trip(tmp_path):
    code = SSTCode(4, 1)  # 4 bits per group: two indices per byte
    idx = np.array([[1, 8, 0], [3, 2, 7]])
    data = code.pack(idx)
    assert data == bytes([0x81, 0x30, 0x72])
    path = tmp_path / "w.sst"
    code.save_packed(path, idx)
    np.testing.assert_array_equal(code.load_packed(path, (2, 3)), idx)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "message"),
    [
        (2, 3, "k=3 nonzeros per group cannot exceed the group size n=2."),
        (0, 1, "The group size n must be at least 1; got n=0."),
        (17, 2, "The group size n=17 is over the supported limit of 16."),
        (8, 0, "The number of nonzeros per group k must be at least 1; got k=0."),
    ],
)
def test_bad_n_k(n, k, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SSTCode(n, k)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        num_codewords(n, k)


def test_n_must_be_an_integer():
    with pytest.raises(TypeError, match=re.escape("n must be an integer; got float 8.0.")):
        SSTCode(8.0, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    w = np.ones((3, 8))
    w[1, 2] = bad
    message = f"W has 1 non-finite entries (NaN or inf), first at [1, 2] = {bad}."
    with pytest.raises(ValueError, match=re.escape(message)):
        SSTCode(8, 2).project(w)
    with pytest.raises(ValueError, match=re.escape(message)):
        sst_code.encode_matrix(w)


def test_packed_file_of_wrong_length(tmp_path):
    code = SSTCode(8, 2)
    path = tmp_path / "w.sst"
    path.write_bytes(bytes(7))
    message = (
        f"The packed index file {path} is not valid: A packed (8,2) index stream of 6 groups "
        "at 8 bits needs 6 bytes; got 7."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        code.load_packed(path, (2, 3))


def test_packed_index_past_the_last_pattern(tmp_path):
    code = SSTCode(8, 2)
    path = tmp_path / "w.sst"
    path.write_bytes(bytes([0, 5, 200, 1]))
    message = (
        f"The packed index file {path} is not valid: Index 200 at [2] is outside 0..128 "
        "(N(8,2) = 129 patterns)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        code.load_packed(path, (4,))
    with pytest.raises(
        ValueError,
        match=re.escape("Index 129 at [0, 1] is outside 0..128 (N(8,2) = 129 patterns)."),
    ):
        code.decode(np.array([[0, 129]]))


def test_encode_rejects_non_ternary_and_too_many_nonzeros():
    code = SSTCode(4, 1)
    with pytest.raises(
        ValueError, match=re.escape("T must hold only -1, 0 and +1; found 2 at [0, 3].")
    ):
        code.encode(np.array([[0, 0, 0, 2]]))
    message = "A group of T has 2 nonzeros, more than k=1 (group at [1, 1], columns 4..7)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        code.encode(np.array([[0, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, -1, 0, 0]]))


def test_table_too_large_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "The decode table of (16,16) has 43046721 entries, over the limit of 1048576; use decode() on the indices you need."
        ),
    ):
        SSTCode(16, 16).table()


# -- projection and step fit ---------------------------------------------------------------


def group_errors(w_groups, patterns, step):
    """Squared error of every group against every pattern: (groups, patterns)."""
    diff = w_groups[:, None, :] - step * patterns[None, :, :]
    return (diff**2).sum(axis=-1)


@pytest.mark.parametrize(("n", "k"), [(8, 2), (4, 1), (5, 3), (6, 6), (3, 1)])
def test_projection_equals_brute_force_best_pattern(n, k):
    rng = np.random.default_rng(n * 10 + k)
    code = SSTCode(n, k)
    patterns = brute_patterns(n, k)
    w = rng.normal(size=(200, n)) * rng.uniform(0.2, 3, size=(200, 1))
    for asked in (0.25, 1.0, 1.7):
        t, step = code.ternary(w, asked)
        assert abs(step - asked) <= asked * 2**-15  # rounded to a 16-bit dyadic step
        best = group_errors(w, patterns, step).min(axis=1)
        got = ((w - step * t) ** 2).sum(axis=1)
        np.testing.assert_allclose(got, best, rtol=0, atol=1e-12)
        # and the projection is itself a valid pattern
        assert np.all(np.count_nonzero(t, axis=1) <= k)


def test_projection_handles_ties_and_zero_groups():
    code = SSTCode(4, 1)
    w = np.array([[0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, 0.2]])
    t, _ = code.ternary(w, 1.0)
    np.testing.assert_array_equal(t, [[0, 0, 0, 0, 1, 0, 0, 0]])


def test_projected_values_are_step_multiples():
    w = np.random.default_rng(3).normal(size=(20, 37))
    wq, step = SSTCode(8, 2).project(w)
    assert wq.shape == w.shape
    assert set(np.unique(wq)) <= {-step, 0.0, step}
    assert np.count_nonzero(wq) > 0


def total_error(code, w, step):
    wq, _ = code.project(w, step)
    return float(((w - wq) ** 2).sum())


@pytest.mark.parametrize(("n", "k"), [(8, 2), (4, 1), (16, 4), (8, 8)])
def test_fitted_step_beats_every_step_on_a_fine_grid(n, k):
    rng = np.random.default_rng(k)
    w = rng.standard_t(df=4, size=(30, 50))
    code = SSTCode(n, k)
    step = code.fit_step(w)
    best = total_error(code, w, step)
    grid = np.linspace(0.02, 3 * np.abs(w).max(), 800)
    errors = [total_error(code, w, s) for s in grid]
    assert best <= min(errors) + 1e-9
    # the grid gets close: the fit is an optimum, not just a bound
    assert min(errors) <= best * 1.02


def test_per_row_steps_fit_each_row():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(6, 24)) * np.array([[0.01], [0.1], [1], [10], [3], [0.5]])
    code = SSTCode(8, 2, per_row_step=True)
    wq, steps = code.project(w)
    assert steps.shape == (6,)
    layer = SSTCode(8, 2)
    for r in range(6):
        # each row's step is (up to its 16-bit rounding) the best single step for that row
        row_step = layer.fit_step(w[r : r + 1])
        np.testing.assert_allclose(steps[r], row_step, rtol=2**-15)
    per_row_err = ((w - wq) ** 2).sum()
    layer_err = ((w - layer.project(w)[0]) ** 2).sum()
    assert per_row_err < layer_err


def test_all_zero_matrix():
    wq, step = SSTCode(8, 2).project(np.zeros((2, 9)))
    assert step == 0.0
    assert not wq.any()


# -- lowering to the graph -----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 16),
    data=st.data(),
)
def test_simulated_layer_equals_x_times_wq_exactly(n, data):
    k = data.draw(st.integers(1, n))
    rows = data.draw(st.integers(1, 12))
    cols = data.draw(st.integers(1, 40))
    per_row = data.draw(st.booleans())
    bits = data.draw(st.sampled_from([2, 8, 16]))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)) * rng.uniform(0.01, 10, size=(rows, 1))
    code = SSTCode(n, k, per_row_step=per_row)
    coded = code.code_matrix(w)
    wq, _ = code.project(w)
    top = 2 ** (bits - 1)
    x = rng.integers(-top, top, size=(7, cols))
    x[0] = top - 1
    x[1] = -top
    y = evaluate(coded.graph, x)
    # y * 2**-output_scale * scale_m * 2**scale_e == x @ W_q.T, compared exactly in integers
    e = coded.scale_e - coded.graph.output_scale
    t_scaled = np.rint(np.ldexp(wq, -min(e, 0))).astype(object)
    lhs = y.astype(object) * coded.scale_m * (2 ** max(e, 0))
    assert np.array_equal(lhs, x.astype(object) @ t_scaled.T)
    np.testing.assert_array_equal(coded.matrix, wq)


def test_graph_counts_match_the_spec():
    rng = np.random.default_rng(11)
    w = rng.normal(size=(40, 70))
    code = SSTCode(8, 2)
    coded = code.code_matrix(w)
    t, _ = code.ternary(w)
    nnz = np.count_nonzero(t, axis=1)
    cost = count_graph(coded.graph)
    assert cost.adds == int(np.maximum(nnz - 1, 0).sum())
    assert cost.mults == 0
    assert cost.negs == int(np.sum((nnz > 0) & (t.max(axis=1) <= 0)))
    groups = 9  # ceil(70 / 8)
    assert coded.table_reads == 40 * groups
    assert coded.extra["index_bits"] == 40 * groups * 8
    assert coded.weight_bits == 40 * groups * 8 + 24 + 129 * 10
    layer = coded.layer_cost("fc", bias=np.ones(40))
    assert layer.scale_mults == 40  # the step, once per output (or folded downstream)
    assert layer.bias_adds == 40


def test_per_row_steps_are_one_mult_per_output():
    rng = np.random.default_rng(12)
    w = rng.normal(size=(10, 16)) * np.arange(1, 11)[:, None]
    coded = SSTCode(8, 2, per_row_step=True).code_matrix(w)
    cost = count_graph(coded.graph)
    assert 0 < cost.mults <= 10
    assert coded.scale_m == 1
    assert coded.layer_cost("fc").scale_mults == 0
