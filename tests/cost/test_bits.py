"""Bit-level cost on hand-made graphs: full-adder bits per adder, classes, LUT and FF estimates."""

import re

import numpy as np
import pytest

from fewops.codes import csd
from fewops.cost import count_graph
from fewops.cost.bits import (
    LUT_PER_BIT,
    adder_bits,
    bit_classes,
    bit_cost,
    csd_weight,
    estimate_luts,
    node_widths,
    register_bits,
)
from fewops.graph import GraphBuilder


def small_graph():
    b = GraphBuilder()
    x = b.inputs(3)
    s = b.add(x[0], x[1], 0, 3)  # x0 + 8 x1: 12-bit result, 3 low bits are x0's wires
    t = b.sub(x[0], x[1], 3, 0)  # 8 x0 - x1: the subtracted operand is lower, all 12 bits pay
    u = b.trunc(s, 2)  # s >> 2 (10 bits)
    v = b.add(u, x[2])  # (u << 2) + x2: 12 bits, u starts 2 bits up: 2 wires, 10 adder bits
    b.outputs(np.concatenate([s, t, v]))
    return b.build(), (int(s[0]), int(t[0]), int(v[0]))


def test_adder_bits_by_hand():
    g, (s, t, v) = small_graph()
    bits = adder_bits(g, 8)
    assert (bits[s], bits[t], bits[v]) == (9, 12, 10)
    assert bits.sum() == 31  # inputs, the trunc and the outputs are wires


def test_bits_follow_the_input_width():
    g, (s, t, v) = small_graph()
    assert adder_bits(g, 4)[s] == 5  # 8 bits of result, 3 pass through


def test_known_zero_bits_of_a_constant_are_free():
    b = GraphBuilder()
    x = b.inputs(1)
    c = b.const([40])  # 0b101000: three known-zero low bits
    s = b.add(x[0], c)
    b.outputs(s)
    g = b.build()
    # x + 40 for x in [-128, 127]: [-88, 167], 9 bits; x's 3 low bits pass through.
    assert adder_bits(g, 8)[int(s[0])] == 6
    assert bit_classes(g, 8) == {"full": 0, "carry": 0, "const": 6, "adds": 0}


def test_carry_only_bits_below_a_truncation():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1])  # 9 bits
    b.outputs(b.trunc(s, 3))
    g = b.build()
    assert bit_classes(g, 8) == {"full": 6, "carry": 3, "const": 0, "adds": 1}


def test_luts_estimate_is_the_weighted_classes():
    g, _ = small_graph()
    classes = bit_classes(g, 8)
    expect = sum(LUT_PER_BIT[k] * classes[k] for k in LUT_PER_BIT)
    assert bit_cost(g).luts_est == estimate_luts(classes) == round(expect)
    assert bit_cost(g).adder_bits == 31 and bit_cost(g).adds == 3


def test_count_graph_reports_bits_only_when_asked():
    g = csd.encode(np.random.default_rng(0).normal(size=(4, 6)), 6).graph
    assert count_graph(g).adder_bits == 0
    full = count_graph(g, bits=True)
    assert full.adder_bits == int(adder_bits(g).sum()) > full.adds


def test_modular_width_keeps_only_the_bits_readers_need():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1])  # 9 bits exactly, but its only reader multiplies by zero
    m = b.mul(s, 0)
    b.outputs(np.concatenate([m, x[:1]]))
    g = b.build()
    assert node_widths(g, 8)[int(s[0])] == 1


def test_register_bits_of_a_pipelined_module():
    b = GraphBuilder()
    x = b.inputs(2)
    s = b.add(x[0], x[1])  # stage 0, 9 bits
    t = b.add(s, x[0])  # stage 1 with every=1: x0 is delayed one stage (8 bits)
    b.outputs(t)
    g = b.build()
    assert register_bits(g, 8, None) == 0
    # s (9) and the delayed x0 (8) into stage 1, the 10-bit output registered once.
    assert register_bits(g, 8, 1) == 9 + 8 + 10


def test_csd_weight():
    assert csd_weight(np.array([0, 1, 3, 7, -7, 85])).tolist() == [0, 1, 2, 2, 2, 4]


@pytest.mark.parametrize("width", [0, 65])
def test_bad_input_width_is_named(width):
    g, _ = small_graph()
    message = f"Input width must be between 1 and 64 bits; got {width}."
    with pytest.raises(ValueError, match=re.escape(message)):
        adder_bits(g, width)
