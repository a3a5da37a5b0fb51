import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewops.graph import (
    Graph,
    GraphBuilder,
    Op,
    emit_outputs,
    infer_ranges,
    infer_widths,
    sum_terms,
)
from fewops.graph.passes import fold_negations, remove_dead_ends
from fewops.graph.widths import signed_width
from fewops.sim import graph_matrix
from fewops.sim.evaluate import evaluate


def matrix_graph(w_int: np.ndarray) -> Graph:
    """y = W x with every unit term a separate input read (a simple reference lowering)."""
    out, inp = w_int.shape
    b = GraphBuilder()
    x = b.inputs(inp)
    row, col = np.nonzero(w_int)
    reps = np.abs(w_int[row, col])
    row, col = np.repeat(row, reps), np.repeat(col, reps)
    sign = np.sign(w_int[row, col])
    emit_outputs(b, *sum_terms(b, x[col], np.zeros_like(col), sign, row, out))
    return b.build()


def test_sum_terms_counts_terms_minus_one_adds():
    b = GraphBuilder()
    x = b.inputs(4)
    node = np.array([x[0], x[1], x[2], x[3], x[0]])
    group = np.array([0, 0, 0, 1, 2])
    sums = sum_terms(b, node, np.array([0, 1, 2, 0, 3]), np.array([1, -1, 1, -1, 1]), group, 4)
    emit_outputs(b, *sums)
    g = b.build()
    counts = g.op_counts()
    assert counts["add"] + counts["sub"] == 2  # group 0: 3 terms; groups 1, 2: one term; 3: none
    assert counts["neg"] == 1  # group 1 is a lone negative term
    y = evaluate(g, np.array([[3, 5, 7, 11]]))
    assert y.tolist() == [[3 - 10 + 28, -11, 24, 0]]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 7),
    st.integers(2, 20),
    st.integers(0, 2**32 - 1),
)
def test_evaluate_equals_numpy_on_random_integer_matrices(out, inp, bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-4, 5, size=(out, inp))
    g = matrix_graph(w)
    top = 2 ** (bits - 1)
    x = rng.integers(-top, top, size=(9, inp))
    x[0] = -top  # extremes
    x[1] = top - 1
    x[2, ::2] = -top
    x[2, 1::2] = top - 1
    assert np.array_equal(evaluate(g, x), x @ w.T)
    # Width inference: every node fits its inferred width for these inputs.
    widths = infer_widths(g, bits)
    lo, hi = infer_ranges(g, -top, top - 1)
    assert np.all(signed_width(lo, hi) == widths)
    out_width = widths[g.output_nodes].max()
    y = x @ w.T
    assert y.max(initial=0) <= 2 ** (out_width - 1) - 1
    assert y.min(initial=0) >= -(2 ** (out_width - 1))


def test_width_inference_is_tight_for_a_sum():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1])
    b.outputs(s)
    g = b.build()
    widths = infer_widths(g, 8)
    assert widths[s[0]] == 9  # -256..254 needs 9 bits
    assert widths[x[0]] == 8


def test_shifts_are_exact_and_negative_shifts_scale_outputs():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1], sa=-2, sb=3)  # x0/4 + 8 x1
    b.outputs(s)
    g = b.build()
    assert g.output_scale == 2
    y = evaluate(g, np.array([[5, -3]]))
    assert y.tolist() == [[5 + (-3) * 32]]
    assert np.allclose(graph_matrix(g), [[0.25, 8.0]])


def test_graph_matrix_needs_a_linear_graph():
    b = GraphBuilder()
    x = b.inputs(1)
    b.outputs(b.add(x, b.const([3])))
    message = "graph_matrix() needs a linear graph; this one has nonzero constants."
    with pytest.raises(ValueError, match=re.escape(message)):
        graph_matrix(b.build())


def test_evaluation_caches_leave_the_graph_meta_alone():
    b = GraphBuilder()
    x = b.inputs(2)
    b.outputs(b.add(x[0], x[1]))
    g = b.build(meta={"name": "sum"})
    evaluate(g, np.array([[1, 2], [3, 4]]))
    assert g.meta == {"name": "sum"}


def test_wide_values_switch_to_python_ints():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1], sa=40, sb=0)
    b.outputs(s)
    g = b.build()
    x_in = np.array([[2**40, 3]], dtype=object)
    y = evaluate(g, x_in)
    assert y[0, 0] == 2**80 + 3


def test_float_inputs_are_refused():
    g = matrix_graph(np.array([[1, 2]]))
    with pytest.raises(
        TypeError,
        match=re.escape(
            "The integer simulator needs integer inputs; got dtype float64. Quantize the inputs to integers first."
        ),
    ):
        evaluate(g, np.array([[1.0, 2.0]]))


def test_wrong_input_shape_is_refused():
    g = matrix_graph(np.array([[1, 2]]))
    with pytest.raises(
        ValueError, match=re.escape("Inputs must have shape (batch, 2) or (2,); got (3, 3).")
    ):
        evaluate(g, np.zeros((3, 3), dtype=np.int64))


