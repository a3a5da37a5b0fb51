"""WACR polynomial code: exact projection, fixed-point fit, lowering with reuse, costs, errors."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from poly_checks import assert_graph_equals_integer_product

from fewops.codes import poly
from fewops.cost import count_graph

CASES = [
    ((4, 2, 3, 3), "kernel_row", 3, 1),
    ((4, 2, 3, 5), "kernel_row", 3, 2),  # ragged: intervals of 3 and 2 positions
    ((4, 2, 3, 3), "kernel_col", 3, 2),
    ((5, 6, 3, 3), "channels", 4, 1),
    ((5, 3, 3, 3), "fan_in", 10, 2),
    ((10, 3, 2, 2), "filters", 4, 1),
    ((7, 20), "fan_in", None, 2),
    ((9, 20), "filters", 3, 2),
]


def _polynomial_weights(shape, axis, interval, degree, rng):
    layout = poly.make_layout(shape, axis, interval, degree)
    coefs = rng.normal(size=layout.coef_shape())
    for c in layout.classes:  # unused degree slots of short intervals stay zero
        coefs[:, c.first_group : c.first_group + c.index.shape[0], c.degree + 1 :] = 0
    return layout, coefs, poly.evaluate(coefs, layout)


@pytest.mark.parametrize(("shape", "axis", "interval", "degree"), CASES)
def test_polynomial_weights_are_unchanged_and_coefficients_recovered(shape, axis, interval, degree):
    rng = np.random.default_rng(1)
    layout, coefs, w = _polynomial_weights(shape, axis, interval, degree, rng)
    np.testing.assert_allclose(poly.project(w, axis, interval, degree), w, rtol=0, atol=1e-10)
    np.testing.assert_allclose(poly.fit(w, layout), coefs, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("shape", "axis", "interval", "degree"), CASES)
def test_projection_is_least_squares_per_interval(shape, axis, interval, degree):
    rng = np.random.default_rng(2)
    w = rng.normal(size=shape)
    layout = poly.make_layout(shape, axis, interval, degree)
    coefs = poly.fit(w, layout)
    view = poly.matrix_view(w, layout)
    for c in layout.classes:
        v = poly.vandermonde(c.length, c.degree)
        for j, cols in enumerate(c.index):
            ref = np.linalg.lstsq(v, view[:, cols].T, rcond=None)[0].T
            np.testing.assert_allclose(coefs[:, c.first_group + j, : c.degree + 1], ref, atol=1e-10)
    # And the residual is orthogonal to the family: projecting twice changes nothing.
    w_hat = poly.project(w, axis, interval, degree)
    np.testing.assert_allclose(poly.project(w_hat, axis, interval, degree), w_hat, atol=1e-10)
    assert np.linalg.norm(w - w_hat) < np.linalg.norm(w)


def test_long_interval_projection_stays_exact():
    """A 9216-long interval (a dense layer's whole fan-in) at degree 2 is still exact."""
    t = np.arange(9216, dtype=np.float64)
    w = np.stack([0.3 - 2e-4 * t + 3e-8 * t**2, -0.1 + 1e-5 * t])
    np.testing.assert_allclose(poly.project(w, "fan_in", None, 2), w, rtol=0, atol=1e-11)


def test_layout_positions_follow_the_axis():
    layout = poly.make_layout((2, 2, 3, 3), "kernel_col", 3, 1)
    (c,) = layout.classes
    # Column (c, r, s) of the im2col view is c*9 + r*3 + s; a kernel column varies r.
    assert c.index.tolist()[:3] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    row = poly.make_layout((2, 2, 3, 3), "kernel_row", 3, 1).classes[0]
    assert row.index.tolist()[:2] == [[0, 1, 2], [3, 4, 5]]
    chan = poly.make_layout((2, 4, 1, 2), "channels", None, 1).classes[0]
    assert chan.index.tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]


