"""The evaluation plan's layouts (strided slices, gathered tails, shifted-input table) stay exact."""

import importlib

import numpy as np
import pytest

from fewops.codes import csd
from fewops.graph import GraphBuilder
from fewops.graph.widths import bit_length
from fewops.sim.evaluate import evaluate

plan_module = importlib.import_module("fewops.sim.plan")
evaluate_module = importlib.import_module("fewops.sim.evaluate")


def shared_operand_graph(pairs: int = 2048, inputs: int = 5, seed: int = 0):
    """Level 1: x_i + (x_j << s); level 2 pairs them with a shift; every level-1 node is also
    an output, so each one is read twice (once through a strided slice)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.inputs(inputs)
    i = rng.integers(0, inputs, pairs)
    j = rng.integers(0, inputs, pairs)
    s = rng.integers(0, 6, pairs)
    first = b.add(x[i], x[j], sb=s)
    second = b.sub(first[0::2], first[1::2], sb=np.full(pairs // 2, 3))
    b.outputs(np.concatenate([second, first]))
    return b.build(), (i, j, s)


@pytest.mark.parametrize("vector_by_vector", [False, True])
def test_shared_operands_read_through_slices_are_not_shifted_in_place(
    vector_by_vector, monkeypatch
):
    if vector_by_vector:  # the path big graphs take: one (packed) vector at a time
        monkeypatch.setattr(evaluate_module, "BLOCK_BYTES", 1)
    g, (i, j, s) = shared_operand_graph()
    plan = plan_module.make_plan(g)
    assert any(isinstance(grp.b, slice) and grp.lb is not None for grp in plan.groups)
    x = np.random.default_rng(1).integers(-128, 128, size=(7, 5))
    first = x[:, i] + (x[:, j] << s)
    second = first[:, 0::2] - (first[:, 1::2] << 3)
    expected = np.concatenate([second, first], axis=1)
    assert np.array_equal(evaluate(g, x), expected)
    assert np.array_equal(evaluate(g, x, threads=1), expected)


def test_level_one_reads_the_shifted_input_table():
    g, _ = shared_operand_graph()
    plan = plan_module.make_plan(g)
    assert plan.table_shifts is not None
    assert any(grp.table for grp in plan.groups)


def test_csd_layer_through_every_layout_equals_integer_matmul():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((96, 200))
    coded = csd.encode(w, 8)
    x = rng.integers(-128, 128, size=(600, 200))
    x[0] = -128
    x[1] = 127
    y = evaluate(coded.graph, x)
    w_int = np.rint(np.ldexp(coded.matrix / coded.scale, coded.graph.output_scale)).astype(np.int64)
    assert np.array_equal(y, x @ w_int.T)


def test_big_values_through_the_table_use_python_ints():
    b = GraphBuilder()
    x = b.inputs(2)
    b.outputs(b.add(x[[0]], x[[1]], sb=[40]))
    g = b.build()
    big = np.array([[2**30, -(2**30)]], dtype=object)
    assert evaluate(g, big)[0, 0] == 2**30 - 2**70


def test_vectorised_bit_length_matches_python():
    values = [0, 1, 2, 3, 2**52 - 1, 2**52, 2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1]
    values += [(1 << k) - 1 for k in range(1, 64)] + [1 << k for k in range(63)]
    values += list(np.random.default_rng(3).integers(0, 2**63 - 1, 2000, dtype=np.int64))
    arr = np.array(values, dtype=np.int64)
    assert np.array_equal(bit_length(arr), [int(v).bit_length() for v in arr])
