"""A self-checking AXI-Stream testbench for the streaming blocks, with stalls and a cycle log.

The bench feeds ``inputs`` (one beat per row) into the DUT's ``s_axis`` port and compares every
beat of its ``m_axis`` port with ``expected`` (which the caller computes with an independent
reference: torch's unfold, :func:`fewops.sim.evaluate`). The first ``clean_inputs`` input beats
and ``clean_outputs`` output beats run without stalls; after that the source drops tvalid with
probability ``input_gap`` % per cycle (never while a beat waits: AXI-Stream keeps tvalid up until
the handshake) and the sink drops tready with probability ``output_stall`` %, from fixed seeds.
It counts as failures: a wrong beat, a wrong ``m_axis_tlast`` (expected on every
``per_image``-th beat), output data or tvalid that change while stalled, an extra beat after the
last expected one, and a timeout. It prints ``IN i cycle`` and ``OUT i cycle`` for every beat and
ends with ``RESULT <p> passed, <f> failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewops.hw.stream.cycles import StreamTiming
from fewops.hw.testbench import check_fits, pack_hex
from fewops.hw.tools import SimResult, run_iverilog

TAIL_CYCLES = 64


@dataclass(frozen=True)
class BenchRun:
    """A bench's result and the cycle of every input and output beat."""

    result: SimResult
    input_cycles: np.ndarray
    output_cycles: np.ndarray

    def timing(self, image: int, inputs_per_image: int, outputs_per_image: int) -> StreamTiming:
        """Measured :class:`StreamTiming` of ``image`` (its ii: to the same beat of the next)."""
        i0, o0 = image * inputs_per_image, image * outputs_per_image
        return StreamTiming(
            first_input=int(self.input_cycles[i0]),
            last_input=int(self.input_cycles[i0 + inputs_per_image - 1]),
            first_output=int(self.output_cycles[o0]),
            last_output=int(self.output_cycles[o0 + outputs_per_image - 1]),
            ii=int(self.output_cycles[o0 + outputs_per_image] - self.output_cycles[o0]),
        )


def _stall_rule(name: str, percent: int) -> None:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent < 100:
        raise ValueError(f"The {name} must be an integer percentage in 0..99; got {percent!r}.")