@pytest.mark.parametrize(
    ("shape", "axis", "interval", "degree", "params"),
    [
        # 4 filters x 2 channels x 3 kernel rows, 2 coefficients per row of 3.
        ((4, 2, 3, 3), "kernel_row", 3, 1, 4 * 2 * 3 * 2),
        # 6 channels in an interval of 4 (3 coefs) and a tail of 2 (degree 1: 2 coefs), per (r, s).
        ((4, 6, 3, 3), "channels", 4, 2, 4 * 9 * (3 + 2)),
        # 10 filters: intervals 4, 4, 2 -> 3 x 2 coefficients per each of the 12 inputs.
        ((10, 3, 2, 2), "filters", 4, 1, 12 * 3 * 2),
        # A whole fan-in of 20 at degree 2: 3 coefficients per output row.
        ((7, 20), "fan_in", None, 2, 7 * 3),
        # The Keras MNIST CNN's dense layer over its whole fan-in: 128 x 3.
        ((128, 9216), "fan_in", 9216, 2, 384),
    ],
)
def test_parameter_counts_by_hand(shape, axis, interval, degree, params):
    assert poly.make_layout(shape, axis, interval, degree).params == params


@pytest.mark.parametrize(("shape", "axis", "interval", "degree"), CASES)
def test_simulated_layer_equals_the_approximated_weights_exactly(shape, axis, interval, degree):
    rng = np.random.default_rng(3)
    w = rng.normal(size=shape)
    coded = poly.encode(w, axis, interval, degree, coef_bits=6)
    layout = poly.make_layout(shape, axis, interval, degree)
    q, e = poly.quantize(w, layout, 6)
    assert np.abs(q).max() <= 31
    w_hat = poly.evaluate(q, layout, e).reshape(shape[0], -1)
    assert np.array_equal(coded.matrix, w_hat)  # both are exact dyadic rationals
    # The integer network with reuse, evaluated bit-exactly, against the integer product.
    assert_graph_equals_integer_product(coded, w_hat, rng)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    bits=st.integers(2, 10),
    degree=st.sampled_from([1, 2]),
    length=st.integers(3, 12),
)
def test_fixed_point_fit_is_never_worse_than_rounding(seed, bits, degree, length):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(6, 3 * length))
    layout = poly.make_layout(w.shape, "fan_in", length, degree)
    q, e = poly.quantize(w, layout, bits)
    top = 2 ** (bits - 1) - 1
    assert np.abs(q).max() <= top
    floats = poly.fit(w, layout)
    step = np.ldexp(1.0, e)
    naive = np.clip(np.round(floats / step), -top, top)
    err = np.linalg.norm(poly.evaluate(q, layout, e) - w)
    err_naive = np.linalg.norm(poly.evaluate(naive, layout, e) - w)
    assert err <= err_naive + 1e-12


def test_fixed_point_fit_beats_rounding_somewhere():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(64, 90))
    layout = poly.make_layout(w.shape, "fan_in", 9, 2)
    q, e = poly.quantize(w, layout, 5)
    naive = np.round(poly.fit(w, layout) / np.ldexp(1.0, e))
    assert np.linalg.norm(poly.evaluate(q, layout, e) - w) < np.linalg.norm(
        poly.evaluate(naive, layout, e) - w
    )


def test_costs_with_reuse_by_hand():
    """4 filters, 1 channel, a 1x3 kernel row, degree 1, coefficients exactly on 8-bit codes.

    Moments once: S0 = x0 + x1 + x2 (2 adds), S1 = x1 + 2 x2 (1 add). Per filter a S0 + b S1:
    2 mults and 1 add. Row Stationary: 3 mults and 2 adds per filter.
    """
    a = np.array([127.0, 3.0, 5.0, -7.0])
    b = np.array([-127.0, 9.0, 11.0, 13.0])
    w = (a[:, None] + b[:, None] * np.arange(3)).reshape(4, 1, 1, 3)
    coded = poly.encode(w, "kernel_row", 3, 1, coef_bits=8)
    cost = count_graph(coded.graph)
    assert (cost.adds, cost.mults, cost.negs) == (2 + 1 + 4, 8, 0)
    assert coded.params == 8
    assert coded.weight_bits == 64
    assert coded.extra["row_stationary"] == {
        "mults": 12,
        "adds": 8,
        "row_adds": 8,
        "vertical_adds": 0,
        "channel_adds": 0,
    }
    np.testing.assert_array_equal(coded.matrix, w.reshape(4, 3))


