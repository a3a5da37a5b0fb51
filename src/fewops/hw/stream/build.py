"""The stages of a streamed network, built from its steps, and their exact cycle model.

A network's steps become a graph of stages in topological order: stage i reads the outputs of
stages ``srcs`` (-1: the network input). A stage's output read by several stages goes through a
fork (:mod:`fewops.hw.stream.residual`) in the top. A Requantize is fused into the kernel, map
or Add stage before it when it is that value's only reader. Flatten and Reshape of a value that
is one beat per image, Pad of channels and Slice of channels only are wiring ("wire" stages,
no module); a spatial Slice is a filter; an Add joins two streams (its FIFOs are sized from the
cycle model by :func:`size_fifos`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from fewops.hw.stream.cycles import collect_times, masked_window_times
from fewops.hw.stream.masked import MaskedSpec, emit_masked_window
from fewops.hw.stream.pointwise import Affine, Op, Round
from fewops.hw.stream.residual import (
    add_format,
    emit_add,
    emit_slice,
    join_takes,
    norm_index,
    size_join,
)
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
    Add,
    Coded,
    Flatten,
    MaxPool,
    Pad,
    Requantize,
    Reshape,
    Slice,
    SumPool,
)

# The cycle model streams four images back to back and reads the II from the second to the
# third: the last image of a stream finishes sooner (its last windows are flushed by bubbles
# instead of waiting for the next image's pixels), so it is not the steady state.
MODEL_IMAGES = 4


@dataclass(frozen=True)
class Stage:
    """One stage: its emitted text (``text.module`` is "" for wiring) and how its beats are
    timed.

    ``kind``: "window" (``spec`` set), "kernel", "map", "gather", "sumpool", "slice" (``keep``:
    the kept pixels of one input image), "wire" (``wiring``: the source value of each output
    value, None for a zero) or "add" (``join``: exponent shifts and FIFO sizing); ``steps``: the
    network steps it implements; ``shape``: the value shape after it (C, H, W); ``srcs``: the
    stages it reads (-1: the network input).
    """

    kind: str
    steps: tuple[str, ...]
    text: StageText
    shape: tuple[int, ...]
    spec: MaskedSpec | None = None
    srcs: tuple[int, ...] = (-1,)
    keep: tuple[int, ...] = ()
    wiring: tuple[int | None, ...] = ()
    join: dict | None = None

    def times(self, arrivals: np.ndarray, in_per_image: int) -> np.ndarray:
        """Cycles of the output beats of a one-input stage whose input beats come at
        ``arrivals`` and whose sink never stalls."""
        if self.spec is not None:
            return masked_window_times(self.spec, arrivals)
        if self.kind in ("gather", "sumpool"):
            return collect_times(arrivals, in_per_image, self.text.delay)
        if self.kind == "slice":
            return arrivals.reshape(-1, in_per_image)[:, list(self.keep)].ravel()
        return arrivals + self.text.delay


@dataclass(frozen=True)
class Ref:
    """A value as a stream: the stage making it (-1: the input), its format and shape."""

    node: int
    fmt: Format
    shape: tuple[int, int, int]


def _as3(shape) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in shape)
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (int(np.prod(shape)), 1, 1)


class Builder:
    """Turns the steps into stages; a kernel, map or Add stays open while a Requantize that is
    its value's only reader can still be fused into it."""

    def __init__(self, net: Network, name: str, pipeline_every: int | None, style: str):
        self.net, self.name, self.every, self.style = net, name, pipeline_every, style
        self.values = net.values()
        self.readers = Counter(src for step in net.steps for src in step.sources)
        self.stages: list[Stage] = []
        inp = net.input
        shape = _as3(inp.shape)
        self.refs = {inp.name: Ref(-1, Format(shape[0], 0, 2**inp.bits - 1), shape)}
        self.pending: dict[str, dict] = {}
        self.count = 0

    def build(self) -> list[Stage]:
        for step in self.net.steps[1:]:
            self.step(step)
        for value in list(self.pending):
            self.close(value)
        return self.stages

    def module(self, kind: str) -> str:
        self.count += 1
        return f"{self.name}_s{self.count - 1}_{kind}"

    def ref(self, value: str) -> Ref:
        if value in self.pending:
            self.close(value)
        return self.refs[value]

    def close(self, value: str) -> None:
        o = self.pending.pop(value)
        join = None
        if o["kind"] == "kernel":
            text = emit_kernel_stage(
                o["module"],
                o["graph"],
                o["fin"],
                o["ops"],
                input_range=(o["fin"].lo, o["fin"].hi),
                pipeline_every=self.every,
                style=self.style,
                comment=o["comment"],
            )
        elif o["kind"] == "map":
            text = pointwise_stage(o["module"], o["fin"], o["ops"])
        else:
            fa, fb = o["fins"]
            join = {"shifts": list(o["shifts"]), "ops": o["ops"], "fins": (fa, fb)}
            fout = add_format(fa, fb, o["shifts"], o["ops"])
            text = StageText(o["module"], "", fout, 1, 2)  # written once its FIFOs are sized
        self.refs[value] = self.add(o["kind"], o["steps"], text, o["shape"], o["srcs"], join=join)

    def add(self, kind, steps, text: StageText, shape, srcs, **extra) -> Ref:
        self.stages.append(Stage(kind, tuple(steps), text, tuple(shape), srcs=tuple(srcs), **extra))
        return Ref(len(self.stages) - 1, text.out, _as3(shape))

    def open(self, value: str, kind: str, ref: Ref, ops: list[Op], **more) -> None:
        module = self.module("requant" if kind == "map" else kind)
        self.pending[value] = dict(
            kind=kind, module=module, fin=ref.fmt, ops=ops, steps=[value], srcs=(ref.node,)
        )
        self.pending[value].update(shape=ref.shape)
        self.pending[value].update(more)

    def window(self, steps, r: Ref, k: int, s: int, p: int) -> tuple[MaskedSpec, Ref]:
        c, h, w = r.shape
        spec = MaskedSpec(h, w, c, k, s, p, r.fmt.bits)
        module = self.module("window")
        fout = Format(spec.window_size, min(r.fmt.lo, 0), max(r.fmt.hi, 0))
        # Zero (padding, masks) fits the stream's own format: the window copies raw bits.
        assert (fout.bits, fout.signed) == (r.fmt.bits, r.fmt.signed)
        text = StageText(module, emit_masked_window(spec, module), fout, 1)
        shape = (c * k * k, spec.out_height, spec.out_width)
        return spec, self.add("window", steps, text, shape, (r.node,), spec=spec)

    def step(self, step) -> None:
        if isinstance(step, Requantize):
            assert step.frac is not None and step.lo is not None and step.hi is not None
            op = Round(-self.values[step.src].e - step.frac, step.lo, step.hi)
            o = self.pending.get(step.src)
            if o is not None and self.readers[step.src] == 1:
                self.pending[step.name] = self.pending.pop(step.src)
                o["ops"].append(op)
                o["steps"].append(step.name)
            else:
                self.open(step.name, "map", self.ref(step.src), [op])
            return
        if isinstance(step, Add):
            self.join(step)
            return
        r = self.ref(step.src)
        c, h, w = r.shape
        if isinstance(step, Coded):
            self.coded(step, r)
        elif isinstance(step, MaxPool):
            spec, win = self.window([step.name], r, step.kernel, step.stride, 0)
            text = max_stage(self.module("max"), win.fmt, c, step.kernel**2)
            shape = (c, spec.out_height, spec.out_width)
            self.refs[step.name] = self.add("map", [step.name], text, shape, (win.node,))
        elif isinstance(step, SumPool):
            text = emit_sum_pool(self.module("sumpool"), r.fmt, c, h * w)
            self.refs[step.name] = self.add("sumpool", [step.name], text, (c, 1, 1), (r.node,))
        elif isinstance(step, Flatten) and h * w > 1:
            text = emit_gather(self.module("gather"), r.fmt, c, h * w)
            self.refs[step.name] = self.add(
                "gather", [step.name], text, (c * h * w, 1, 1), (r.node,)
            )
        elif isinstance(step, Flatten | Reshape):
            self.refs[step.name] = Ref(r.node, r.fmt, (c, 1, 1))  # one beat: the same bits
        elif isinstance(step, Pad):
            before, after = step.widths[0]
            wiring = (None,) * before + tuple(range(c)) + (None,) * after
            self.wire(step, r, wiring, (c + before + after, h, w))
        elif isinstance(step, Slice):
            self.slice(step, r)

    def wire(self, step, r: Ref, wiring: tuple[int | None, ...], shape) -> None:
        lo, hi = r.fmt.lo, r.fmt.hi
        if None in wiring:
            lo, hi = min(lo, 0), max(hi, 0)
        fout = Format(len(wiring), lo, hi)
        # A zero fits every value's width (a range that grows to 0 keeps its bits and sign).
        assert (fout.bits, fout.signed) == (r.fmt.bits, r.fmt.signed)
        text = StageText("", "", fout, 0)
        ref = self.add("wire", [step.name], text, shape, (r.node,), wiring=wiring)
        self.refs[step.name] = ref

    def slice(self, step: Slice, r: Ref) -> None:
        c, h, w = r.shape
        shape = self.values[step.name].shape
        chans = norm_index(step.index[0], c)
        if len(shape) != 3:
            self.wire(step, r, tuple(chans), (len(chans), 1, 1))
            return
        rows, cols = norm_index(step.index[1], h), norm_index(step.index[2], w)
        if rows == range(h) and cols == range(w):
            self.wire(step, r, tuple(chans), (len(chans), h, w))
            return
        text = emit_slice(self.module("slice"), r.fmt, h, w, chans, rows, cols)
        keep = tuple(y * w + x for y in rows for x in cols)
        shape3 = (len(chans), len(rows), len(cols))
        self.refs[step.name] = self.add("slice", [step.name], text, shape3, (r.node,), keep=keep)

    def join(self, step: Add) -> None:
        ra, rb = self.ref(step.a), self.ref(step.b)
        ea, eb = self.values[step.a].e, self.values[step.b].e
        e = min(ea, eb)
        self.pending[step.name] = dict(
            kind="add",
            module=self.module("add"),
            fins=(ra.fmt, rb.fmt),
            shifts=(ea - e, eb - e),
            ops=[],
            steps=[step.name],
            srcs=(ra.node, rb.node),
            shape=ra.shape,
        )

    def coded(self, step: Coded, r: Ref) -> None:
        bias = tuple(int(b) for b in (step.bias_int or ()))
        ops: list[Op] = [Affine(int(step.scale_m), bias)]
        shape = _as3(self.values[step.name].shape)
        if step.conv is not None:
            k, s, p = step.conv.kernel[0], step.conv.stride[0], step.conv.padding[0]
            _, r = self.window([step.name], r, k, s, p)  # its format already includes the zeros
            comment = f"conv {k}x{k}/{s} pad {p} kernel"
        else:
            comment = "dense kernel"
        self.open(step.name, "kernel", r, ops, graph=step.graph, comment=comment, shape=shape)