def write_stream_bench(
    path: Path,
    dut: str,
    inputs: np.ndarray,
    input_bits: int,
    expected: np.ndarray,
    output_bits: int,
    *,
    per_image: int,
    clean_inputs: int = 0,
    clean_outputs: int = 0,
    input_gap: int = 0,
    output_stall: int = 0,
    seed: int = 1,
    input_signed: bool = True,
) -> Path:
    """Write ``tb.v`` and its two hex files into the folder ``path``; return the bench's path.

    ``inputs`` has one row of ``input_bits``-bit values per beat (value j at
    ``[j*input_bits +: input_bits]``; signed unless ``input_signed`` is False), ``expected`` one
    row of signed ``output_bits``-bit values per beat.
    """
    _stall_rule("input gap", input_gap)
    _stall_rule("output stall", output_stall)
    inputs, expected = np.asarray(inputs), np.asarray(expected)
    check_fits(inputs, input_bits, "input", signed=input_signed)
    check_fits(expected, output_bits, "expected output")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "in.hex").write_text("\n".join(pack_hex(inputs, input_bits)) + "\n")
    (path / "out.hex").write_text("\n".join(pack_hex(expected, output_bits)) + "\n")
    iw, ow = inputs.shape[1] * input_bits, expected.shape[1] * output_bits
    n_in, n_out = inputs.shape[0], expected.shape[0]
    max_cycles = 20 * (n_in + n_out) + 10_000
    text = f"""`timescale 1ns/1ps
module tb;
  localparam NIN = {n_in}, NOUT = {n_out}, PER_IMAGE = {per_image};
  reg clk = 1'b0;
  always #5 clk = ~clk;
  reg rst_n = 1'b0;
  reg [{iw - 1}:0] in_mem [0:NIN-1];
  reg [{ow - 1}:0] exp_mem [0:NOUT-1];
  integer in_idx = 0, out_idx = 0, cycle = 0, passes = 0, fails = 0, tail = 0;
  integer seed_in = {seed}, seed_out = {seed + 7919};
  reg src_on = 1'b0, snk_on = 1'b0, was_stalled = 1'b0;
  reg [{ow - 1}:0] held;
  wire s_tready, m_tvalid, m_tlast;
  wire [{ow - 1}:0] m_tdata;
  wire s_tvalid = src_on && (in_idx < NIN);
  wire [{iw - 1}:0] s_tdata = in_idx < NIN ? in_mem[in_idx] : {{{iw}{{1'b0}}}};
  wire s_fire = s_tvalid && s_tready;
  wire m_fire = m_tvalid && snk_on;
  {dut} dut (
    .clk(clk), .rst_n(rst_n),
    .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
    .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(snk_on),
    .m_axis_tlast(m_tlast)
  );
  initial begin
    $readmemh("in.hex", in_mem);
    $readmemh("out.hex", exp_mem);
    repeat (3) @(posedge clk);
    rst_n <= 1'b1;
  end
  always @(posedge clk) begin
    if (!rst_n) begin
      src_on <= 1'b1;
      snk_on <= 1'b1;
    end else begin
      cycle <= cycle + 1;
      if (s_fire) begin
        $display("IN %0d %0d", in_idx, cycle);
        in_idx <= in_idx + 1;
      end
      if (!s_tvalid || s_tready)
        src_on <= in_idx + s_fire < {clean_inputs}
          || (($random(seed_in) & 32'h7fffffff) % 100) >= {input_gap};
      snk_on <= out_idx + m_fire < {clean_outputs}
        || (($random(seed_out) & 32'h7fffffff) % 100) >= {output_stall};
      if (was_stalled && (!m_tvalid || m_tdata !== held)) begin
        $display("MISMATCH beat %0d changed while stalled at cycle %0d", out_idx, cycle);
        fails = fails + 1;
      end
      was_stalled <= m_tvalid && !snk_on;
      held <= m_tdata;
      if (m_fire) begin
        if (out_idx >= NOUT) begin
          $display("MISMATCH extra beat %0d at cycle %0d: %h", out_idx, cycle, m_tdata);
          fails = fails + 1;
        end else begin
          $display("OUT %0d %0d", out_idx, cycle);
          if (m_tdata !== exp_mem[out_idx] || m_tlast !== ((out_idx + 1) % PER_IMAGE == 0)) begin
            $display("MISMATCH beat %0d: got %h last %b, expected %h", out_idx, m_tdata,
                     m_tlast, exp_mem[out_idx]);
            fails = fails + 1;
          end else passes = passes + 1;
        end
        out_idx <= out_idx + 1;
      end
      if (out_idx >= NOUT) tail <= tail + 1;
      if (tail == {TAIL_CYCLES} || cycle == {max_cycles}) begin
        if (out_idx < NOUT) begin
          $display("MISMATCH timeout after %0d cycles with %0d of %0d beats", cycle, out_idx,
                   NOUT);
          fails = fails + 1;
        end
        $display("RESULT %0d passed, %0d failed", passes, fails);
        $finish;
      end
    end
  end
endmodule
"""
    bench = path / "tb.v"
    bench.write_text(text)
    return bench


def parse_beats(log: str, tag: str) -> np.ndarray:
    """Cycles of the beats a bench printed as ``TAG index cycle``, in index order."""
    rows = [line.split() for line in log.splitlines() if line.startswith(tag + " ")]
    cycles = np.full(len(rows), -1, dtype=np.int64)
    for _, idx, cyc in rows:
        cycles[int(idx)] = int(cyc)
    return cycles


def run_stream_bench(sources: list[Path], workdir: Path, timeout: float = 300) -> BenchRun:
    """Simulate the bench written into ``workdir`` with iverilog; parse its cycle log."""
    result = run_iverilog([*sources, Path(workdir) / "tb.v"], "tb", workdir, timeout=timeout)
    return BenchRun(
        result=result,
        input_cycles=parse_beats(result.log, "IN"),
        output_cycles=parse_beats(result.log, "OUT"),
    )
