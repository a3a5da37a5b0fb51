"""A whole coded CNN as one streaming Verilog top, built from a :class:`fewops.network.Network`.

Pixels stream in, one per beat; each image's logits come out in one beat, bit for bit what
:meth:`Network.run` returns. The steps become a graph of stages (:mod:`fewops.hw.stream.build`,
:mod:`fewops.hw.stream.stages`, :mod:`fewops.hw.stream.masked`,
:mod:`fewops.hw.stream.residual`), each with registered outputs and its own valid/ready
handshake:

- Coded convolution: masked window generator (no cycle spent on padding) -> ONE shift-add kernel
  reused at every output position -> ``* scale_m + bias_int`` per channel (and the Requantize
  that follows, fused) -> FIFO.
- Requantize: fused into the stage before it when that stage computes per-value arithmetic
  and the Requantize is its only reader, else a stage of its own; exactly
  :func:`fewops.network.steps.requantize`.
- MaxPool: window generator (K = k, S = s, P = 0) -> max per channel.
- Flatten: a gather into one vector per image in torch's C-major order (no hardware when the
  value is already one beat per image; a Reshape of such a value is no hardware either); Coded
  linear: one fully parallel kernel per image.
- SumPool: per-channel sums, one beat per image.
- Branches (residual networks): a value read by several steps goes through a fork; Add joins
  two streams beat by beat (the finer exponent, the fused ReLU), the side that runs ahead
  through a FIFO whose depth comes from the cycle model and a deadlock bound (proved in
  :mod:`fewops.hw.stream.residual`); Slice of pixels is a counter filter, Slice and Pad of
  channels are wiring. ResNet-20 (shortcut "A" or "B") streams bit-exactly.

Ports of the top (the contract outside benches rely on): ``clk``, ``rst_n`` (active low,
synchronous), ``s_axis_tdata`` (one pixel per beat, row-major over H, W; channel c unsigned at
``[c*input_bits +: input_bits]``, the integers of :meth:`Network.quantize_input`),
``s_axis_tvalid``, ``s_axis_tready``, ``s_axis_tlast`` (accepted and ignored: the top counts
pixels), ``m_axis_tdata`` (logit j two's complement at ``[j*output_bits +: output_bits]``),
``m_axis_tvalid``, ``m_axis_tready`` and ``m_axis_tlast`` (high on every output beat, which is
an image's last). ``network.json`` beside the Verilog records the contract and the exact cycle
model (and ``lookahead_pixels``: how many pixels of the next images an image's logits wait
for in a continuous stream) (:mod:`fewops.hw.stream.cycles`, :func:`fewops.hw.stream.build.stream_times`): with no
stalls an image takes H*W cycles (II), and its logits come ``latency_cycles`` after its first
pixel; each Add's layer record has its FIFO depths and what they come from.

Not built: several kernel copies per layer (``parallel`` > 1: II is bound by the
one-pixel-per-beat input, H*W cycles, which one kernel already reaches), dilation, non-square
geometry, padding or reshaping of pixels (only channels), an Add of a value with itself; every
such step is listed in one ValueError before any file is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewops.hw.emit import check_name, check_pipeline_every, check_supported, prepare_dir
from fewops.hw.stream.build import (
    MODEL_IMAGES,
    Builder,
    Stage,
    needs,
    size_fifos,
    stream_times,
)
from fewops.hw.stream.cycles import stage_timing
from fewops.hw.stream.masked import masked_problem
from fewops.hw.stream.pointwise import signed_bits
from fewops.hw.stream.residual import emit_fork, norm_index
from fewops.hw.stream.stages import Format
from fewops.network.network import Network
from fewops.network.steps import (
    STEP_TYPES,
    Add,
    Coded,
    MaxPool,
    Pad,
    Reshape,
    Slice,
    SumPool,
)


@dataclass(frozen=True)
class StreamNetworkInfo:
    """What :func:`emit_stream_network` wrote: the files, the contract and the cycle model."""

    module: str
    out_dir: Path
    sources: tuple[str, ...]
    contract: dict = field(repr=False)
    stages: tuple[Stage, ...] = field(repr=False)
    output_stage: int = -1

    @property
    def paths(self) -> list[Path]:
        return [self.out_dir / s for s in self.sources]

    @property
    def json_path(self) -> Path:
        return self.out_dir / "network.json"

    @property
    def latency_cycles(self) -> int:
        return int(self.contract["latency_cycles"])

    @property
    def ii_cycles(self) -> int:
        return int(self.contract["ii_cycles"])

    @property
    def input_bits(self) -> int:
        return int(self.contract["input_bits"])

    @property
    def output_bits(self) -> int:
        return int(self.contract["output_bits"])

    @property
    def num_outputs(self) -> int:
        return int(self.contract["num_outputs"])

    @property
    def lookahead_pixels(self) -> int:
        """Pixels of the next image(s) that an image's logits wait for when images stream back
        to back (its last windows are filled by them; with no next image, by bubbles)."""
        return int(self.contract["lookahead_pixels"])

    @property
    def pixels(self) -> int:
        """Input beats per image: H*W."""
        _, h, w = self.contract["input_shape"]
        return int(h) * int(w)


def unsupported(net: Network, parallel: int = 1) -> list[str]:
    """Every reason ``net`` (with ``parallel``) cannot be streamed, one sentence fragment each;
    empty when it can."""
    problems = []
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel != 1:
        problems.append(
            f"parallel={parallel!r}: only 1 is built (one kernel per layer already takes one "
            "window per cycle, and the one-pixel-per-beat input bounds II at H*W cycles)"
        )
    values = None
    if all(isinstance(step, STEP_TYPES) for step in net.steps):
        try:
            values = net.values()
        except ValueError as exc:
            problems.append(f"its values cannot be inferred ({str(exc).rstrip('.')})")
    readers: dict[str, int] = {}
    for step in net.steps:
        for src in step.sources:
            readers[src] = readers.get(src, 0) + 1
    shape0 = tuple(net.input.shape)
    if len(shape0) not in (1, 3):
        problems.append(f"input shape {shape0} is neither (C, H, W) nor (N,)")
    for step in net.steps[1:]:
        where = f"step {step.name!r} ({type(step).__name__})"
        if not isinstance(step, STEP_TYPES):
            problems.append(f"{where}: {type(step).__name__} is an unknown step")
            continue
        if readers.get(step.name, 0) == 0 and step.name != net.output:
            problems.append(f"{where}: its value is never read (nothing would take its beats)")
        if isinstance(step, Coded):
            try:
                check_supported(step.graph)
            except ValueError as exc:
                problems.append(f"{where}: {str(exc).rstrip('.')}")
        if isinstance(step, Add) and step.a == step.b:
            problems.append(
                f"{where}: Add is not streamed yet when both sides read the same value ({step.a!r})"
            )
        shape = values[step.sources[0]].shape if values is not None else None
        if isinstance(step, Coded) and step.conv is not None:
            problems += [f"{where}: {p}" for p in _conv_problems(step, shape)]
        if shape is None:
            continue
        problems += [f"{where}: {p}" for p in _shape_problems(step, shape)]
    out_shape = values[net.output].shape if values is not None else ()
    if net.output == net.input.name:
        problems.append(f"the output {net.output!r} is the input")
    if len(out_shape) == 3 and out_shape[1] * out_shape[2] > 1:
        problems.append(f"the output has shape {out_shape}, more than one beat per image")
    return problems


def _one_beat(shape: tuple[int, ...]) -> bool:
    return len(shape) != 3 or shape[1] * shape[2] == 1


def _shape_problems(step, shape: tuple[int, ...]) -> list[str]:
    """What is not built in a step that reads a value of ``shape``."""
    out = []
    if isinstance(step, Coded) and step.conv is None and not _one_beat(shape):
        out.append(f"a linear layer on a {shape} value needs a Flatten first")
    if isinstance(step, MaxPool | SumPool) and len(shape) != 3:
        out.append(f"pools need a (C, H, W) value; got shape {shape}")
    if isinstance(step, MaxPool) and len(shape) == 3:
        p = masked_problem(step.kernel, step.stride, 0, shape[1], shape[2])
        if p:
            out.append(p)
    if len(shape) not in (1, 3) and isinstance(step, Pad | Slice | Reshape):
        out.append(f"its input has shape {shape}, neither (C, H, W) nor (N,)")
    elif isinstance(step, Pad):
        if any(a < 0 or b < 0 for a, b in step.widths):
            out.append(f"negative padding {step.widths} (a crop) is not built")
        elif any(a or b for a, b in step.widths[1:]):
            out.append(f"padding {step.widths} pads pixels; only channels are padded")
    elif isinstance(step, Slice):
        axes = [norm_index(t, n) for t, n in zip(step.index, shape, strict=True)]
        if any(not a or a.step < 1 for a in axes):
            out.append(f"slice {step.index} of a {shape} value keeps nothing or steps back")
    elif isinstance(step, Reshape):
        if not (_one_beat(shape) and _one_beat(tuple(step.shape))):
            out.append(
                f"reshaping {shape} to {tuple(step.shape)} is not a no-op on one beat per image"
            )
    return out


def _conv_problems(step: Coded, shape: tuple[int, ...] | None) -> list[str]:
    """What is not built in a convolution (the shape checks only when ``shape`` is known)."""
    conv = step.conv
    assert conv is not None
    out = []
    if conv.dilation != (1, 1):
        out.append(f"dilation {conv.dilation} is not 1")
    for what in ("kernel", "stride", "padding"):
        pair = getattr(conv, what)
        if pair[0] != pair[1]:
            out.append(f"{what} {pair} is not square")
    if shape is None:
        return out
    if len(shape) != 3:
        return [*out, f"a convolution needs a (C, H, W) value; got shape {shape}"]
    k, s, p = conv.kernel[0], conv.stride[0], conv.padding[0]
    if not out:
        problem = masked_problem(k, s, p, shape[1], shape[2])
        if problem:
            out.append(problem)
    if conv.in_channels != shape[0] or step.graph.num_inputs != shape[0] * k * k:
        out.append(
            f"its kernel reads {step.graph.num_inputs} values per window but a {k}x{k} window "
            f"of {shape[0]} channels has {shape[0] * k * k} (grouped convolutions are not built)"
        )
    return out


def emit_stream_network(
    net: Network,
    out_dir,
    *,
    name: str = "network",
    parallel: int = 1,
    pipeline_every: int | None = None,
    style: str = "assign",
    overwrite: bool = False,
) -> StreamNetworkInfo:
    """Write the streaming top ``name`` for ``net`` into ``out_dir`` (one ``.v`` per stage, the
    fork in ``NAME_fork.v`` when there is a branch, the top in ``NAME.v``, and
    ``network.json``); return what was written.

    ``pipeline_every`` registers every kernel (see :func:`fewops.hw.emit.emit_module`);
    ``style`` is the kernels' Verilog form ("always" simulates much faster in iverilog).
    Everything ``net`` needs that is not built is refused in one ValueError before any file is
    written; ``out_dir`` must be new or empty unless ``overwrite``.
    """
    check_name(name)
    every = check_pipeline_every(pipeline_every)
    problems = unsupported(net, parallel)
    if problems:
        raise ValueError("The network cannot be streamed: " + "; ".join(problems) + ".")
    b = Builder(net, name, every, style)
    stages = b.build()
    c0, h0, w0 = _input_shape(net)
    stages = size_fifos(stages, h0 * w0)
    last = b.refs[net.output]
    fout = last.fmt
    out_info = net.values()[net.output]
    out_bits = max(signed_bits(out_info.lo, out_info.hi), fout.bits + (not fout.signed))
    inp = net.input
    forked = any(len(rs) > 1 for rs in _readers(stages, last.node).values())
    fork = f"{name}_fork"
    top = _top(name, stages, c0 * inp.bits, last.node, fout, out_bits, fork)
    layers, latency, ii = _timing(stages, h0 * w0, last.node)
    modules = [s.text.module for s in stages if s.text.module]
    sources = [f"{m}.v" for m in modules] + ([f"{fork}.v"] if forked else []) + [f"{name}.v"]
    contract = {
        "module": name,
        "sources": sources,
        "input_shape": [c0, h0, w0],
        "input_bits": int(inp.bits),
        "input_scale": int(inp.frac),
        "input_signed": False,
        "output_bits": int(out_bits),
        "output_scale": int(-out_info.e),
        "output_divisor": int(out_info.divisor),
        "num_outputs": int(fout.values),
        "latency_cycles": int(latency),
        "latency_alone_cycles": int(_model(stages, h0 * w0, 1, last.node)[0]),
        "ii_cycles": int(ii),
        "lookahead_pixels": _lookahead(stages, h0 * w0, last.node),
        "parallel": int(parallel),
        "pipeline_every": every,
        "s_axis_tlast": "accepted and ignored",
        "m_axis_tlast": "high on every output beat (one beat per image)",
        "layers": layers,
    }
    path = prepare_dir(out_dir, overwrite)
    for s in stages:
        if s.text.module:
            (path / f"{s.text.module}.v").write_text(s.text.text)
    if forked:
        (path / f"{fork}.v").write_text(emit_fork(fork))
    (path / f"{name}.v").write_text(top)
    (path / "network.json").write_text(json.dumps(contract, indent=2) + "\n")
    return StreamNetworkInfo(name, path, tuple(sources), contract, tuple(stages), last.node)


def _input_shape(net: Network) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in net.input.shape)
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, 1)


def _lookahead(stages: list[Stage], pixels: int, last: int) -> int:
    """Pixels after an image's last one that its logits can wait for, at most (in a continuous
    stream, where the next images' pixels fill the windows' tails)."""
    most = needs(stages, pixels)[last]
    assert most is not None
    return int(most[0]) - (pixels - 1)


def _timing(stages: list[Stage], pixels: int, last: int) -> tuple[list[dict], int, int]:
    """Per-stage records with :class:`StreamTiming` of image 0, the latency from an image's
    first pixel to its logits, and the II, from :data:`MODEL_IMAGES` back-to-back images."""
    times, inp = stream_times(stages, pixels, MODEL_IMAGES)
    layers = []
    for i, s in enumerate(stages):
        ins = [inp if k < 0 else times[k] for k in s.srcs]
        per_in = len(ins[0]) // MODEL_IMAGES
        out = times[i]
        per_out = len(out) // MODEL_IMAGES
        timing = stage_timing(ins[0], out, per_in, per_out)
        rec = {
            "module": s.text.module,
            "kind": s.kind,
            "steps": list(s.steps),
            "srcs": list(s.srcs),
            "shape": list(s.shape),
            "beats_in": per_in,
            "beats_out": per_out,
            "values_out": s.text.out.values,
            "bits_out": s.text.out.bits,
            "signed_out": s.text.out.signed,
            "delay_cycles": s.text.delay,
            "timing": timing.to_dict(),
        }
        if s.text.kernel is not None:
            rec["kernel_latency"] = s.text.kernel.latency
            rec["fifo_depth"] = s.text.fifo_depth
        if s.spec is not None:
            rec["tail_slots"] = s.spec.tail
            rec["chain_bits"] = s.spec.chain_pixels * s.spec.pixel_bits
        if s.join is not None:
            rec["fork"] = s.join["fork"]
            for key in ("shifts", "fifo_depths", "fifo_occupancy", "deadlock_bounds"):
                rec[key] = list(s.join[key])
            rec["fifo_depth"] = s.text.fifo_depth
        layers.append(rec)
    out = times[last]
    if len(out) != MODEL_IMAGES:
        raise AssertionError("the output stream must carry one beat per image")
    # Input beat 0 of image 0 is taken at cycle 0, so its output cycle is the latency.
    return layers, int(out[0]), int(out[2] - out[1])


def _model(stages, pixels: int, images: int, last: int) -> np.ndarray:
    return stream_times(list(stages), pixels, images)[0][last]


def network_timing(info: StreamNetworkInfo, images: int) -> np.ndarray:
    """Modelled cycle of every output beat for ``images`` images streamed back to back with no
    stalls (input beat k at cycle k)."""
    return _model(info.stages, info.pixels, images, info.output_stage)


def _readers(stages: list[Stage], last: int) -> dict[int, list[tuple[int, int]]]:
    """For every stream (-1: the input), its readers in order: (stage, port); the top's output
    port is reader (-2, 0) of the last stage."""
    readers: dict[int, list[tuple[int, int]]] = {}
    for i, s in enumerate(stages):
        for port, k in enumerate(s.srcs):
            readers.setdefault(k, []).append((i, port))
    readers.setdefault(last, []).append((-2, 0))
    return readers


def _top(
    name: str,
    stages: list[Stage],
    in_bits: int,
    last: int,
    fout: Format,
    out_bits: int,
    fork: str,
) -> str:
    n = fout.values
    lines = [
        "`timescale 1ns/1ps",
        f"// Generated by fewops.hw.stream: streaming network top, {len(stages)} stages;",
        "// contract: fewops/hw/stream/network.py and network.json. s_axis_tlast is ignored.",
        f"module {name} (",
        "  input wire clk,",
        "  input wire rst_n,",
        f"  input wire [{in_bits - 1}:0] s_axis_tdata,",
        "  input wire s_axis_tvalid,",
        "  output wire s_axis_tready,",
        "  /* verilator lint_off UNUSED */",
        "  input wire s_axis_tlast,",
        "  /* verilator lint_on UNUSED */",
        f"  output wire [{n * out_bits - 1}:0] m_axis_tdata,",
        "  output wire m_axis_tvalid,",
        "  input wire m_axis_tready,",
        "  output wire m_axis_tlast",
        ");",
        f"  wire [{in_bits - 1}:0] d_in = s_axis_tdata;",
        "  wire v_in = s_axis_tvalid;",
        "  wire r_in;",
        "  assign s_axis_tready = r_in;",
    ]
    for i, s in enumerate(stages):
        ob = s.text.out.beat_bits
        lines += [f"  wire [{ob - 1}:0] d{i};", f"  wire v{i}, r{i};"]
    # edge (stage, port) -> the valid and ready wires it uses; a stream read twice is forked
    edge: dict[tuple[int, int], tuple[str, str]] = {}
    for k, rs in sorted(_readers(stages, last).items()):
        src = "_in" if k < 0 else str(k)
        v, r = f"v{src}", f"r{src}"
        if len(rs) == 1:
            edge[rs[0]] = (v, r)
            continue
        lines += [
            f"  wire [{len(rs) - 1}:0] fv{src}, fr{src};",
            f"  {fork} #(.N({len(rs)})) f{src} (.clk(clk), .rst_n(rst_n), .s_valid({v}), "
            f".s_ready({r}), .m_valid(fv{src}), .m_ready(fr{src}));",
        ]
        for e, reader in enumerate(rs):
            edge[reader] = (f"fv{src}[{e}]", f"fr{src}[{e}]")
    for i, s in enumerate(stages):
        ins = [("d_in" if k < 0 else f"d{k}", *edge[(i, p)]) for p, k in enumerate(s.srcs)]
        lines += _instance(i, s, ins)
    b = fout.bits
    for j in range(n):
        src = f"d{last}[{j * b} +: {b}]"
        ext = f"$signed({src})" if fout.signed else f"$signed({{1'b0, {src}}})"
        lines.append(f"  assign m_axis_tdata[{j * out_bits} +: {out_bits}] = {ext};")
    v_out, r_out = edge[(-2, 0)]
    lines += [
        f"  assign m_axis_tvalid = {v_out};",
        f"  assign {r_out} = m_axis_tready;",
        "  assign m_axis_tlast = 1'b1;",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def _instance(i: int, s: Stage, ins: list[tuple[str, str, str]]) -> list[str]:
    """Stage i's instance (or wiring) reading the streams ``ins``: (data, valid, ready)."""
    if s.kind == "wire":
        d, v, r = ins[0]
        bits = s.text.out.bits
        parts = [f"{bits}'d0" if k is None else f"{d}[{k * bits} +: {bits}]" for k in s.wiring]
        return [
            f"  assign d{i} = {{{', '.join(reversed(parts))}}};  // {', '.join(s.steps)}",
            f"  assign v{i} = {v};",
            f"  assign {r} = r{i};",
        ]
    ports = []
    if s.kind == "add":
        for p, (d, v, r) in enumerate(ins):
            ports += [
                f".s{p}_axis_tdata({d})",
                f".s{p}_axis_tvalid({v})",
                f".s{p}_axis_tready({r})",
            ]
    else:
        d, v, r = ins[0]
        ports += [f".s_axis_tdata({d})", f".s_axis_tvalid({v})", f".s_axis_tready({r})"]
    ports += [f".m_axis_tdata(d{i})", f".m_axis_tvalid(v{i})", f".m_axis_tready(r{i})"]
    if s.kind == "window":
        ports.append(".m_axis_tlast()")
    return [f"  {s.text.module} u{i} (.clk(clk), .rst_n(rst_n), {', '.join(ports)});"]
