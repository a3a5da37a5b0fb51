"""A streamed convolution layer: the window generator feeding ONE shift-add kernel.

The kernel is the shift-add graph of the layer in im2col form (inputs: the ``C*K*K`` window values
in :mod:`fewops.hw.stream.window`'s element order, i.e. torch ``unfold`` order; outputs: the
output channels), emitted by :func:`fewops.hw.emit.emit_module` and reused at every output
position: one window enters it per cycle. Its outputs go into a small FIFO of ``L + 2`` entries
for a kernel of latency L (``pipeline_every``); a window enters the kernel only while the FIFO
has room for it and for every window still inside the kernel, so the emitted kernel needs no
stall input and back-pressure loses nothing. The FIFO's head is the layer's ``m_axis`` port:
output channel j signed at ``m_axis_tdata[j*OW +: OW]``, an integer y standing for
``y * 2**-scale`` of the input scale (:class:`fewops.hw.emit.ModuleInfo`), ``m_axis_tlast`` on the
last position of an image. Neither ready nor data paths run combinationally from ``m_axis_tready``
to ``s_axis_tready``: the window generator sees only the FIFO's registered fill level.

One kernel copy handles one output position per cycle (``parallel`` = 1); several copies per
layer are not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from fewops.graph.graph import Graph
from fewops.hw.emit import ModuleInfo, check_name, emit_module
from fewops.hw.stream.cycles import StreamTiming, conv_timing
from fewops.hw.stream.window import WindowSpec, counter_bits, emit_window


@dataclass(frozen=True)
class ConvInfo:
    """What a streamed conv layer is: its geometry, kernel module and timing."""

    module: str
    spec: WindowSpec
    kernel: ModuleInfo
    fifo_depth: int
    timing: StreamTiming

    @property
    def output_bits(self) -> int:
        return self.kernel.output_width

    @property
    def out_channels(self) -> int:
        return self.kernel.outputs


def emit_conv(
    graph: Graph,
    spec: WindowSpec,
    name: str = "conv",
    pipeline_every: int | None = None,
    *,
    style: str = "assign",
) -> tuple[str, ConvInfo]:
    """Verilog of the layer ``name`` (plus ``NAME_window`` and ``NAME_kernel``) and its info.

    ``graph`` must have ``spec.window_size`` inputs; ``pipeline_every`` and ``style`` go to the
    kernel's :func:`fewops.hw.emit.emit_module`.
    """
    check_name(name)
    if not isinstance(graph, Graph):
        raise TypeError(f"emit_conv needs a fewops Graph; got {type(graph).__name__}.")
    if graph.num_inputs != spec.window_size:
        raise ValueError(
            f"The kernel graph has {graph.num_inputs} inputs but a {spec.kernel}x{spec.kernel} "
            f"window of {spec.channels} channels has {spec.window_size} values."
        )
    kernel_text, kinfo = emit_module(
        graph, f"{name}_kernel", spec.input_bits, pipeline_every, style=style
    )
    window_text = emit_window(spec, f"{name}_window")
    lat = kinfo.latency
    depth = lat + 2
    ab, nb = counter_bits(depth), counter_bits(depth + 1)
    yw = kinfo.outputs * kinfo.output_width
    ww = spec.window_bits
    clk = ".clk(clk), " if lat else ""
    lines = [
        f"// Streamed conv layer: {spec.out_height}x{spec.out_width} positions per image, "
        f"kernel latency {lat}, output FIFO of {depth} entries.",
        f"module {name} (",
        "  input wire clk,",
        "  input wire rst_n,",
        f"  input wire [{spec.pixel_bits - 1}:0] s_axis_tdata,",
        "  input wire s_axis_tvalid,",
        "  output wire s_axis_tready,",
        f"  output wire [{yw - 1}:0] m_axis_tdata,",
        "  output wire m_axis_tvalid,",
        "  input wire m_axis_tready,",
        "  output wire m_axis_tlast",
        ");",
        f"  wire [{ww - 1}:0] win;",
        "  wire win_valid, win_last;",
        f"  wire [{yw - 1}:0] y;",
        f"  reg [{nb - 1}:0] count, inflight;",
        f"  reg [{ab - 1}:0] wr, rd;",
        f"  reg [{yw}:0] fifo [0:{depth - 1}];  // {{tlast, data}}",
        f"  wire win_ready = count + inflight < {nb + 1}'d{depth};",
        "  wire take = win_valid && win_ready;",
        f"  {name}_window u_window (.clk(clk), .rst_n(rst_n), .s_axis_tdata(s_axis_tdata),",
        "    .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready), .m_axis_tdata(win),",
        "    .m_axis_tvalid(win_valid), .m_axis_tready(win_ready), .m_axis_tlast(win_last));",
        f"  {name}_kernel u_kernel ({clk}.x(win), .y(y));",
    ]
    if lat:
        lines += [
            f"  reg [{lat}:1] vd, ld;  // valid and tlast beside the kernel's {lat} stages",
            f"  wire done = vd[{lat}];",
            f"  wire done_last = ld[{lat}];",
        ]
    else:
        lines += ["  wire done = take;", "  wire done_last = win_last;"]
    shift = "take" if lat == 1 else f"{{vd[{lat - 1}:1], take}}"
    shift_last = "win_last" if lat == 1 else f"{{ld[{lat - 1}:1], win_last}}"
    lines += [
        "  wire pop = m_axis_tvalid && m_axis_tready;",
        f"  assign m_axis_tvalid = count != {nb}'d0;",
        "  assign {m_axis_tlast, m_axis_tdata} = fifo[rd];",
        "  always @(posedge clk) begin",
        "    if (!rst_n) begin",
        f"      count <= {nb}'d0;",
        f"      inflight <= {nb}'d0;",
        f"      wr <= {ab}'d0;",
        f"      rd <= {ab}'d0;",
    ]
    if lat:
        lines.append(f"      vd <= {lat}'d0;")
    lines += ["    end else begin"]
    if lat:
        lines += [
            f"      vd <= {shift};",
            f"      ld <= {shift_last};",
            f"      inflight <= inflight + {{{nb - 1}'d0, take}} - {{{nb - 1}'d0, done}};",
        ]
    lines += [
        f"      count <= count + {{{nb - 1}'d0, done}} - {{{nb - 1}'d0, pop}};",
        "      if (done) begin",
        "        fifo[wr] <= {done_last, y};",
        f"        wr <= wr == {ab}'d{depth - 1} ? {ab}'d0 : wr + {ab}'d1;",
        "      end",
        f"      if (pop) rd <= rd == {ab}'d{depth - 1} ? {ab}'d0 : rd + {ab}'d1;",
        "    end",
        "  end",
        "endmodule",
        "",
    ]
    text = "\n".join([window_text, kernel_text, *lines])
    info = ConvInfo(
        module=name, spec=spec, kernel=kinfo, fifo_depth=depth, timing=conv_timing(spec, lat)
    )
    return text, info
