"""WACR tensor-product families: exact projection, lowering with reuse, counts, errors."""

import re

import numpy as np
import pytest
from poly_checks import assert_graph_equals_integer_product

from fewops.codes import poly
from fewops.codes import poly_tensor as pt
from fewops.cost import count_graph

# (weight shape, in_factors, out_factor, in_shape)
CASES = [
    (
        (8, 3, 3, 3),
        ((None, 1), (None, 2), None),
        (4, 1),
        None,
    ),  # conv: channels x kernel col x filters
    ((6, 40), ((10, 2),), (None, 2), None),  # 2-D: fan-in runs x all units
    ((5, 2, 3, 4), (None, (3, 1), (None, 2)), None, (2, 3, 4)),  # dense read as (C, H, W)
    ((6, 24), ((None, 1), None, (4, 2)), (3, 1), (2, 3, 4)),
    ((7, 30), ((None, 1), (None, 2)), (5, 2), (3, 10)),  # ragged unit intervals: 5, 2
]


def _layout(case):
    shape, ins, out, in_shape = case
    return shape, pt.make_tensor_layout(shape, ins, out, in_shape)


@pytest.mark.parametrize("case", CASES)
def test_weights_in_the_family_are_unchanged_and_coefficients_recovered(case):
    shape, layout = _layout(case)
    rng = np.random.default_rng(1)
    coefs = rng.normal(size=layout.coef_shape)
    w = pt.evaluate(coefs, layout).reshape(shape)
    np.testing.assert_allclose(pt.project(w, layout), w, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pt.fit(w, layout), coefs, rtol=0, atol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_projection_is_least_squares(case):
    shape, layout = _layout(case)
    w = np.random.default_rng(2).normal(size=shape)
    # vec(P_out C P_in^T) = kron(P_out, P_in) vec(C) in row-major order.
    basis = np.kron(layout.out.matrix, layout.p_in).astype(np.float64)
    ref = np.linalg.lstsq(basis, w.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(pt.fit(w, layout).reshape(-1), ref, atol=1e-9)


def test_one_dimensional_families_are_special_cases():
    w = np.random.default_rng(4).normal(size=(5, 3, 3, 3))
    layout = pt.make_tensor_layout(w.shape, (None, None, (3, 1)))  # = kernel_row, 3, 1
    np.testing.assert_allclose(
        pt.project(w, layout), poly.project(w, "kernel_row", 3, 1), atol=1e-12
    )
    lin = w.reshape(5, -1)
    layout = pt.make_tensor_layout(lin.shape, (None,), (None, 2))  # = filters, whole, 2
    np.testing.assert_allclose(
        pt.project(lin, layout), poly.project(lin, "filters", None, 2), atol=1e-12
    )


@pytest.mark.parametrize("case", CASES)
def test_simulated_layer_equals_the_approximated_weights_exactly(case):
    shape, layout = _layout(case)
    rng = np.random.default_rng(3)
    w = rng.normal(size=shape)
    coded = pt.encode(w, layout, coef_bits=6)
    q, e = pt.quantize(w, layout, 6)
    assert np.abs(q).max() <= 31
    w_hat = pt.evaluate(q, layout, e)
    assert np.array_equal(coded.matrix, w_hat)  # exact dyadic rationals both
    assert_graph_equals_integer_product(coded, w_hat, rng)


def test_parameter_count_and_reuse_by_hand():
    # Dense 6 x 12 read as (2, 6): linear in the channel, quadratic along the 6 columns, units
    # in 2 intervals of 3 (linear). Moments: 2 x 3 = 6; features: 2 x 2 = 4; params 24.
    layout = pt.make_tensor_layout((6, 12), ((None, 1), (None, 2)), (3, 1), (2, 6))
    assert layout.coef_shape == (4, 6) and layout.params == 24
    coded = pt.encode(np.random.default_rng(5).normal(size=(6, 12)), layout, 8)
    assert coded.params == 24 and coded.weight_bits == 24 * 8
    cost = count_graph(coded.graph)
    # At most one multiplier per stored coefficient: the 6 moments are shared by all units and
    # the units of an interval reuse its 2 features with shifts and adds.
    assert cost.mults <= 24
    assert coded.extra["dense_weights"] == 72


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ((4, 10), ((11, 1),), None, None),
            "Interval length 11 is longer than input dimension 0 of (10,) (10 positions).",
        ),
        (((4, 10), ((None, 3),), None, None), "Polynomial degree must be 1 or 2; got 3."),
        (
            ((4, 10), ((2, 2),), None, None),
            "Interval length 2 is too short for degree 2 on input dimension 0 of (10,): a polynomial of degree 2 needs at least 3 positions per interval.",
        ),
        (
            ((4, 10), ((None, 1),), None, (3, 3)),
            "The input shape (3, 3) has 9 positions; the layer's fan-in is 10 (weight shape (4, 10)).",
        ),
        (
            ((4, 10), ((None, 1), None), None, None),
            "Give one factor per input dimension: 1 for input shape (10,); got 2.",
        ),
        (
            ((4, 10), (None,), None, None),
            "At least one factor must be a polynomial (interval, degree); all are free.",
        ),
        (
            ((4, 10), ((None, 1),), (5, 1), None),
            "Interval length 5 is longer than the 4 output units (4 positions).",
        ),
        (
            ((4, 10), ("x",), None, None),
            "A factor must be (interval, degree) or None; got 'x' for input dimension 0 of (10,).",
        ),
    ],
)
def test_bad_layouts_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pt.make_tensor_layout(*args)


def test_bad_coefficient_width_is_named():
    layout = pt.make_tensor_layout((4, 10), ((None, 1),))
    with pytest.raises(
        ValueError,
        match=re.escape("Coefficient width must be an integer from 2 to 24 bits; got 1."),
    ):
        pt.encode(np.ones((4, 10)), layout, coef_bits=1)