def test_filters_axis_costs_by_hand():
    """Across 3 filters (degree 1) of a 2-input layer: A_k = q0k x0 + q1k x1 once (4 mults,
    2 adds); filter t = A_0 + t A_1: filter 0 is A_0 (0 adds), 1 and 2 one add each (2 A_1 is a
    shift)."""
    c0 = np.array([127.0, -5.0])  # coefficient of degree 0 per input
    c1 = np.array([3.0, 127.0])
    w = c0[None, :] + np.arange(3)[:, None] * c1[None, :]
    coded = poly.encode(w, "filters", None, 1, coef_bits=8)
    cost = count_graph(coded.graph)
    assert (cost.mults, cost.adds) == (4, 2 + 2)
    assert coded.params == 4
    np.testing.assert_array_equal(coded.matrix, w)


def test_row_stationary_cost_of_the_keras_cnn_second_conv():
    rs = poly.row_stationary_cost((64, 32, 3, 3))
    assert rs["mults"] == 64 * 32 * 9
    assert rs["adds"] == 64 * (32 * 9 - 1)
    assert rs["row_adds"] + rs["vertical_adds"] + rs["channel_adds"] == rs["adds"]


def test_coded_conv_beats_row_stationary_on_a_layer():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(64, 32, 3, 3))
    coded = poly.encode(w, "channels", 32, 1, coef_bits=8)
    cost = count_graph(coded.graph)
    rs = coded.extra["row_stationary"]
    assert cost.adds + cost.mults < 0.46 * (rs["adds"] + rs["mults"])


def test_zero_weights_code_to_zero():
    coded = poly.encode(np.zeros((3, 2, 3, 3)), "kernel_row", 3, 2, coef_bits=4)
    assert not coded.matrix.any()
    assert count_graph(coded.graph).mults == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"shape": (4, 2, 3, 3), "axis": "kernel_row", "interval": 4},
            "Interval length 4 is longer than the 'kernel_row' axis of this layer (3 positions, weight shape (4, 2, 3, 3)).",
        ),
        (
            {"shape": (4, 2, 3, 3), "axis": "kernel_row", "interval": 3, "degree": 3},
            "Polynomial degree must be 1 or 2; got 3.",
        ),
        (
            {"shape": (4, 2, 3, 3), "axis": "kernel_row", "interval": 3, "degree": 0},
            "Polynomial degree must be 1 or 2; got 0.",
        ),
        (
            {"shape": (10, 20), "axis": "channels"},
            "A linear layer has no 'channels' axis; its axes are 'fan_in', 'filters'.",
        ),
        (
            {"shape": (10, 20), "axis": "rows"},
            "Unknown polynomial axis 'rows'; choose one of kernel_row, kernel_col, channels, "
            "fan_in, filters.",
        ),
        (
            {"shape": (4, 1, 3, 3), "axis": "channels", "degree": 1},
            "Interval length 1 is too short for degree 1: a polynomial of degree 1 needs at least 2 positions per interval.",
        ),
        (
            {"shape": (4, 2, 3, 3), "axis": "kernel_row", "interval": 2, "degree": 2},
            "Interval length 2 is too short for degree 2: a polynomial of degree 2 needs at least 3 positions per interval.",
        ),
    ],
)
def test_bad_layouts_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        poly.make_layout(**kwargs)


@pytest.mark.parametrize("bits", [1, 0, 25, 2.5])
def test_bad_coefficient_width_names_the_value(bits):
    with pytest.raises(
        ValueError,
        match=re.escape(f"Coefficient width must be an integer from 2 to 24 bits; got {bits!r}."),
    ):
        poly.encode(np.ones((2, 4)), "fan_in", 4, 1, coef_bits=bits)
