"""Node kinds of the shift-add graph.

Every value in a graph is an integer ``v`` standing for the real number ``v * 2**lsb``; the
exponent ``lsb`` is a property of the node (see :mod:`fewops.graph.widths`). Shifts are therefore
pure wiring: they change a node's exponent, never its integer, and never lose a bit. The one
node that loses bits is TRUNC (rounding inside the graph): it keeps ``floor(int / 2**const)`` and
raises the exponent by ``const``, which in hardware is a slice of wires.
"""

from __future__ import annotations

from enum import IntEnum


class Op(IntEnum):
    INPUT = 0  # const holds the input port index
    CONST = 1  # const holds the integer value
    SHIFT = 2  # a << sa (sa may be negative: an exact scaling by 2**sa)
    ADD = 3  # (a << sa) + (b << sb): one adder
    SUB = 4  # (a << sa) - (b << sb): one adder
    NEG = 5  # -(a << sa): counted as a neg unless a later pass folds it into a SUB
    MUL = 6  # (a << sa) * const: a general multiplier unless |const| is a power of two
    OUTPUT = 7  # a << sa, exposed as an output port (ports in node order)
    TRUNC = 8  # (a << sa) with its ``const`` lowest bits dropped (floor): wiring, no adder


OP_NAMES = {op.value: op.name.lower() for op in Op}
LEAF_OPS = (Op.INPUT, Op.CONST)
BINARY_OPS = (Op.ADD, Op.SUB)
UNARY_OPS = (Op.SHIFT, Op.NEG, Op.MUL, Op.OUTPUT, Op.TRUNC)


def op_name(code: int) -> str:
    """The lower-case name of an opcode, or a clear error for an unknown one."""
    try:
        return OP_NAMES[int(code)]
    except KeyError:
        known = ", ".join(f"{v}={n}" for v, n in OP_NAMES.items())
        raise ValueError(f"Unknown node kind {int(code)}; known kinds are {known}.") from None