# -- the cycle model of the graph --------------------------------------------------------------


def per_image(stages: list[Stage], pixels: int) -> list[int]:
    """Beats per image of every stage's output."""
    out: list[int] = []
    for s in stages:
        src = pixels if s.srcs[0] < 0 else out[s.srcs[0]]
        if s.kind == "window":
            assert s.spec is not None
            out.append(s.spec.out_height * s.spec.out_width)
        elif s.kind in ("gather", "sumpool"):
            out.append(1)
        elif s.kind == "slice":
            out.append(len(s.keep))
        else:
            out.append(src)
    return out


def needs(
    stages: list[Stage], pixels: int, *, root: int = -1, low: bool = False
) -> list[np.ndarray | None]:
    """For every stage that depends on stage ``root`` alone (-1: the network input of
    ``pixels`` beats per image; other stages get None), the last beat of ``root``'s stream that
    each output beat of image 0 depends on (beats of image n: add n times ``root``'s beats per
    image): at most, in a continuous stream, or (``low``) at least, when bubbles fill every
    window's tail slots (see :mod:`fewops.hw.stream.residual`)."""
    per = per_image(stages, pixels)
    period = pixels if root < 0 else per[root]
    out: list[np.ndarray | None] = []

    def at(src: int, j: np.ndarray) -> np.ndarray | None:
        if src == root:
            return j
        prev = out[src] if src > root else None
        if prev is None:
            return None
        return prev[j % per[src]] + (j // per[src]) * period

    for i, s in enumerate(stages):
        src = s.srcs[0]
        local = np.arange(per[i], dtype=np.int64)
        if s.kind == "window":
            assert s.spec is not None
            # window (oy, ox) is emitted by the shift of its last slot; a tail slot (past the
            # image) is the next image's pixel in a continuous stream, else a bubble
            local = np.asarray(s.spec.emit_slots(), dtype=np.int64)
            if low:
                local = np.minimum(local, s.spec.pixels - 1)
        elif s.kind in ("gather", "sumpool"):
            local = np.array([(pixels if src < 0 else per[src]) - 1], dtype=np.int64)
        elif s.kind == "slice":
            local = np.asarray(s.keep, dtype=np.int64)
        need = at(src, local) if i > root else None
        if s.kind == "add" and need is not None:
            other = at(s.srcs[1], np.arange(per[i], dtype=np.int64))
            need = None if other is None else np.maximum(need, other)
        out.append(need)
    return out


def fork_needs(stages: list[Stage], pixels: int, i: int) -> list:
    """[most, least, root]: the needs (at most, at least) of both sides of Add ``i``, counted in
    beats of the latest stream ``root`` that both sides depend on alone: the fork they branch
    from (-1: the network input, when no later stream is)."""
    anc: list[set[int]] = []
    for s in stages[: i + 1]:
        anc.append(set().union(*({k} | (anc[k] if k >= 0 else set()) for k in s.srcs)))
    a, b = stages[i].srcs
    common = ({a} | (anc[a] if a >= 0 else set())) & ({b} | (anc[b] if b >= 0 else set()))
    for root in sorted(common, reverse=True):
        most = needs(stages[: i + 1], pixels, root=root)
        if most[i] is not None:
            least = needs(stages[: i + 1], pixels, root=root, low=True)
            # a side that is the root itself (None) needs beat j for beat j
            return [[m[k] if k >= 0 else None for k in (a, b)] for m in (most, least)] + [root]
    raise AssertionError("every stage depends on the network input")
    raise AssertionError("every stage depends on the network input")


def stream_times(
    stages: list[Stage], pixels: int, images: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cycle of every output beat of every stage, and the input beats' cycles, for ``images``
    images streamed back to back (input beat k at cycle k) into a sink that never stalls."""
    inp = np.arange(images * pixels, dtype=np.int64)
    per = per_image(stages, pixels)
    out: list[np.ndarray] = []
    for s in stages:
        ins = [inp if k < 0 else out[k] for k in s.srcs]
        if s.kind == "add":
            assert s.join is not None
            fifos = tuple(d > 0 for d in s.join["fifo_depths"])
            out.append(join_takes((ins[0], ins[1]), (fifos[0], fifos[1])) + s.text.delay)
        else:
            out.append(s.times(ins[0], pixels if s.srcs[0] < 0 else per[s.srcs[0]]))
    return out, inp


def size_fifos(stages: list[Stage], pixels: int) -> list[Stage]:
    """The stages with every Add's FIFOs sized (:func:`fewops.hw.stream.residual.size_join`)
    and its module written."""
    stages = list(stages)
    per = per_image(stages, pixels)
    n = MODEL_IMAGES
    inp = np.arange(n * pixels, dtype=np.int64)
    out: list[np.ndarray] = []

    for i, s in enumerate(stages):
        if s.kind == "add":
            assert s.join is not None
            ta, tb = (inp if k < 0 else out[k] for k in s.srcs)
            most, least, root = fork_needs(stages, pixels, i)
            period = pixels if root < 0 else per[root]
            hi = [_images(m, period, n) for m in most]
            lo = [_images(m, period, n) for m in least]
            sizing = size_join((ta, tb), (hi[0], hi[1]), (lo[0], lo[1]), n)
            sizing["fork"] = root
            fa, fb = s.join["fins"]
            text = emit_add(
                s.text.module,
                fa,
                fb,
                tuple(s.join["shifts"]),
                s.join["ops"],
                tuple(sizing["fifo_depths"]),
                comment=f"add of {', '.join(s.steps)}",
            )
            stages[i] = s = replace(s, text=text, join={**s.join, **sizing})
            fifos = tuple(d > 0 for d in sizing["fifo_depths"])
            out.append(join_takes((ta, tb), (fifos[0], fifos[1])) + s.text.delay)
        else:
            src = s.srcs[0]
            out.append(s.times(inp if src < 0 else out[src], pixels if src < 0 else per[src]))
    return stages


def _images(need: np.ndarray | None, period: int, images: int) -> np.ndarray:
    """``need`` of image 0 (None: the root itself) over ``images`` images."""
    if need is None:
        return np.arange(images * period, dtype=np.int64)
    per = len(need)
    j = np.arange(images * per, dtype=np.int64)
    return need[j % per] + (j // per) * period