def test_operand_out_of_range_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Node 1 (add) has its second operand 7 out of range: a graph of 2 nodes needs operands in 0..1."
        ),
    ):
        Graph.from_arrays([Op.INPUT, Op.ADD], [-1, 0], [-1, 7], [0, 0], [0, 0], [0, 0])


def test_unknown_kind_is_refused():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown node kind 42; known kinds are 0=input, 1=const, 2=shift, 3=add, 4=sub, 5=neg, 6=mul, 7=output, 8=trunc."
        ),
    ):
        Graph.from_arrays([0, 42], [-1, 0], [-1, -1], [0, 0], [0, 0], [0, 0])


def test_cycle_is_refused():
    # node 1 = node 2 + x, node 2 = node 1 + x: a cycle
    op = [Op.INPUT, Op.ADD, Op.ADD, Op.OUTPUT]
    with pytest.raises(
        ValueError,
        match=re.escape("The graph has a cycle; nodes on or behind it include [1, 2, 3]."),
    ):
        Graph.from_arrays(op, [-1, 2, 1, 1], [-1, 0, 0, -1], [0] * 4, [0] * 4, [0] * 4)


def test_forward_references_without_cycle_are_reordered():
    # output reads node 2, node 2 = x + x defined after the output: valid, reordered
    op = [Op.INPUT, Op.OUTPUT, Op.ADD]
    g = Graph.from_arrays(op, [-1, 2, 0], [-1, -1, 0], [0] * 3, [0] * 3, [0] * 3)
    assert evaluate(g, np.array([[3]])).tolist() == [[6]]


def _reversed_chain(n: int) -> tuple[list, ...]:
    """Output 0 reads node 1, node i reads node i + 1 and the input (y_i = y_{i+1} + x),
    and the input is the last node: every reference points forward."""
    op = [Op.OUTPUT] + [Op.ADD] * (n - 2) + [Op.INPUT]
    a = list(range(1, n)) + [-1]
    b = [-1] + [n - 1] * (n - 2) + [-1]
    return op, a, b, [0] * n, [0] * n, [0] * n


def test_a_long_chain_of_forward_references_is_ordered_in_linear_time():
    # 20,000 forward links: one relaxation pass per link took 2 s here (9 s at 40,000); Kahn's
    # algorithm takes them in one sweep. The last add reads the input twice: (n - 1) x.
    n = 20_000
    g = Graph.from_arrays(*_reversed_chain(n))
    assert evaluate(g, np.array([[3]])).tolist() == [[3 * (n - 1)]]
    small = Graph.from_arrays(*_reversed_chain(50))  # settles in the fast passes
    assert evaluate(small, np.array([[3]])).tolist() == [[3 * 49]]


def test_a_cycle_behind_a_long_chain_is_refused_naming_its_nodes():
    op, a, b, sa, sb, const = _reversed_chain(200)
    a[150] = 100  # node 100 reads 101 ... 150 reads 100: a cycle past the fast passes
    with pytest.raises(
        ValueError,
        match=re.escape("The graph has a cycle; nodes on or behind it include [0, 1, 2, 3, 4]."),
    ):
        Graph.from_arrays(op, a, b, sa, sb, const)


def test_mismatched_array_lengths_are_refused():
    with pytest.raises(
        ValueError, match=re.escape("Graph array 'b' has shape (1,); expected (2,) like 'op'.")
    ):
        Graph.from_arrays([0, 7], [-1, 0], [-1], [0, 0], [0, 0], [0, 0])


def test_dead_end_removal_drops_unused_nodes():
    b = GraphBuilder()
    x = b.inputs(3)
    used = b.add(x[0], x[1])
    b.add(x[1], x[2])  # never read
    b.outputs(used)
    g = b.build()
    pruned = remove_dead_ends(g)
    assert pruned.op_counts()["add"] == 1
    assert pruned.num_inputs == 3
    xs = np.array([[1, 2, 3]])
    assert np.array_equal(evaluate(pruned, xs), evaluate(g, xs))


def test_fold_negations_turns_add_of_neg_into_sub():
    b = GraphBuilder()
    x = b.inputs(2)
    n = b.neg(x[1], sa=1)
    s = b.add(n, x[0])  # -2 x1 + x0
    b.outputs(s)
    g = b.build()
    folded = fold_negations(g)
    assert folded.op_counts()["neg"] == 0
    assert folded.op_counts()["sub"] == 1
    xs = np.array([[7, 3], [-8, 5]])
    assert np.array_equal(evaluate(folded, xs), evaluate(g, xs))


def test_neg_feeding_an_output_stays():
    b = GraphBuilder()
    x = b.inputs(1)
    b.outputs(b.neg(x))
    g = fold_negations(b.build())
    assert g.op_counts()["neg"] == 1


def test_levels_and_adder_depth():
    g = matrix_graph(np.array([[1, 1, 1, 1, 1]]))
    assert g.adder_depth[g.output_nodes].max() == 3  # ceil(log2 5)
