"""``fewops export --verilog OUT --model DIR``: Verilog for every layer of a saved coded model.

For each coded layer, ``layer_<name>.v`` and its sidecar (signed ``--input-width``-bit inputs,
exactly as for one graph). When the model is an MLP (a Sequential of coded Linear, ReLU, Flatten,
Dropout) saved with its integer calibration, also the whole network as one top module (``--name``,
default ``mlp``): the integer simulator's arithmetic, bit for bit (:mod:`fewops.hw.network`).
``export.json`` lists what was written, and why a network top was not.

Benches: per layer, vectors over the full input range with expected outputs from
:func:`fewops.sim.evaluate`; for the network, the first N test images of ``--data`` (or extreme
and random activations without it) with expected logits from the integer network simulator
itself (``Network.run``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from fewops.cost import count_graph
from fewops.hw.emit import (
    ModuleInfo,
    check_input_width,
    check_name,
    check_pipeline_every,
    emit_module,
    prepare_dir,
    write_module,
)
from fewops.hw.network import from_network, write_network_verilog
from fewops.hw.testbench import make_vectors, write_testbench
from fewops.hw.tools import SimResult, run_iverilog, run_yosys
from fewops.io.limits import limits_from
from fewops.sim.evaluate import evaluate


def layer_module_name(layer_name: str) -> str:
    """A Verilog module name for a layer called ``layer_name`` ("features.0" -> layer_features_0)."""
    return "layer_" + re.sub(r"[^A-Za-z0-9_]", "_", layer_name)


def export_model(args) -> int:
    """Run the export of a saved model; returns the exit status (1 when a bench fails)."""
    # lazy: the saved-model reader needs torch; `fewops --help` and graph exports do not
    from fewops.io.coded_model import load_coded_model

    # Every bad argument is refused before anything is written.
    check_input_width(args.input_width)
    check_pipeline_every(args.pipeline_every)
    check_name(args.name or "mlp")
    saved = load_coded_model(args.model, limits=limits_from(getattr(args, "limit", None)))
    out = prepare_dir(args.verilog, args.overwrite)
    style = args.style
    manifest: dict = {"model": str(saved.path), "method": saved.method, "layers": []}
    failed = False
    for layer_name, module in saved.layers:
        graph = module.coded.graph
        name = layer_module_name(layer_name)
        text, info = emit_module(graph, name, args.input_width, args.pipeline_every, style=style)
        v_path, json_path = write_module(out, name, text, info)
        cost = count_graph(graph)
        print(
            f"wrote {v_path.name}: layer {layer_name!r}, {info.inputs} -> {info.outputs}, "
            f"{cost.adds} adds, adder depth {cost.adder_depth}, latency {info.latency}"
        )
        record = {"layer": layer_name, "module": name, "verilog": v_path.name}
        record["sidecar"] = json_path.name
        if args.testbench:
            top = 1 << (info.input_width - 1)
            x = make_vectors(info.inputs, args.testbench, lo=-top, hi=top - 1, seed=args.seed)
            tb = write_testbench(info, x, evaluate(graph, x), out)
            record["testbench"] = tb.name
            if args.simulate:
                failed |= not _report_sim(run_iverilog([v_path, tb], tb.stem, out), name)
        if args.yosys is not None:
            _report_yosys(run_yosys(v_path, name, target=args.yosys), name, args.yosys)
        manifest["layers"].append(record)
    manifest["network"] = _export_network(saved, out, args)
    failed |= manifest["network"].get("passed") is False
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out / 'export.json'}")
    return 1 if failed else 0


def _export_network(saved, out: Path, args) -> dict:
    """Write the MLP top when the model is one; else say why not (never an error)."""
    name = args.name or "mlp"
    try:
        net = saved.integer_network()
        hw = from_network(net)
    except ValueError as exc:
        print(f"no network top module: {exc}")
        return {"skipped": str(exc)}
    v_path, json_path = write_network_verilog(
        hw, out, name, args.pipeline_every, overwrite=True, style=args.style
    )
    info = ModuleInfo.from_json(json_path)
    shapes = " -> ".join([str(hw.num_inputs)] + [str(la.graph.num_outputs) for la in hw.layers])
    print(
        f"wrote {v_path.name}: MLP {shapes}, {hw.act_bits}-bit activations, latency {info.latency}"
    )
    record: dict = {"module": name, "verilog": v_path.name, "sidecar": json_path.name}
    if args.testbench:
        x_int = _network_vectors(hw, net, saved, args)
        # The reference is the integer network simulator itself: x_int / 2**input_frac quantizes
        # back to exactly x_int in Network.quantize_input.
        images = np.ldexp(x_int.astype(np.float64), -net.input.frac)
        expected = net.run(images.reshape(len(x_int), *saved.input_shape))
        tb = write_testbench(info, x_int, expected, out)
        record["testbench"] = tb.name
        if args.simulate:
            ok = _report_sim(run_iverilog([v_path, tb], tb.stem, out), name)
            record["passed"] = ok
    if args.yosys is not None:
        _report_yosys(run_yosys(v_path, name, target=args.yosys), name, args.yosys)
    return record


def _network_vectors(hw, net, saved, args) -> np.ndarray:
    if args.data:
        from fewops.data import load  # lazy: data sets pull in torch and file readers

        data = load(args.data, seed=args.seed)
        images = data.x_test[: args.testbench]
        if tuple(images.shape[1:]) != tuple(saved.input_shape):
            raise ValueError(
                f"Data set {args.data!r} has images of shape {images.shape[1:]}, but the model "
                f"takes {tuple(saved.input_shape)}."
            )
        return net.quantize_input(images).reshape(len(images), -1).astype(np.int64)
    lo, hi = hw.input_range()
    return make_vectors(hw.num_inputs, args.testbench, lo=lo, hi=hi, seed=args.seed)


def _report_sim(result: SimResult, name: str) -> bool:
    print(f"iverilog {name}: {result.passed} passed, {result.failed} failed")
    for line in result.mismatches[:3]:
        print(f"  {line}")
    return result.ok


def _report_yosys(stats, name: str, target: str) -> None:
    print(f"yosys {target} {name}: " + json.dumps(stats.cells, sort_keys=True))
    if target.startswith("xilinx"):
        print(f"  LUTs {stats.luts}, CARRY4 {stats.carries}")
