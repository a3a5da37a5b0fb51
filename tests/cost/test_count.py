import numpy as np

from fewops.codes import csd, dense
from fewops.cost import NetworkCost, count_graph
from fewops.graph import GraphBuilder


def test_counts_of_a_hand_built_graph():
    b = GraphBuilder()
    x = b.inputs(3)
    s = b.add(x[0], x[1], sa=2)  # one add, one shift
    d = b.sub(s, x[2])  # one add (a subtraction), no shift
    m = b.mul(x[2], 3)  # general multiplier
    p = b.mul(x[1], -4)  # -4 is a shift and a negation, not a multiplier
    b.outputs(np.array([d[0], m[0], p[0]]))
    c = count_graph(b.build())
    assert (c.adds, c.subs, c.mults, c.negs, c.shifts, c.adder_depth) == (2, 1, 1, 1, 2, 2)


def test_csd_cost_equals_digits_minus_one_per_row():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 9))
    coded = csd.encode(w, 7)
    w_int = np.round(coded.matrix / coded.scale).astype(np.int64)
    assert count_graph(coded.graph).adds == csd.adds_for_integer_matrix(w_int)
    assert count_graph(coded.graph).mults == 0


def test_dense_cost_is_in_mults_and_in_minus_one_adds_per_row():
    w = np.array([[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]])  # no power-of-two weights at 16 bits
    c = count_graph(dense.encode(w, 16).graph)
    assert c.mults == 6
    assert c.adds == 4


def test_network_totals_scale_convs_by_positions():
    coded = csd.encode(np.array([[1.0, -0.5, 0.25]]), 8)
    conv = coded.layer_cost("conv", kind="conv", positions=10, bias=np.array([0.5]))
    lin = coded.layer_cost("fc", kind="linear", positions=1)
    totals = NetworkCost((conv, lin)).totals()
    per = count_graph(coded.graph).adds
    assert totals["adds"] == 11 * per
    assert totals["bias_adds"] == 10
    assert totals["params"] == 6
    d = conv.to_dict()
    assert d["per_position"]["adds"] == per and d["adds"] == 10 * per
