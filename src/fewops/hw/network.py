"""A whole multilayer perceptron as one Verilog top module.

Each layer's shift-add graph becomes its own module (see :mod:`fewops.hw.emit`); the top module
wires them together with the bias add, ReLU and requantization of the integer network
(:class:`fewops.network.Network`, whose :func:`fewops.network.requantize` is the one rule), bit
for bit. For a layer with graph output ``acc``:

    t = acc * scale_m + bias_int
    hidden layer:  next = clip((t + 2**(r-1)) >> r, lo, hi)   (r > 0; t << -r when r <= 0)
                   lo, hi = 0, 2**act_bits - 1 after a ReLU, else the signed act_bits range
                   (or the calibrated clip range of the Requantize step, e.g. a ReLU6 cap)
    last layer:    t itself (the logits)

``>>`` is an arithmetic shift (floor), as in numpy. The network's inputs are the first layer's
activations: unsigned ``act_bits``-bit integers by default (the simulator's ``quantize_input``),
signed ones when ``input_signed`` is set. With ``pipeline_every`` each layer module is pipelined
(its registers as in :func:`fewops.hw.write_verilog`) and the network's latency is the sum of the
layers' latencies; bias, ReLU and requantization stay combinational in front of the next layer.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewops.graph.graph import Graph
from fewops.graph.widths import infer_ranges, signed_width
from fewops.hw.emit import (
    ModuleInfo,
    check_name,
    check_pipeline_every,
    emit_module,
    literal,
    prepare_dir,
    shift_add_product,
)
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import SimResult, run_iverilog, run_verilator
from fewops.network.network import Network
from fewops.network.steps import Coded, Flatten, Requantize, act_range, requantize
from fewops.sim.evaluate import evaluate

MAX_ACT_BITS = 32


@dataclass(frozen=True, eq=False)
class HwLayer:
    """One fully connected layer: its graph and the integer arithmetic that follows it.

    ``bias_int`` has one integer per output (or is a scalar); ``requant_shift`` is r above;
    ``relu`` picks the unsigned activation range. The last layer of a network ignores
    ``requant_shift`` and ``relu`` and outputs t.
    """

    graph: Graph
    scale_m: int = 1
    bias_int: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    requant_shift: int = 0
    relu: bool = True
    name: str = ""
    clip: tuple[int, int] | None = None  # the requantized range; None: the act_bits range

    def clip_range(self, bits: int) -> tuple[int, int]:
        return self.clip if self.clip is not None else act_range(bits, signed=not self.relu)

    def bias(self) -> list[int]:
        b = np.asarray(self.bias_int)
        n = self.graph.num_outputs
        if b.size == 0:
            return [0] * n
        if b.ndim == 0:
            return [int(b)] * n
        if b.shape != (n,):
            raise ValueError(
                f"Layer {self.name or '?'} has {n} outputs but a bias of shape {b.shape}."
            )
        return [int(v) for v in b.tolist()]


@dataclass(frozen=True, eq=False)
class HwNetwork:
    """Layers in order, the activation width, and how inputs and outputs scale.

    Inputs are ``act_bits``-bit integers (unsigned unless ``input_signed``); an output integer
    t stands for ``t * 2**-output_scale``.
    """

    layers: tuple[HwLayer, ...]
    act_bits: int = 8
    input_signed: bool = False
    output_scale: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("A network needs at least one layer.")
        if not 2 <= int(self.act_bits) <= MAX_ACT_BITS:
            raise ValueError(
                f"Activation width must be between 2 and {MAX_ACT_BITS} bits; got {self.act_bits}."
            )
        for i, (prev, layer) in enumerate(zip(self.layers[:-1], self.layers[1:], strict=True)):
            if prev.graph.num_outputs != layer.graph.num_inputs:
                raise ValueError(
                    f"Layer {i} has {prev.graph.num_outputs} outputs but layer {i + 1} has "
                    f"{layer.graph.num_inputs} inputs."
                )

    @property
    def num_inputs(self) -> int:
        return self.layers[0].graph.num_inputs

    @property
    def num_outputs(self) -> int:
        return self.layers[-1].graph.num_outputs

    def input_range(self) -> tuple[int, int]:
        return _act_range(self.act_bits, signed=self.input_signed)


def _act_range(bits: int, signed: bool) -> tuple[int, int]:
    return act_range(bits, signed)


MLP_STEPS = "fully connected coded layers, their requantization (ReLU or not) and Flatten"


def from_network(net: Network) -> HwNetwork:
    """An :class:`HwNetwork` from a calibrated :class:`fewops.network.Network` that is an MLP:
    Input, Flatten, then coded Linear layers each followed by a Requantize, the last one not.
    Any other step (a convolution, pooling, a residual sum) is refused with its name."""
    values = net.values()
    layers: list[HwLayer] = []
    pending: Coded | None = None
    for step in net.steps[1:]:
        if isinstance(step, Flatten) and pending is None:
            continue
        if isinstance(step, Coded) and step.conv is None and pending is None:
            pending = step
            continue
        if isinstance(step, Requantize) and pending is not None and step.src == pending.name:
            shift = -values[pending.name].e - int(step.frac)  # type: ignore[arg-type]
            layers.append(_hw_layer(pending, shift, step))
            pending = None
            continue
        kind = "convolution" if isinstance(step, Coded) else type(step).__name__
        raise ValueError(
            f"Step {step.name!r} ({kind}) is not supported by the MLP top: it covers {MLP_STEPS} "
            "(export a CNN with --stream)."
        )
    if pending is None or pending.name != net.output:
        raise ValueError(f"The MLP top needs a coded layer as the output; got {net.output!r}.")
    layers.append(_hw_layer(pending, 0, None))
    return HwNetwork(
        layers=tuple(layers),
        act_bits=int(net.act_bits),
        input_signed=False,
        output_scale=-int(values[net.output].e),
    )


def _hw_layer(step: Coded, shift: int, rounding: Requantize | None) -> HwLayer:
    clip = None if rounding is None else (int(rounding.lo), int(rounding.hi))  # type: ignore[arg-type]
    return HwLayer(
        graph=step.graph,
        scale_m=int(step.scale_m),
        bias_int=step.bias_array(),
        requant_shift=int(shift),
        relu=bool(rounding is not None and rounding.lo is not None and rounding.lo >= 0),
        name=step.name,
        clip=clip,
    )


def simulate_network(net: HwNetwork, x) -> np.ndarray:
    """Integer outputs of ``net`` for integer inputs ``x`` (batch, inputs): the rule above."""
    h = np.asarray(x)
    if h.ndim != 2 or h.shape[1] != net.num_inputs:
        raise ValueError(f"Inputs must have shape (batch, {net.num_inputs}); got {h.shape}.")
    lo_in, hi_in = net.input_range()
    if h.size and (int(h.min()) < lo_in or int(h.max()) > hi_in):
        raise ValueError(
            f"Network inputs must lie in [{lo_in}, {hi_in}]; got [{int(h.min())}, {int(h.max())}]."
        )
    h = h.astype(np.int64)
    for i, layer in enumerate(net.layers):
        acc = evaluate(layer.graph, h).astype(object)
        t = acc * int(layer.scale_m) + np.asarray(layer.bias(), dtype=object)[None, :]
        if i == len(net.layers) - 1:
            return _narrow(t)
        lo, hi = layer.clip_range(net.act_bits)
        h = requantize(t, int(layer.requant_shift), lo, hi).astype(np.int64)
    raise AssertionError("unreachable")


def _narrow(values: np.ndarray) -> np.ndarray:
    if values.size == 0 or max(abs(int(v)) for v in values.flat) < 2**62:
        return values.astype(np.int64)
    return values


def _port(bits: int, signed: bool) -> int:
    """Signed port width holding an activation of ``bits`` bits (one more when unsigned)."""
    return bits if signed else bits + 1


def emit_network(
    net: HwNetwork, name: str = "mlp", pipeline_every: int | None = None, style: str = "assign"
) -> tuple[list[tuple[str, str]], ModuleInfo]:
    """Verilog of every layer module and of the top module ``name``.

    Returns ``[(module name, text), ...]`` (layers first, top last) and the top's info.
    ``style`` is the layer modules' form (see :func:`fewops.hw.emit.emit_module`).
    """
    check_name(name)
    check_pipeline_every(pipeline_every)
    bits = int(net.act_bits)
    modules: list[tuple[str, str]] = []
    body: list[str] = []
    decl: list[str] = []
    signed = net.input_signed
    lo, hi = net.input_range()
    k0 = net.num_inputs
    latency = 0
    clocked = pipeline_every is not None
    # Layer 0 input: each act_bits-bit input, sign- or zero-extended to the layer's port width.
    pw = _port(bits, signed)
    decl.append(f"  wire [{k0 * pw - 1}:0] a0;")
    if signed:
        body.append("  assign a0 = x;")
    else:
        body.extend(
            f"  assign a0[{i * pw} +: {pw}] = {{1'b0, x[{i * bits} +: {bits}]}};" for i in range(k0)
        )
    last = len(net.layers) - 1
    out_width = 0
    t_names: list[str] = []
    for li, layer in enumerate(net.layers):
        g = layer.graph
        sub = f"{name}_layer{li}"
        text, info = emit_module(g, sub, pw, pipeline_every, input_range=(lo, hi), style=style)
        modules.append((sub, text))
        latency += info.latency
        ow = info.output_width
        decl.append(f"  wire [{g.num_outputs * ow - 1}:0] acc{li};")
        clk = ".clk(clk), " if info.latency else ""
        body.append(f"  {sub} u{li} ({clk}.x(a{li}), .y(acc{li}));")
        acc_lo, acc_hi = infer_ranges(g, lo, hi)
        outs = g.output_nodes
        m = int(layer.scale_m)
        bias = layer.bias()
        t_lo, t_hi = [], []
        for j, o in enumerate(outs.tolist()):
            p, q = int(acc_lo[o]) * m, int(acc_hi[o]) * m
            t_lo.append(min(p, q) + bias[j])
            t_hi.append(max(p, q) + bias[j])
        tw = _width(min(t_lo), max(t_hi))
        for j in range(g.num_outputs):
            b = "" if bias[j] == 0 else (f" + {literal(bias[j])}")
            # the scale as shifts and adds: a constant multiplier would take a DSP block
            prod = shift_add_product(f"$signed(acc{li}[{j * ow} +: {ow}])", m)
            decl.append(f"  wire signed [{tw - 1}:0] t{li}_{j};")
            body.append(f"  assign t{li}_{j} = {prod}{b};")
        if li == last:
            out_width = tw
            t_names = [f"t{li}_{j}" for j in range(g.num_outputs)]
            break
        # Requantization: round, shift, clip to the next activation range.
        r = int(layer.requant_shift)
        nlo, nhi = layer.clip_range(bits)
        npw = _port(bits, signed=nlo < 0)
        t_min, t_max = min(t_lo), max(t_hi)
        if r > 0:
            half = 1 << (r - 1)
            uw = _width(t_min + half, t_max + half)
            qw = _width((t_min + half) >> r, (t_max + half) >> r)
        else:
            uw = tw
            qw = _width(t_min << -r, t_max << -r)
        decl.append(f"  wire [{g.num_outputs * npw - 1}:0] a{li + 1};")
        for j in range(g.num_outputs):
            t = f"t{li}_{j}"
            if r > 0:
                decl.append(f"  wire signed [{uw - 1}:0] u{li}_{j} = {t} + {literal(half)};")
                decl.append(f"  wire signed [{qw - 1}:0] q{li}_{j} = u{li}_{j} >>> {r};")
            elif r < 0:
                decl.append(f"  wire signed [{qw - 1}:0] q{li}_{j} = $signed({{{t}, {-r}'d0}});")
            else:
                decl.append(f"  wire signed [{qw - 1}:0] q{li}_{j} = {t};")
            qn = f"q{li}_{j}"
            clip = (
                f"({qn} < {literal(nlo)}) ? {literal(nlo)} : "
                f"({qn} > {literal(nhi)}) ? {literal(nhi)} : {qn}"
            )
            decl.append(f"  wire signed [{npw - 1}:0] h{li}_{j} = {clip};")
            body.append(f"  assign a{li + 1}[{j * npw} +: {npw}] = h{li}_{j};")
        signed = nlo < 0
        pw = npw
        lo, hi = nlo, nhi
    n_out = net.num_outputs
    body.extend(f"  assign y[{j * out_width} +: {out_width}] = {t};" for j, t in enumerate(t_names))
    ports = "input wire clk, " if clocked and latency else ""
    shapes = " -> ".join(
        [str(net.num_inputs)] + [str(layer.graph.num_outputs) for layer in net.layers]
    )
    kind = "signed" if net.input_signed else "unsigned"
    top = [
        "`timescale 1ns/1ps",
        f"// Generated by fewops.hw: MLP {shapes}, {kind} {bits}-bit inputs, latency {latency}.",
        f"// y: {n_out} signed outputs of {out_width} bits; real output = y * "
        f"2**-{net.output_scale}.",
        f"module {name} ({ports}input wire [{k0 * bits - 1}:0] x, "
        f"output wire [{n_out * out_width - 1}:0] y);",
        *decl,
        *body,
        "endmodule",
        "",
    ]
    modules.append((name, "\n".join(top)))
    info = ModuleInfo(
        module=name,
        inputs=k0,
        input_width=bits,
        outputs=n_out,
        output_width=out_width,
        latency=latency,
        scale=int(net.output_scale),
        input_signed=bool(net.input_signed),
    )
    return modules, info


def _width(lo: int, hi: int) -> int:
    return int(signed_width(np.array([lo], dtype=object), np.array([hi], dtype=object))[0])


def write_network_verilog(
    net: HwNetwork,
    out_dir,
    name: str = "mlp",
    pipeline_every: int | None = None,
    overwrite: bool = False,
    *,
    style: str = "assign",
) -> tuple[Path, Path]:
    """Write the whole network into one file ``NAME.v`` (layer modules and top) and NAME.json."""
    modules, info = emit_network(net, name, pipeline_every, style)
    path = prepare_dir(out_dir, overwrite)
    v_path = path / f"{name}.v"
    json_path = path / f"{name}.json"
    v_path.write_text("\n".join(text for _, text in modules))
    sidecar = info.to_dict()
    sidecar["layers"] = [
        {"module": m, "inputs": layer.graph.num_inputs, "outputs": layer.graph.num_outputs}
        for (m, _), layer in zip(modules[:-1], net.layers, strict=True)
    ]
    json_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return v_path, json_path


def simulate_network_verilog(
    net: HwNetwork,
    vectors=None,
    *,
    expected=None,
    count: int = 1000,
    seed: int = 0,
    pipeline_every: int | None = None,
    workdir=None,
    simulator: str = "iverilog",
    name: str = "mlp",
    style: str = "always",
) -> SimResult:
    """Simulate the exported network on ``vectors`` against ``expected`` outputs.

    ``expected`` defaults to :func:`simulate_network`; pass the integer simulator's own outputs
    (``Network.run``) to check against it directly.
    """
    if vectors is None:
        lo, hi = net.input_range()
        vectors = make_vectors(net.num_inputs, count, lo=lo, hi=hi, seed=seed)
    vectors = np.asarray(vectors, dtype=np.int64)
    if expected is None:
        expected = simulate_network(net, vectors)
    with tempfile.TemporaryDirectory(prefix="fewops_net_") as tmp:
        out = Path(workdir) if workdir is not None else Path(tmp)
        v_path, json_path = write_network_verilog(net, out, name, pipeline_every, style=style)
        info = ModuleInfo.from_json(json_path)
        tb = write_testbench(info, vectors, expected, out)
        run = run_iverilog if simulator == "iverilog" else run_verilator
        return run([v_path, tb], tb.stem, out)
