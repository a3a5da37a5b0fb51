"""Verilog for a shift-add graph: one wire per node, one operator per adder.

Every node becomes one signed wire whose width comes from interval arithmetic over the input range
(:func:`fewops.graph.widths.infer_ranges`), so no intermediate can overflow. Operand alignment
shifts are pure wiring (a concatenation with zero bits, never a shift operator), an ADD/SUB node is
exactly one ``+``/``-`` operator, a NEG one unary ``-``, a general MUL one ``*`` by a constant and a
MUL by +-2^e a shift (and a negation when negative), so a ``yosys proc`` cell count matches
:func:`fewops.cost.count_graph` node for node.

Optional pipelining puts a register bank after every ``pipeline_every`` adder levels (counted by
:attr:`Graph.adder_depth`) and registers the outputs, so the latency is
``max(1, ceil(D / pipeline_every))`` clock cycles for an adder depth D: the result for an input
presented before rising edge t appears after rising edge t + latency - 1.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.ops import Op
from fewops.graph.widths import (
    check_input_width,
    infer_ranges,
    modular_widths,
    operand_shifts,
    signed_width,
)

SUPPORTED_OPS = (Op.INPUT, Op.CONST, Op.SHIFT, Op.ADD, Op.SUB, Op.NEG, Op.MUL, Op.OUTPUT, Op.TRUNC)
STYLES = ("assign", "always")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = frozenset(
    "always and assign begin buf case default else end endcase endmodule for function if initial "
    "inout input integer module nand negedge nor not or output parameter posedge reg signed "
    "wire xor xnor localparam generate endgenerate logic".split()
)


@dataclass(frozen=True)
class ModuleInfo:
    """What the JSON sidecar records about an emitted module.

    ``x`` packs ``inputs`` signed integers of ``input_width`` bits (input i at
    ``[i*input_width +: input_width]``); ``y`` packs ``outputs`` signed integers of
    ``output_width`` bits; an output integer y stands for ``y * 2**-scale``. ``latency`` is 0
    for a combinational module, else the number of clock cycles (the module has a ``clk`` port).
    ``input_signed`` is False for a network whose inputs are unsigned activations (the sidecar
    then records it; a layer's sidecar has exactly the seven keys above).
    """

    module: str
    inputs: int
    input_width: int
    outputs: int
    output_width: int
    latency: int
    scale: int
    input_signed: bool = True

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.input_signed:
            del data["input_signed"]
        return data

    @classmethod
    def from_json(cls, path) -> ModuleInfo:
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def check_name(name: str) -> str:
    """``name`` if it is a usable Verilog module name, else a ValueError saying why."""
    if not isinstance(name, str) or not _IDENT.match(name) or name in _KEYWORDS:
        raise ValueError(
            f"Module name {name!r} is not a valid Verilog identifier: use letters, digits and "
            "underscores, starting with a letter or underscore, and no reserved word."
        )
    return name


def check_pipeline_every(pipeline_every) -> int | None:
    if pipeline_every is None:
        return None
    if isinstance(pipeline_every, bool) or not isinstance(pipeline_every, int | np.integer):
        raise TypeError(
            f"pipeline_every must be None or a positive integer; got {pipeline_every!r}."
        )
    if int(pipeline_every) < 1:
        raise ValueError(
            f"pipeline_every must be at least 1 adder level; got {int(pipeline_every)}."
        )
    return int(pipeline_every)


def check_supported(graph: Graph) -> None:
    """Raise a ValueError naming the first node whose kind the emitter cannot build."""
    op = np.asarray(graph.op)
    bad = ~np.isin(op, np.asarray(SUPPORTED_OPS, dtype=op.dtype))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        names = ", ".join(o.name.lower() for o in SUPPORTED_OPS)
        raise ValueError(
            f"Cannot emit Verilog for node {i}: unsupported node kind {int(op[i])}; "
            f"the emitter handles {names}."
        )


def literal(value: int) -> str:
    """A signed Verilog literal wide enough that context extension keeps its value."""
    value = int(value)
    mag = abs(value)
    text = f"{mag.bit_length() + 1}'sd{mag}"
    return f"-{text}" if value < 0 else text


def csd_digits(value: int) -> list[tuple[int, int]]:
    """(shift, +1 or -1) pairs with sum(d << shift) == value: canonical signed digits, no two
    adjacent nonzero (the fewest adds for a constant multiplier without sharing)."""
    m, k, digits = int(value), 0, []
    while m:
        if m & 1:
            d = 2 - (m & 3)  # +1 when m = 1 mod 4, -1 when m = 3 mod 4
            digits.append((k, d))
            m -= d
        m >>= 1
        k += 1
    return digits


def shift_add_product(expr: str, value: int) -> str:
    """``expr * value`` as shifts and adds of a signed expression (never a multiplier cell, so
    synthesis uses no DSP block). Exact in the width of the wire it is assigned to whenever the
    product fits it: shifts, adds and subtracts all agree modulo 2**width."""
    digits = csd_digits(value)
    if not digits:
        return "0"
    terms = []
    for i, (k, d) in enumerate(digits):
        term = expr if k == 0 else f"({expr} <<< {k})"
        sign = ("-" if d < 0 else "") if i == 0 else (" - " if d < 0 else " + ")
        terms.append(f"{sign}{term}")
    return "(" + "".join(terms) + ")" if len(terms) > 1 or digits[0][1] < 0 else terms[0]


def _pow2_exponent(values: np.ndarray) -> np.ndarray:
    """log2|v| where |v| is a power of two, else -1."""
    out = np.full(values.shape[0], -1, dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        m = abs(int(v))
        if m and m & (m - 1) == 0:
            out[i] = m.bit_length() - 1
    return out


def node_widths(graph: Graph, input_lo: int, input_hi: int, input_width: int) -> np.ndarray:
    """Signed width of every node for inputs in [input_lo, input_hi] (inputs get the port width).

    Inner nodes keep only the bits their readers need (:func:`modular_widths`): wrap-around in
    those bits cannot reach an output.
    """
    lo, hi = infer_ranges(graph, input_lo, input_hi)
    widths = np.asarray(signed_width(lo, hi), dtype=np.int64)
    widths[graph.input_nodes] = input_width
    return modular_widths(graph, widths)


def _stages(graph: Graph, every: int) -> tuple[np.ndarray, int]:
    depth = graph.adder_depth
    stage = np.where(depth > 0, (depth - 1) // every, 0)
    outs = graph.output_nodes
    last = int(stage[outs].max(initial=0))
    return stage, last + 1


def emit_module(
    graph: Graph,
    name: str = "layer",
    input_width: int = 8,
    pipeline_every: int | None = None,
    *,
    input_range: tuple[int, int] | None = None,
    style: str = "assign",
) -> tuple[str, ModuleInfo]:
    """Verilog text of ``graph`` as module ``name`` and its :class:`ModuleInfo`.

    ``input_range`` narrows the values the inputs can take (default: the full signed range of
    ``input_width`` bits); widths of every node follow from it. ``style`` is how the nodes are
    written, with the very same expressions: ``"assign"`` (default) declares one continuous
    ``wire`` per node, which synthesis tools read fastest; ``"always"`` declares one ``reg`` per
    node and assigns them in order in a single ``always @*`` block, which an event-driven
    simulator (iverilog) evaluates once per input change instead of re-evaluating deep graphs
    on every intermediate event (several times to a hundred times faster there; yosys reads it
    correctly but slowly).
    """
    if style not in STYLES:
        raise ValueError(f"Unknown Verilog style {style!r}; choose one of {STYLES}.")
    check_name(name)
    input_width = check_input_width(input_width)
    every = check_pipeline_every(pipeline_every)
    if not isinstance(graph, Graph):
        raise TypeError(f"write_verilog needs a fewops Graph; got {type(graph).__name__}.")
    check_supported(graph)
    if graph.num_inputs == 0 or graph.num_outputs == 0:
        raise ValueError(
            f"A module needs at least one input and one output; this graph has "
            f"{graph.num_inputs} inputs and {graph.num_outputs} outputs."
        )
    top = 1 << (input_width - 1)
    lo_in, hi_in = (-top, top - 1) if input_range is None else (int(x) for x in input_range)
    if lo_in < -top or hi_in > top - 1 or lo_in > hi_in:
        raise ValueError(
            f"Input range [{lo_in}, {hi_in}] does not fit signed {input_width}-bit ports "
            f"[{-top}, {top - 1}]."
        )

    n = graph.num_nodes
    widths = node_widths(graph, lo_in, hi_in, input_width)
    la, lb = operand_shifts(graph)
    op = graph.op
    outs = graph.output_nodes
    out_width = int(widths[outs].max())
    k, m = graph.num_inputs, graph.num_outputs

    if every is None:
        latency = 0
        delay_a = delay_b = np.zeros(n, dtype=np.int64)
        out_delay = np.zeros(m, dtype=np.int64)
    else:
        stage, latency = _stages(graph, every)
        a_safe, b_safe = np.maximum(graph.a, 0), np.maximum(graph.b, 0)
        delay_a = np.where(graph.a >= 0, stage - stage[a_safe], 0)
        delay_b = np.where(graph.b >= 0, stage - stage[b_safe], 0)
        out_delay = latency - stage[outs]

    # Operand expressions: node name (or its delayed copy) with zero bits appended for a shift.
    def operand(idx, shift, delay):
        names = [
            f"n{i}" if d == 0 else f"n{i}_p{d}"
            for i, d in zip(idx.tolist(), delay.tolist(), strict=True)
        ]
        return [
            s if sh == 0 else f"$signed({{{s}, {sh}'d0}})"
            for s, sh in zip(names, shift.tolist(), strict=True)
        ]

    expr = [""] * n
    kinds = {int(o): np.flatnonzero(op == o) for o in SUPPORTED_OPS}
    port = graph.const[kinds[Op.INPUT]].tolist()
    for i, p in zip(kinds[Op.INPUT].tolist(), port, strict=True):
        expr[i] = f"x[{p * input_width} +: {input_width}]"
    for i in kinds[Op.CONST].tolist():
        expr[i] = literal(graph.const[i])
    for kind, sym in ((Op.ADD, "+"), (Op.SUB, "-")):
        idx = kinds[kind]
        if idx.size:
            ea = operand(graph.a[idx], la[idx], delay_a[idx])
            eb = operand(graph.b[idx], lb[idx], delay_b[idx])
            for i, x, y in zip(idx.tolist(), ea, eb, strict=True):
                expr[i] = f"{x} {sym} {y}"
    for kind in (Op.SHIFT, Op.OUTPUT, Op.NEG):
        idx = kinds[kind]
        if idx.size:
            ea = operand(graph.a[idx], la[idx], delay_a[idx])
            fmt = "-({})" if kind == Op.NEG else "{}"
            for i, x in zip(idx.tolist(), ea, strict=True):
                expr[i] = fmt.format(x)
    idx = kinds[Op.TRUNC]
    if idx.size:
        ea = operand(graph.a[idx], la[idx], delay_a[idx])
        for i, x, t in zip(idx.tolist(), ea, graph.const[idx].tolist(), strict=True):
            expr[i] = f"{x} >>> {int(t)}" if t else x
    idx = kinds[Op.MUL]
    if idx.size:
        consts = np.asarray(graph.const[idx])
        exps = _pow2_exponent(consts)
        plain = operand(graph.a[idx], la[idx], delay_a[idx])
        shifted = operand(graph.a[idx], la[idx] + np.maximum(exps, 0), delay_a[idx])
        rows = zip(idx.tolist(), plain, shifted, consts.tolist(), exps.tolist(), strict=True)
        for i, x, xs, c, e in rows:
            if c == 0:
                expr[i] = "0"
            elif e >= 0:  # +-2^e is wiring, plus one negation for a negative constant
                expr[i] = xs if c > 0 else f"-({xs})"
            else:
                expr[i] = f"{x} * {literal(c)}"

    hi_bits = (widths - 1).tolist()
    lines = [
        "`timescale 1ns/1ps",
        f"// Generated by fewops.hw from a shift-add graph of {n} nodes "
        f"({k} inputs, {m} outputs, latency {latency}).",
        f"// x: {k} signed inputs of {input_width} bits (input i at x[i*{input_width} +: "
        f"{input_width}]); y: {m} signed outputs of {out_width} bits; "
        f"real output = y * 2**-{graph.output_scale}.",
    ]
    ports = "input wire clk, " if latency else ""
    lines.append(
        f"module {name} ({ports}input wire [{k * input_width - 1}:0] x, "
        f"output wire [{m * out_width - 1}:0] y);"
    )
    if style == "assign":
        lines.extend(
            f"  wire signed [{h}:0] n{i} = {e};"
            for i, (h, e) in enumerate(zip(hi_bits, expr, strict=True))
        )
    else:
        lines.extend(f"  reg signed [{h}:0] n{i};" for i, h in enumerate(hi_bits))
        lines.append("  always @* begin")
        lines.extend(f"    n{i} = {e};" for i, e in enumerate(expr))
        lines.append("  end")
    if latency:
        lines.extend(_pipeline_registers(graph, delay_a, delay_b, outs, out_delay, hi_bits))
    out_names = [
        f"n{o}" if d == 0 else f"n{o}_p{d}"
        for o, d in zip(outs.tolist(), out_delay.tolist(), strict=True)
    ]
    lines.extend(
        f"  assign y[{j * out_width} +: {out_width}] = {s};" for j, s in enumerate(out_names)
    )
    lines.append("endmodule")
    lines.append("")
    info = ModuleInfo(
        module=name,
        inputs=k,
        input_width=input_width,
        outputs=m,
        output_width=out_width,
        latency=latency,
        scale=int(graph.output_scale),
    )
    return "\n".join(lines), info


def _pipeline_registers(graph, delay_a, delay_b, outs, out_delay, hi_bits) -> list[str]:
    """Delay lines n<i>_p1 .. n<i>_p<d>, each one register bank behind the previous."""
    n = graph.num_nodes
    need = np.zeros(n, dtype=np.int64)
    has_a = graph.a >= 0
    np.maximum.at(need, graph.a[has_a], delay_a[has_a])
    has_b = graph.b >= 0
    np.maximum.at(need, graph.b[has_b], delay_b[has_b])
    np.maximum.at(need, outs, out_delay)
    nodes = np.flatnonzero(need > 0).tolist()
    depth = need[need > 0].tolist()
    decl, body = [], []
    for i, d in zip(nodes, depth, strict=True):
        regs = ", ".join(f"n{i}_p{j}" for j in range(1, d + 1))
        decl.append(f"  reg signed [{hi_bits[i]}:0] {regs};")
        body.append(f"    n{i}_p1 <= n{i};")
        body.extend(f"    n{i}_p{j} <= n{i}_p{j - 1};" for j in range(2, d + 1))
    return decl + ["  always @(posedge clk) begin"] + body + ["  end"]


def prepare_dir(out_dir, overwrite: bool) -> Path:
    """Create ``out_dir``, or accept it when empty (or when ``overwrite`` is set)."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"Output path {str(path)!r} exists and is not a directory.")
    if path.is_dir() and not overwrite:
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            raise ValueError(
                f"Output directory {str(path)!r} already holds {len(entries)} other file(s) "
                f"(first: {entries[0]!r}); pass overwrite=True to write into it anyway."
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_module(path: Path, name: str, text: str, info: ModuleInfo) -> tuple[Path, Path]:
    v_path = path / f"{name}.v"
    json_path = path / f"{name}.json"
    v_path.write_text(text)
    json_path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return v_path, json_path


def write_verilog(
    graph: Graph,
    out_dir,
    name: str = "layer",
    input_width: int = 8,
    pipeline_every: int | None = None,
    overwrite: bool = False,
    *,
    style: str = "assign",
) -> tuple[Path, Path]:
    """Write ``NAME.v`` and its sidecar ``NAME.json`` into ``out_dir``; return both paths.

    The module has ports ``x`` (``inputs * input_width`` bits, input i at
    ``[i*input_width +: input_width]``, signed) and ``y`` (``outputs * output_width`` bits, every
    output sign-extended to the widest one), plus ``clk`` when ``pipeline_every`` asks for
    registers every that many adder levels. ``out_dir`` must be new or empty unless
    ``overwrite`` is set. ``style`` (``"assign"`` or ``"always"``): see :func:`emit_module`.
    """
    text, info = emit_module(graph, name, input_width, pipeline_every, style=style)
    path = prepare_dir(out_dir, overwrite)
    return write_module(path, name, text, info)
