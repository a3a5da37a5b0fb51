"""Residual networks stream bit-exactly: forks, the Add with its shortcut FIFO, Slice and Pad
of channels, 1x1 stride-2 shortcuts; the cycle model of the branching top is exact, and each
FIFO depth is the smallest that cannot deadlock under back-to-back images with stalls."""

import json
import re

import numpy as np
import pytest
from network_helpers import images, residual_network

from fewops.hw.stream.network import emit_stream_network
from fewops.hw.stream.network_bench import run_network_bench
from fewops.network.network import Network
from fewops.network.simulate import calibrate
from fewops.network.steps import Add, Input, Pad, Requantize, Reshape, Slice, SumPool

STALL_PERCENT = 30
CLEAN = 2


def adds(info) -> list[dict]:
    return [layer for layer in info.contract["layers"] if layer["kind"] == "add"]


def check_run(run, count: int) -> None:
    """Every logit right, nothing lost or extra, the clean images on the modelled cycle."""
    assert run.result.failed == 0, run.result.mismatches
    assert run.result.passed == count == len(run.output_cycles)
    assert run.clean_cycles_match, (run.output_cycles, run.modelled)
    assert run.latencies[0] == run.info.latency_cycles
    assert run.output_cycles[1] - run.output_cycles[0] == run.info.ii_cycles == run.info.pixels


@pytest.mark.parametrize(
    ("shortcut", "method", "shape", "pipeline_every"),
    [("A", "csd", (2, 7, 6), None), ("B", "csd", (1, 8, 8), 2), ("A", "lcc", (1, 8, 8), 1)],
)
def test_residual_net_equals_simulator_with_stalls(
    tmp_path, shortcut, method, shape, pipeline_every
):
    net = residual_network(shortcut, method, shape)
    kinds = [type(s).__name__ for s in net.steps]
    assert kinds.count("Add") == 3
    assert ("Slice" in kinds and "Pad" in kinds) == (shortcut == "A")
    run = run_network_bench(
        net,
        images(net, 6),
        tmp_path,
        pipeline_every=pipeline_every,
        clean_images=CLEAN,
        stall_percent=STALL_PERCENT,
        seed=11,
    )
    check_run(run, 6)
    assert run.output_cycles[-1] > run.modelled[-1]  # the last images really were stalled
    layers = json.loads(run.info.json_path.read_text())["layers"]
    joins = [layer for layer in layers if layer["kind"] == "add"]
    assert joins == adds(run.info)
    for layer in joins:
        # The long side (conv2) never waits; the shortcut holds what is in flight on it and
        # at least what the deadlock bound says.
        long, short = layer["fifo_depths"]
        assert long == 0 < layer["deadlock_bounds"][1] <= short
        assert short == max(layer["fifo_occupancy"][1], layer["deadlock_bounds"][1])
        assert layer["steps"][-1].endswith("relu2")  # the ReLU is fused into the Add
    slices = [layer for layer in layers if layer["kind"] == "slice"]
    assert len(slices) == (shortcut == "A")


def test_cycle_model_is_exact_for_every_image(tmp_path):
    """No stalls at all: every image's logits come on the modelled cycle, the last one's too
    (its windows' tails are flushed by bubbles); one image alone comes at latency_alone."""
    net = residual_network("A", "csd", (2, 7, 6))
    run = run_network_bench(net, images(net, 4), tmp_path / "four", clean_images=4)
    assert run.result.ok, run.result.mismatches
    assert np.array_equal(run.output_cycles, run.modelled)
    assert run.modelled[-1] - run.modelled[-2] < run.info.ii_cycles  # flushed sooner
    one = run_network_bench(net, images(net, 1), tmp_path / "one", info=run.info, clean_images=1)
    assert one.result.ok, one.result.mismatches
    assert one.output_cycles[0] == run.info.contract["latency_alone_cycles"]


@pytest.mark.parametrize("which", [0, 2])  # an identity shortcut; the slice-and-pad one
def test_fifo_depth_is_the_smallest_that_cannot_deadlock(tmp_path, which):
    """The shortcut FIFO shrunk to its deadlock bound still streams back-to-back images with
    stalls bit-exactly (only slower); one entry fewer and the top stops for good."""
    net = residual_network("A", "csd", (2, 7, 6))
    x = images(net, 5)
    for delta, ok in ((0, True), (-1, False)):
        work = tmp_path / f"d{delta}"
        info = emit_stream_network(net, work / "rtl", style="always")
        layer = adds(info)[which]
        bound = layer["deadlock_bounds"][1]
        assert layer["fifo_depths"][1] > bound  # the model's depth keeps full speed
        path = info.out_dir / f"{layer['module']}.v"
        text = path.read_text()
        shrunk = re.sub(r"localparam DEPTH1 = \d+;", f"localparam DEPTH1 = {bound + delta};", text)
        assert shrunk != text
        path.write_text(shrunk)
        run = run_network_bench(
            net, x, work, info=info, clean_images=CLEAN, stall_percent=STALL_PERCENT, seed=3
        )
        if ok:
            assert run.result.failed == 0 and run.result.passed == 5, run.result.mismatches
        else:
            assert run.result.passed == 0
            assert run.result.mismatches[-1].startswith("MISMATCH timeout")


