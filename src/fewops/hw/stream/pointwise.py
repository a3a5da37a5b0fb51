"""Per-value arithmetic between streamed layers, exactly as :mod:`fewops.network` computes it.

A coded layer's kernel output ``acc`` becomes ``t = acc * scale_m + bias_int[j]`` (:class:`Affine`),
and a :class:`~fewops.network.steps.Requantize` step becomes :class:`Round`: the one rounding
rule :func:`fewops.network.steps.requantize`, ``clip((t + 2**(r-1)) >>> r, lo, hi)`` for r > 0
(``>>>`` arithmetic, i.e. floor) and ``clip(t << -r, lo, hi)`` otherwise. Every wire is as wide
as interval arithmetic over Python ints says its value needs, so nothing wraps.
"""

from __future__ import annotations

from dataclasses import dataclass

from fewops.hw.emit import literal, shift_add_product

Range = tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """``t = acc * scale + bias[j]`` for value j."""

    scale: int
    bias: tuple[int, ...]


@dataclass(frozen=True)
class Round:
    """``clip(round(t * 2**-shift), lo, hi)`` with ties up (:func:`requantize`)."""

    shift: int
    lo: int
    hi: int


Op = Affine | Round


def signed_bits(lo: int, hi: int) -> int:
    """Two's complement width that holds every integer of [lo, hi]."""
    return max((v if v >= 0 else -v - 1).bit_length() for v in (int(lo), int(hi))) + 1


def value_bits(lo: int, hi: int) -> tuple[int, bool]:
    """(width, signed) of a stream value in [lo, hi]: unsigned when lo >= 0."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return signed_bits(lo, hi), True


def as_signed(expr: str, signed: bool) -> str:
    """``expr`` read as a signed Verilog value (zero-extended by one bit when unsigned)."""
    return f"$signed({expr})" if signed else f"$signed({{1'b0, {expr}}})"


def op_range(op: Op, j: int, lo: int, hi: int) -> Range:
    """Range of value j after ``op`` for inputs in [lo, hi]."""
    if isinstance(op, Affine):
        a, b = lo * op.scale, hi * op.scale
        return min(a, b) + op.bias[j], max(a, b) + op.bias[j]
    r = op.shift
    qlo, qhi = (
        ((lo + (1 << (r - 1))) >> r, (hi + (1 << (r - 1))) >> r) if r > 0 else (lo << -r, hi << -r)
    )
    qlo, qhi = min(max(qlo, op.lo), op.hi), min(max(qhi, op.lo), op.hi)
    return qlo, qhi


def emit_ops(
    ops: list[Op], ins: list[str], ranges: list[Range], prefix: str
) -> tuple[list[str], list[str], list[Range]]:
    """Verilog wires computing ``ops`` on the signed expressions ``ins`` (value j in range
    ``ranges[j]``). Returns the declarations, the name of each result (a signed wire) and the
    result ranges."""
    lines: list[str] = []
    names = list(ins)
    cur = list(ranges)
    for i, op in enumerate(ops):
        for j in range(len(names)):
            lo, hi = cur[j]
            nlo, nhi = op_range(op, j, lo, hi)
            x = names[j]
            base = f"{prefix}{i}_{j}"
            if isinstance(op, Affine):
                # the scale as shifts and adds: a constant multiplier would take a DSP block
                prod = shift_add_product(x, op.scale)
                add = "" if op.bias[j] == 0 else f" + {literal(op.bias[j])}"
                w = signed_bits(nlo, nhi)
                lines.append(f"  wire signed [{w - 1}:0] {base} = {prod}{add};")
            else:
                r = op.shift
                if r > 0:
                    half = 1 << (r - 1)
                    uw = signed_bits(lo + half, hi + half)
                    qlo, qhi = (lo + half) >> r, (hi + half) >> r
                    qw = signed_bits(qlo, qhi)
                    lines.append(f"  wire signed [{uw - 1}:0] {base}_u = {x} + {literal(half)};")
                    lines.append(f"  wire signed [{qw - 1}:0] {base}_q = {base}_u >>> {r};")
                elif r < 0:
                    qlo, qhi = lo << -r, hi << -r
                    qw = signed_bits(qlo, qhi)
                    lines.append(
                        f"  wire signed [{qw - 1}:0] {base}_q = $signed({{{x}, {-r}'d0}});"
                    )
                else:
                    qlo, qhi = lo, hi
                    qw = signed_bits(qlo, qhi)
                    lines.append(f"  wire signed [{qw - 1}:0] {base}_q = {x};")
                q = f"{base}_q"
                clip = q
                if qhi > op.hi:
                    clip = f"({q} > {literal(op.hi)}) ? {literal(op.hi)} : {clip}"
                if qlo < op.lo:
                    clip = f"({q} < {literal(op.lo)}) ? {literal(op.lo)} : {clip}"
                w = signed_bits(nlo, nhi)
                lines.append(f"  wire signed [{w - 1}:0] {base} = {clip};")
            names[j] = base
            cur[j] = (nlo, nhi)
    return lines, names, cur


def pack(names: list[str], target: str, bits: int) -> list[str]:
    """Assign signed wire j to ``target[j*bits +: bits]`` (the values fit ``bits``)."""
    return [f"  assign {target}[{j * bits} +: {bits}] = {n};" for j, n in enumerate(names)]
