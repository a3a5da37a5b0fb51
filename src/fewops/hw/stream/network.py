"""A whole coded CNN as one streaming Verilog top, built from a :class:`fewops.network.Network`.

Pixels stream in, one per beat; each image's logits come out in one beat, bit for bit what
:meth:`Network.run` returns. The steps become a chain of stages (:mod:`fewops.hw.stream.stages`,
:mod:`fewops.hw.stream.masked`), each with registered outputs and its own valid/ready handshake:

- Coded convolution: masked window generator (no cycle spent on padding) -> ONE shift-add kernel
  reused at every output position -> ``* scale_m + bias_int`` per channel (and the Requantize
  that follows, fused) -> FIFO.
- Requantize: fused into the stage before it when that stage computes per-value arithmetic,
  else a stage of its own; exactly :func:`fewops.network.steps.requantize`.
- MaxPool: window generator (K = k, S = s, P = 0) -> max per channel.
- Flatten: a gather into one vector per image in torch's C-major order (no hardware when the
  value is already one beat per image); Coded linear: one fully parallel kernel per image.
- SumPool: per-channel sums, one beat per image.

Ports of the top (the contract outside benches rely on): ``clk``, ``rst_n`` (active low,
synchronous), ``s_axis_tdata`` (one pixel per beat, row-major over H, W; channel c unsigned at
``[c*input_bits +: input_bits]``, the integers of :meth:`Network.quantize_input`),
``s_axis_tvalid``, ``s_axis_tready``, ``s_axis_tlast`` (accepted and ignored: the top counts
pixels), ``m_axis_tdata`` (logit j two's complement at ``[j*output_bits +: output_bits]``),
``m_axis_tvalid``, ``m_axis_tready`` and ``m_axis_tlast`` (high on every output beat, which is
an image's last). ``network.json`` beside the Verilog records the contract and the exact cycle
model (:mod:`fewops.hw.stream.cycles`): with no stalls an image takes H*W cycles (II), and its
logits come ``latency_cycles`` after its first pixel.

Not built: residual networks (Add, Pad, Slice steps), several kernel copies per layer
(``parallel`` > 1: II is bound by the one-pixel-per-beat input, H*W cycles, which one kernel
already reaches), dilation, non-square geometry; every such step is listed in one ValueError
before any file is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewops.hw.emit import check_name, check_pipeline_every, check_supported, prepare_dir
from fewops.hw.stream.cycles import collect_times, masked_window_times, stage_timing
from fewops.hw.stream.masked import MaskedSpec, emit_masked_window, masked_problem
from fewops.hw.stream.pointwise import Affine, Op, Round, signed_bits
from fewops.hw.stream.stages import (
    Format,
    StageText,
    emit_gather,
    emit_kernel_stage,
    emit_sum_pool,
    max_stage,
    pointwise_stage,
)
from fewops.network.network import Network
from fewops.network.steps import (
    STEP_TYPES,
    Coded,
    Flatten,
    MaxPool,
    Requantize,
    SumPool,
)

# The cycle model streams four images back to back and reads the II from the second to the
# third: the last image of a stream finishes sooner (its last windows are flushed by bubbles
# instead of waiting for the next image's pixels), so it is not the steady state.
MODEL_IMAGES = 4
BUILT = (Coded, Requantize, MaxPool, SumPool, Flatten)


@dataclass(frozen=True)
class Stage:
    """One stage of the chain: its emitted text and how its beats are timed.

    ``kind``: "window" (``spec`` set), "kernel", "map", "gather" or "sumpool"; ``steps``: the
    network steps it implements; ``shape``: the value shape after it.
    """

    kind: str
    steps: tuple[str, ...]
    text: StageText
    shape: tuple[int, ...]
    spec: MaskedSpec | None = None

    def times(self, arrivals: np.ndarray, in_per_image: int) -> np.ndarray:
        if self.spec is not None:
            return masked_window_times(self.spec, arrivals)
        if self.kind in ("gather", "sumpool"):
            return collect_times(arrivals, in_per_image, self.text.delay)
        return arrivals + self.text.delay


@dataclass(frozen=True)
class StreamNetworkInfo:
    """What :func:`emit_stream_network` wrote: the files, the contract and the cycle model."""

    module: str
    out_dir: Path
    sources: tuple[str, ...]
    contract: dict = field(repr=False)
    stages: tuple[Stage, ...] = field(repr=False)

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
    prev = net.steps[0].name
    for step in net.steps[1:]:
        where = f"step {step.name!r} ({type(step).__name__})"
        if not isinstance(step, BUILT):
            kind = "is not streamed yet" if isinstance(step, STEP_TYPES) else "is an unknown step"
            problems.append(f"{where}: {type(step).__name__} {kind}")
            prev = step.name
            continue
        if step.sources != (prev,) or readers.get(prev, 0) > 1:
            problems.append(
                f"{where}: reads {step.sources}, not only the step before it (a branch)"
            )
        prev = step.name
        if isinstance(step, Coded):
            try:
                check_supported(step.graph)
            except ValueError as exc:
                problems.append(f"{where}: {str(exc).rstrip('.')}")
        shape = values[step.src].shape if values is not None else None
        if isinstance(step, Coded) and step.conv is not None:
            problems += [f"{where}: {p}" for p in _conv_problems(step, shape)]
        if shape is None:
            continue
        spatial = len(shape) == 3 and shape[1] * shape[2] > 1
        if isinstance(step, Coded) and step.conv is None and spatial:
            problems.append(f"{where}: a linear layer on a {shape} value needs a Flatten first")
        if isinstance(step, MaxPool | SumPool) and len(shape) != 3:
            problems.append(f"{where}: pools need a (C, H, W) value; got shape {shape}")
        if isinstance(step, MaxPool) and len(shape) == 3:
            p = masked_problem(step.kernel, step.stride, 0, shape[1], shape[2])
            if p:
                problems.append(f"{where}: {p}")
    if net.output != prev:
        problems.append(f"the output {net.output!r} is not the last step ({prev!r})")
    out_shape = values[net.output].shape if values is not None else ()
    if len(out_shape) == 3 and out_shape[1] * out_shape[2] > 1:
        problems.append(f"the output has shape {out_shape}, more than one beat per image")
    return problems


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


class _Builder:
    """Turns the steps into stages; the last per-value stage stays open for a Requantize."""

    def __init__(self, net: Network, name: str, pipeline_every: int | None, style: str):
        self.net, self.name, self.every, self.style = net, name, pipeline_every, style
        self.values = net.values()
        self.stages: list[Stage] = []
        inp = net.input
        shape = tuple(inp.shape) if len(inp.shape) == 3 else (inp.shape[0], 1, 1)
        self.shape: tuple[int, ...] = shape
        self.fmt = Format(shape[0], 0, 2**inp.bits - 1)
        self.open: dict | None = None  # a kernel or map stage still taking ops

    def module(self, kind: str) -> str:
        return f"{self.name}_s{len(self.stages) + (self.open is not None)}_{kind}"

    def close(self) -> None:
        if self.open is None:
            return
        o, self.open = self.open, None
        if o["kind"] == "kernel":
            text = emit_kernel_stage(
                o["module"],
                o["graph"],
                o["fin"],
                o["ops"],
                input_range=o["range"],
                pipeline_every=self.every,
                style=self.style,
                comment=o["comment"],
            )
        else:
            text = pointwise_stage(o["module"], o["fin"], o["ops"])
        self.add(o["kind"], o["steps"], text, o["shape"])

    def add(self, kind, steps, text: StageText, shape, spec=None) -> None:
        self.stages.append(Stage(kind, tuple(steps), text, tuple(shape), spec))
        self.fmt = text.out
        self.shape = tuple(shape)

    def window(self, steps, k: int, s: int, p: int) -> MaskedSpec:
        c, h, w = self.shape
        spec = MaskedSpec(h, w, c, k, s, p, self.fmt.bits)
        module = self.module("window")
        fout = Format(spec.window_size, min(self.fmt.lo, 0), max(self.fmt.hi, 0))
        # Zero (padding, masks) fits the stream's own format: the window copies raw bits.
        assert (fout.bits, fout.signed) == (self.fmt.bits, self.fmt.signed)
        text = StageText(module, emit_masked_window(spec, module), fout, 1)
        self.add("window", steps, text, (c * k * k, spec.out_height, spec.out_width), spec)
        return spec

    def step(self, step) -> None:
        e_in = self.values[step.sources[0]].e if step.sources else 0
        if isinstance(step, Requantize):
            assert step.frac is not None and step.lo is not None and step.hi is not None
            op = Round(-e_in - step.frac, step.lo, step.hi)
            if self.open is None:
                self.open = dict(
                    kind="map",
                    module=self.module("requant"),
                    fin=self.fmt,
                    ops=[],
                    steps=[],
                    shape=self.shape,
                )
            self.open["ops"].append(op)
            self.open["steps"].append(step.name)
            return
        self.close()
        if isinstance(step, Coded):
            self.coded(step)
        elif isinstance(step, MaxPool):
            spec = self.window([step.name], step.kernel, step.stride, 0)
            c = self.shape[0] // (spec.kernel * spec.kernel)
            text = max_stage(self.module("max"), self.fmt, c, spec.kernel * spec.kernel)
            self.add("map", [step.name], text, (c, spec.out_height, spec.out_width))
        elif isinstance(step, SumPool):
            c, h, w = self.shape
            text = emit_sum_pool(self.module("sumpool"), self.fmt, c, h * w)
            self.add("sumpool", [step.name], text, (c, 1, 1))
        elif isinstance(step, Flatten):
            c, h, w = self.shape if len(self.shape) == 3 else (self.shape[0], 1, 1)
            if h * w > 1:
                text = emit_gather(self.module("gather"), self.fmt, c, h * w)
                self.add("gather", [step.name], text, (c * h * w, 1, 1))
            else:
                self.shape = (c, 1, 1)

    def coded(self, step: Coded) -> None:
        bias = tuple(int(b) for b in (step.bias_int or ()))
        ops: list[Op] = [Affine(int(step.scale_m), bias)]
        shape = self.values[step.name].shape
        if step.conv is not None:
            k, s, p = step.conv.kernel[0], step.conv.stride[0], step.conv.padding[0]
            self.window([step.name], k, s, p)  # its format already includes the zeros
            comment = f"conv {k}x{k}/{s} pad {p} kernel"
        else:
            shape = (shape[0], 1, 1)
            comment = "dense kernel"
        self.open = dict(
            kind="kernel",
            module=self.module("kernel"),
            graph=step.graph,
            fin=self.fmt,
            ops=ops,
            range=(self.fmt.lo, self.fmt.hi),
            steps=[step.name],
            shape=shape,
            comment=comment,
        )


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
    top in ``NAME.v``, and ``network.json``); return what was written.

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
    b = _Builder(net, name, every, style)
    for step in net.steps[1:]:
        b.step(step)
    b.close()
    stages = b.stages
    out_info = net.values()[net.output]
    out_bits = max(signed_bits(out_info.lo, out_info.hi), b.fmt.bits + (not b.fmt.signed))
    inp = net.input
    c0, h0, w0 = _input_shape(net)
    top = _top(name, stages, c0 * inp.bits, b.fmt, out_bits)
    layers, latency, ii = _timing(stages, h0 * w0)
    sources = [f"{s.text.module}.v" for s in stages] + [f"{name}.v"]
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
        "num_outputs": int(b.fmt.values),
        "latency_cycles": int(latency),
        "latency_alone_cycles": _alone(stages, h0 * w0),
        "ii_cycles": int(ii),
        "parallel": int(parallel),
        "pipeline_every": every,
        "s_axis_tlast": "accepted and ignored",
        "m_axis_tlast": "high on every output beat (one beat per image)",
        "layers": layers,
    }
    path = prepare_dir(out_dir, overwrite)
    for s in stages:
        (path / f"{s.text.module}.v").write_text(s.text.text)
    (path / f"{name}.v").write_text(top)
    (path / "network.json").write_text(json.dumps(contract, indent=2) + "\n")
    return StreamNetworkInfo(name, path, tuple(sources), contract, tuple(stages))


def _input_shape(net: Network) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in net.input.shape)
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, 1)


def _timing(stages: list[Stage], pixels: int) -> tuple[list[dict], int, int]:
    """Per-stage records with :class:`StreamTiming` of image 0, the latency from an image's
    first pixel to its logits, and the II, from :data:`MODEL_IMAGES` back-to-back images."""
    arrivals = np.arange(MODEL_IMAGES * pixels, dtype=np.int64)
    per_in = pixels
    layers = []
    for s in stages:
        out = s.times(arrivals, per_in)
        per_out = len(out) // MODEL_IMAGES
        timing = stage_timing(arrivals, out, per_in, per_out)
        rec = {
            "module": s.text.module,
            "kind": s.kind,
            "steps": list(s.steps),
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
        layers.append(rec)
        arrivals, per_in = out, per_out
    if per_in != 1:
        raise AssertionError("the output stream must carry one beat per image")
    # Input beat 0 of image 0 is taken at cycle 0, so its output cycle is the latency.
    return layers, int(arrivals[0]), int(arrivals[2] - arrivals[1])


def _alone(stages: list[Stage], pixels: int) -> int:
    """Latency of one image with nothing streamed after it."""
    return int(_model(stages, pixels, 1)[0])


def _model(stages, pixels: int, images: int) -> np.ndarray:
    arrivals = np.arange(images * pixels, dtype=np.int64)
    per_in = pixels
    for s in stages:
        out = s.times(arrivals, per_in)
        per_in = len(out) // images
        arrivals = out
    return arrivals


def network_timing(info: StreamNetworkInfo, images: int) -> np.ndarray:
    """Modelled cycle of every output beat for ``images`` images streamed back to back with no
    stalls (input beat k at cycle k)."""
    return _model(info.stages, info.pixels, images)


def _top(name: str, stages: list[Stage], in_bits: int, fout: Format, out_bits: int) -> str:
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
        f"  wire [{in_bits - 1}:0] d0 = s_axis_tdata;",
        "  wire v0 = s_axis_tvalid;",
        "  wire r0;",
        "  assign s_axis_tready = r0;",
    ]
    for i, s in enumerate(stages):
        ob = s.text.out.beat_bits
        lines += [f"  wire [{ob - 1}:0] d{i + 1};", f"  wire v{i + 1}, r{i + 1};"]
        tlast = ", .m_axis_tlast()" if s.kind == "window" else ""
        lines.append(
            f"  {s.text.module} u{i} (.clk(clk), .rst_n(rst_n), .s_axis_tdata(d{i}), "
            f".s_axis_tvalid(v{i}), .s_axis_tready(r{i}), .m_axis_tdata(d{i + 1}), "
            f".m_axis_tvalid(v{i + 1}), .m_axis_tready(r{i + 1}){tlast});"
        )
    last = len(stages)
    b = fout.bits
    for j in range(n):
        src = f"d{last}[{j * b} +: {b}]"
        ext = f"$signed({src})" if fout.signed else f"$signed({{1'b0, {src}}})"
        lines.append(f"  assign m_axis_tdata[{j * out_bits} +: {out_bits}] = {ext};")
    lines += [
        f"  assign m_axis_tvalid = v{last};",
        f"  assign r{last} = m_axis_tready;",
        "  assign m_axis_tlast = 1'b1;",
        "endmodule",
        "",
    ]
    return "\n".join(lines)