def branchy_network() -> Network:
    """No kernels: the input is forked three ways into pixel slices (even and odd rows and
    columns), zero channels are padded on, two Adds join them (the FIFO on the side that comes
    FIRST here), a fused ReLU, a sum pool and a no-op Reshape."""
    steps = (
        Input("x", (2, 8, 6), 8, 8),
        Slice("even", "x", ((0, 2, 1), (0, 8, 2), (0, 6, 2))),
        Pad("pe", "even", ((1, 0), (0, 0), (0, 0))),
        Slice("odd", "x", ((1, 2, 1), (1, 8, 2), (1, 6, 2))),
        Pad("po", "odd", ((0, 2), (0, 0), (0, 0))),
        Add("a", "pe", "po"),
        Slice("mix", "x", ((0, 2, 1), (0, 8, 2), (1, 6, 2))),
        Pad("pm", "mix", ((0, 1), (0, 0), (0, 0))),
        Add("b", "a", "pm"),
        Requantize("r", "b", 6, False, relu=True),
        SumPool("pool", "r"),
        Reshape("out", "pool", (3,)),
    )
    return calibrate(Network(steps, 8, "out"), np.random.default_rng(0).random((8, 2, 8, 6)))


def same_cycle_network() -> Network:
    """An Add of the input and a rewired copy of it (both sides come in the same cycle: no
    FIFO), a sum pool, a slice of a vector and an Add of vectors."""
    steps = (
        Input("x", (2, 5, 4), 8, 8),
        Slice("c1", "x", ((1, 2, 1), (0, 5, 1), (0, 4, 1))),
        Pad("pw", "c1", ((1, 0), (0, 0), (0, 0))),
        Add("s", "x", "pw"),
        SumPool("pool", "s"),
        Reshape("f", "pool", (2,)),
        Slice("fs", "f", ((0, 2, 1),)),
        Add("out", "fs", "f"),
    )
    return calibrate(Network(steps, 8, "out"), np.random.default_rng(0).random((8, 2, 5, 4)))


def test_an_add_whose_sides_come_together_needs_no_fifo(tmp_path):
    net = same_cycle_network()
    run = run_network_bench(
        net, images(net, 5), tmp_path, clean_images=CLEAN, stall_percent=STALL_PERCENT, seed=5
    )
    check_run(run, 5)
    assert [layer["fifo_depths"] for layer in adds(run.info)] == [[0, 0], [0, 0]]
    assert [layer["kind"] for layer in run.info.contract["layers"]].count("wire") == 3


def test_forks_slices_and_pads(tmp_path):
    net = branchy_network()
    run = run_network_bench(
        net, images(net, 6), tmp_path, clean_images=CLEAN, stall_percent=STALL_PERCENT, seed=5
    )
    check_run(run, 6)
    a, b = adds(run.info)
    assert a["fifo_depths"][0] > 0 == a["fifo_depths"][1]  # the even pixels come first
    assert b["fifo_depths"][0] == 0 < b["fifo_depths"][1]
    assert (a["fork"], b["fork"]) == (-1, -1)
    top = (run.info.out_dir / "network.v").read_text()
    assert "#(.N(3)) f_in" in top  # the input is read three times
    assert [layer["kind"] for layer in run.info.contract["layers"]].count("wire") == 3


def test_branch_steps_that_are_not_built_are_refused_in_one_error(tmp_path):
    steps = (
        Input("x", (2, 4, 4), 8, 8),
        Pad("rows", "x", ((0, 0), (1, 1), (0, 0))),
        Reshape("flat", "x", (32,)),
        Slice("back", "x", ((1, None, -1), (0, 4, 1), (0, 4, 1))),
        Add("twice", "back", "back"),
        SumPool("out", "twice"),
    )
    net = Network(steps, 8, "out")
    out = tmp_path / "never"
    with pytest.raises(ValueError) as err:
        emit_stream_network(net, out)
    msg = str(err.value)
    assert "step 'rows' (Pad): padding ((0, 0), (1, 1), (0, 0)) pads pixels" in msg
    assert "step 'rows' (Pad): its value is never read" in msg
    assert "step 'flat' (Reshape): reshaping (2, 4, 4) to (32,) is not a no-op" in msg
    assert "step 'back' (Slice): slice ((1, None, -1), (0, 4, 1), (0, 4, 1)) of a" in msg
    assert "step 'twice' (Add): Add is not streamed yet when both sides read the same" in msg
    assert not out.exists()


@pytest.mark.slow
def test_resnet20_lcc_12x12(tmp_path):
    """The real ResNet-20 (option A shortcuts), LCC-coded, on 1x12x12: 9 Adds, 2 slices."""
    from network_helpers import coded_network

    net = coded_network("resnet20", "lcc", (1, 12, 12))
    run = run_network_bench(
        net, images(net, 3), tmp_path, clean_images=1, stall_percent=STALL_PERCENT, seed=7
    )
    assert run.result.failed == 0 and run.result.passed == 3, run.result.mismatches
    assert run.clean_cycles_match
    assert run.latencies[0] == run.info.latency_cycles
    assert run.info.ii_cycles == 144
    assert len(adds(run.info)) == 9
