"""Column sharing: AP clustering, pre-sum lowering and graph composition, simulated exactly."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewops.codes import csd
from fewops.codes.common import sqnr_db
from fewops.codes.lcc.column_sharing import (
    WIDE_DATAPATH_BITS,
    Sharing,
    WideDatapathWarning,
    cluster_columns,
    compose,
    identity_sharing,
    presum_graph,
    share_and_decompose,
    share_for_sqnr,
    shared_graph,
)
from fewops.cost import count_graph
from fewops.sim import evaluate, graph_matrix


def _real(graph, x):
    """Simulated outputs as exact integers (the graph's outputs carry a scale 2**-output_scale)."""
    y = evaluate(graph, x).astype(object)
    s = graph.output_scale
    assert s <= 0  # integer weights and inputs: outputs are integers times 2**-s
    return y * (2 ** (-s))


def _int_graph(w_int):
    return csd.integer_matrix_graph(np.asarray(w_int, dtype=np.int64))


def test_one_column_per_cluster_changes_nothing():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 9))
    s = cluster_columns(w, preference=0.0)  # preference above every similarity
    assert s.num_clusters == 9 and s.presum_adds == 0
    assert np.allclose(s.expand(), w, rtol=0, atol=0)
    w_int = rng.integers(-40, 40, size=(12, 9))
    ident = identity_sharing(w_int.astype(float))
    g = shared_graph(ident, _int_graph(w_int))
    assert np.array_equal(graph_matrix(g), w_int)
    assert count_graph(g).adds == count_graph(_int_graph(w_int)).adds


def test_duplicate_columns_cluster_exactly_and_simulate_bit_exact():
    rng = np.random.default_rng(1)
    base = rng.integers(-100, 100, size=(16, 5))
    pick = np.array([0, 1, 2, 3, 4, 0, 0, 2, 4, 1, 3, 3])
    w = np.concatenate([base[:, pick], np.zeros((16, 2))], axis=1).astype(float)  # 2 pruned inputs
    s = cluster_columns(w, preference=-1.0)
    assert s.num_clusters == 5 and s.inputs_read == 12 and s.presum_adds == 7
    assert np.array_equal(s.assignment[-2:], [-1, -1])
    assert np.array_equal(s.expand(), w)
    narrow = np.rint(s.centres).astype(np.int64)
    g = shared_graph(s, _int_graph(narrow))
    assert g.num_inputs == 14 and g.num_outputs == 16
    x = rng.integers(-(2**15), 2**15, size=(50, 14))
    assert np.array_equal(_real(g, x), x @ w.astype(np.int64).T)
    assert count_graph(g).adds == 7 + count_graph(_int_graph(narrow)).adds


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_compose_is_the_matrix_product(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-9, 10, size=(m, n))
    b = rng.integers(-9, 10, size=(k, m))
    ga, gb = _int_graph(a), _int_graph(b)
    g = compose(ga, gb)
    x = rng.integers(-1000, 1000, size=(7, n))
    assert np.array_equal(_real(g, x), x @ (b @ a).T)
    assert count_graph(g).adds == count_graph(ga).adds + count_graph(gb).adds


def test_presum_graph_and_validation():
    s = Sharing(np.array([1, -1, 0, 1, 1]), np.ones((2, 2)))
    g = presum_graph(s)
    assert np.array_equal(graph_matrix(g), [[0, 0, 1, 0, 0], [1, 0, 0, 1, 1]])
    assert count_graph(g).adds == s.presum_adds == 2
    with pytest.raises(
        ValueError, match=re.escape("A sharing assignment must lie in -1..1; got array([0, 2]).")
    ):
        Sharing(np.array([0, 2]), np.ones((2, 2)))
    with pytest.raises(
        ValueError, match=re.escape("Every cluster of a sharing must hold at least one column.")
    ):
        Sharing(np.array([0, 0]), np.ones((2, 2)))
    with pytest.raises(
        ValueError,
        match=re.escape("The coded narrow matrix has 3 inputs but the sharing has 2 clusters."),
    ):
        shared_graph(s, _int_graph(np.ones((4, 3), dtype=np.int64)))


def test_share_for_sqnr_meets_target_with_fewer_columns():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(32, 6))
    w = centres[:, rng.integers(0, 6, size=40)] + 0.01 * rng.normal(size=(32, 40))
    s = share_for_sqnr(w, 30.0)
    assert sqnr_db(w, s.expand()) >= 30.0
    assert s.num_clusters <= 8
    assert share_for_sqnr(w, 80.0).num_clusters == 40  # unreachable: no sharing at all


def test_wide_layered_code_is_redone_with_grow_or_warned():
    """DMP on a thin matrix at 40 dB refines through ever finer shifts (2^-96 here): by default
    the layer is recoded with grow and the record says what DMP needed; with no width limit
    the DMP code is kept and a warning names its width."""
    w = np.random.default_rng(0).standard_normal((10, 64))
    with pytest.warns(WideDatapathWarning, match=r"10 x 64 matrix at 40.0 dB needs a \d+-bit"):
        dmp = share_and_decompose(
            w, 40.0, algorithm="dmp", share_margin_db=None, max_datapath_bits=None
        )
    assert dmp.extra["algorithm_used"] == "dmp" and dmp.extra["width_fallback"] is None
    assert dmp.extra["datapath_bits"] > WIDE_DATAPATH_BITS
    assert dmp.extra["finest_bit"] < -60
    with warnings.catch_warnings():
        warnings.simplefilter("error", WideDatapathWarning)
        coded = share_and_decompose(w, 40.0, algorithm="dmp", share_margin_db=None)
    assert coded.extra["algorithm_used"] == "grow"
    fallback = coded.extra["width_fallback"]
    assert fallback["from"] == "dmp"
    assert fallback["datapath_bits"] == dmp.extra["datapath_bits"]
    assert coded.extra["datapath_bits"] <= 40
    assert coded.extra["sqnr_db"] >= 40.0
    # The reported width holds the outputs at the 8-bit inputs that drive each one hardest.
    x = np.where(coded.matrix >= 0, 127, -128).astype(np.int64)
    out = evaluate(coded.graph, x)
    assert np.all(np.abs(out) < 2 ** (coded.extra["datapath_bits"] - 1))
