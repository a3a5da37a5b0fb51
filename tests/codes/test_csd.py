import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fewops.codes import csd
from fewops.codes.common import dyadic, dyadic_value, sqnr_db
from fewops.sim.evaluate import evaluate


@given(st.integers(-(2**40), 2**40))
def test_csd_digits_reconstruct_and_have_no_adjacent_nonzeros(v):
    d = csd.csd_digits(np.array([v]))[0]
    assert sum(int(x) << k for k, x in enumerate(d)) == v
    nz = d != 0
    assert not np.any(nz[1:] & nz[:-1])


def test_csd_digit_counts_by_hand():
    counts = [
        int(np.count_nonzero(csd.csd_digits(np.array([v])))) for v in (0, 1, 3, 7, 11, 15, -7)
    ]
    assert counts == [0, 1, 2, 2, 3, 2, 2]


def test_csd_layer_simulates_exactly():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 13))
    coded = csd.encode(w, 9)
    w_int = np.round(coded.matrix / coded.scale).astype(np.int64)
    x = rng.integers(-128, 128, size=(200, 13))
    x[0], x[1] = -128, 127
    assert np.array_equal(evaluate(coded.graph, x), x @ w_int.T)
    assert np.allclose(coded.matrix, w_int * coded.scale)


def test_bits_for_sqnr_is_the_smallest_width():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 8))
    b = csd.bits_for_sqnr(w, 40.0)
    assert sqnr_db(w, csd.encode(w, b).matrix) >= 40.0
    assert sqnr_db(w, csd.encode(w, b - 1).matrix) < 40.0


def test_about_six_db_per_bit():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 256))
    # Uniform rounding noise: SQNR = 10 log10(12 * 127^2 / max|W|^2) for unit-variance W.
    expected = 10 * np.log10(12 * 127**2 / np.abs(w).max() ** 2)
    at8 = sqnr_db(w, csd.encode(w, 8).matrix)
    assert abs(at8 - expected) < 0.5
    assert 5.5 < sqnr_db(w, csd.encode(w, 9).matrix) - at8 < 6.5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([1.0, 2.0]), "W must be a 2-D matrix (out, in); got shape (2,)."),
        (np.zeros((0, 3)), "W must not be empty; got shape (0, 3)."),
        (
            np.array([[1.0, np.nan]]),
            "W has 1 non-finite entries (NaN or inf), first at [0, 1] = nan.",
        ),
    ],
)
def test_bad_matrices_are_refused(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        csd.encode(bad, 8)


def test_inf_is_named():
    with pytest.raises(
        ValueError,
        match=re.escape("W has 1 non-finite entries (NaN or inf), first at [0, 1] = inf."),
    ):
        csd.encode(np.array([[1.0, np.inf]]), 8)


def test_width_out_of_range():
    with pytest.raises(
        ValueError, match=re.escape("Fixed-point width must be between 2 and 32 bits; got 1.")
    ):
        csd.encode(np.ones((2, 2)), 1)


def test_dyadic_is_exact_and_close():
    m, e = dyadic(0.123456789)
    assert abs(m) < 2**16
    assert abs(dyadic_value(m, e) - 0.123456789) / 0.123456789 < 2**-15
