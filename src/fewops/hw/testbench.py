"""Self-checking testbenches: test vectors, hex files for ``$readmemh`` and the bench itself.

The expected outputs always come from the integer simulator (:func:`fewops.sim.evaluate`, or the
network simulator), never from the Verilog emitter, so a bench checks the emitter against an
independent reference. The bench prints one summary line, ``RESULT <p> passed, <f> failed``, and
up to ten mismatching vectors before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewops.hw.emit import ModuleInfo

MAX_REPORTED_MISMATCHES = 10


def make_vectors(
    num_inputs: int, count: int = 1000, *, lo: int, hi: int, seed: int = 0
) -> np.ndarray:
    """``count`` input vectors (at least the extremes) of integers in [lo, hi].

    The first rows are the corner cases: all lo, all hi, all zero (when in range), the two
    alternating lo/hi patterns, each single input at hi with the rest at lo (for up to 64 inputs);
    then vectors whose every entry is lo or hi at random, then uniform random vectors.
    """
    if num_inputs < 1 or count < 1:
        raise ValueError(f"Need at least one input and one vector; got {num_inputs}, {count}.")
    lo, hi = int(lo), int(hi)
    alt = np.arange(num_inputs) % 2 == 0
    rows = [
        np.full(num_inputs, lo),
        np.full(num_inputs, hi),
        np.where(alt, lo, hi),
        np.where(alt, hi, lo),
    ]
    if lo <= 0 <= hi:
        rows.append(np.zeros(num_inputs, dtype=np.int64))
    if lo <= -1 <= hi:
        rows.append(np.full(num_inputs, -1))
    for i in range(min(num_inputs, 64)):
        one = np.full(num_inputs, lo)
        one[i] = hi
        rows.append(one)
    corners = np.stack(rows).astype(np.int64)
    rng = np.random.default_rng(seed)
    rest = max(count - corners.shape[0], 0)
    extremes = np.where(rng.random((rest // 4, num_inputs)) < 0.5, lo, hi)
    uniform = rng.integers(lo, hi, size=(rest - rest // 4, num_inputs), endpoint=True)
    return np.concatenate([corners, extremes, uniform]).astype(np.int64)[: max(count, 1)]


def pack_hex(values, width: int) -> list[str]:
    """One hex line per row: entry j of the row in bits [j*width +: width], two's complement."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"Expected a 2-D array of integers; got shape {values.shape}.")
    digits = (values.shape[1] * width + 3) // 4
    mask = (1 << width) - 1
    lines = []
    for row in values.tolist():
        word = 0
        for j, v in enumerate(row):
            word |= (int(v) & mask) << (j * width)
        lines.append(f"{word:0{digits}x}")
    return lines


def check_fits(values, width: int, what: str, signed: bool = True) -> None:
    """Raise a ValueError when a value does not fit a (signed) port of ``width`` bits."""
    values = np.asarray(values)
    if values.size == 0:
        return
    top = 1 << (width - 1)
    low, high = (-top, top - 1) if signed else (0, 2 * top - 1)
    lo, hi = min(int(v) for v in values.flat), max(int(v) for v in values.flat)
    if lo < low or hi > high:
        kind = "signed" if signed else "unsigned"
        raise ValueError(
            f"{what} range [{lo}, {hi}] does not fit {kind} {width}-bit ports [{low}, {high}]."
        )


def write_testbench(info: ModuleInfo, vectors, expected, out_dir, tb_name: str | None = None):
    """Write ``tb_NAME.v`` and its two hex files next to the module; return the bench's path.

    ``vectors`` (V, inputs) are driven in order; ``expected`` (V, outputs) are compared with
    ``===`` (an X or Z output fails). A pipelined module (latency L > 0) is clocked once per
    vector and vector i is checked L cycles after it was applied.
    """
    vectors = np.asarray(vectors)
    expected = np.asarray(expected)
    count = vectors.shape[0] if vectors.ndim == 2 else 0
    if vectors.ndim != 2 or vectors.shape[1] != info.inputs or count == 0:
        raise ValueError(
            f"Vectors must have shape (count >= 1, {info.inputs}); got {vectors.shape}."
        )
    if expected.shape != (count, info.outputs):
        raise ValueError(
            f"Expected outputs must have shape ({count}, {info.outputs}); got {expected.shape}."
        )
    check_fits(vectors, info.input_width, "Test vector", info.input_signed)
    check_fits(expected, info.output_width, "Expected output")
    out = Path(out_dir)
    tb = tb_name or f"tb_{info.module}"
    x_file, y_file = f"{info.module}_x.hex", f"{info.module}_y.hex"
    (out / x_file).write_text("\n".join(pack_hex(vectors, info.input_width)) + "\n")
    (out / y_file).write_text("\n".join(pack_hex(expected, info.output_width)) + "\n")
    xw, yw, lat = info.inputs * info.input_width, info.outputs * info.output_width, info.latency
    clocked = lat > 0
    lines = [
        "`timescale 1ns/1ps",
        f"// Self-checking bench for {info.module}: {count} vectors, latency {lat}.",
        f"module {tb};",
        f"  localparam integer NV = {count};",
        f"  localparam integer LAT = {lat};",
        f"  reg [{xw - 1}:0] xs [0:NV-1];",
        f"  reg [{yw - 1}:0] ys [0:NV-1];",
        f"  reg [{xw - 1}:0] x;",
        f"  wire [{yw - 1}:0] y;",
        "  integer i, k, passed, failed;",
    ]
    if clocked:
        lines += ["  reg clk;", f"  {info.module} dut (.clk(clk), .x(x), .y(y));"]
    else:
        lines += [f"  {info.module} dut (.x(x), .y(y));"]
    lines += [
        "  task check(input integer v);",
        "    begin",
        "      if (y === ys[v]) passed = passed + 1;",
        "      else begin",
        "        failed = failed + 1;",
        f"        if (failed <= {MAX_REPORTED_MISMATCHES})",
        '          $display("MISMATCH vector %0d: y=%h expected=%h", v, y, ys[v]);',
        "      end",
        "    end",
        "  endtask",
        "  initial begin",
        f'    $readmemh("{x_file}", xs);',
        f'    $readmemh("{y_file}", ys);',
        "    passed = 0;",
        "    failed = 0;",
        "    #1;  // let every process of the design reach its first event control",
    ]
    if clocked:
        lines += [
            "    clk = 0;",
            "    x = xs[0];",
            "    for (i = 0; i < NV + LAT - 1; i = i + 1) begin",
            "      if (i < NV) x = xs[i];",
            "      #1 clk = 1;",
            "      #1 k = i + 1 - LAT;",
            "      if (k >= 0) check(k);",
            "      #1 clk = 0;",
            "    end",
        ]
    else:
        lines += [
            "    for (i = 0; i < NV; i = i + 1) begin",
            "      x = xs[i];",
            "      #1 check(i);",
            "    end",
        ]
    lines += [
        '    $display("RESULT %0d passed, %0d failed", passed, failed);',
        "    $finish;",
        "  end",
        "endmodule",
        "",
    ]
    path = out / f"{tb}.v"
    path.write_text("\n".join(lines))
    return path
