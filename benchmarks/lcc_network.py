"""LCC network pipeline benchmarks (issue 4): MLPs on MNIST/Fashion-MNIST, ResNet-20, ResNet-34.

    python benchmarks/lcc_network.py mlp --data mnist --out benchmarks/results/lcc_mlp_mnist.json
    python benchmarks/lcc_network.py mlp --data fashion-mnist --out ...
    python benchmarks/lcc_network.py resnet20 --data fashion-mnist --train-samples 10000 --out ...
    python benchmarks/lcc_network.py resnet34 --target-db 40 --workers 2 --out ...

For the trained models: 10% of the training split is held out as the search set (never trained
on); accuracies are on the data set's test split. The dense CSD baseline uses the smallest width
whose coded network keeps test accuracy within 0.5 points of float (the issue's definition).
Adds are per inference (conv layers: per-position adds x output positions), without biases.
The pipeline options are those of `fewops compress --method lcc`, generated from LCCConfig and
starting from its "mlp" preset (lambda 0.35, 10 group-lasso epochs, 20 fine-tuning epochs).
--tolerance and --code-finetune-slack are accuracy fractions (0.005 = 0.5 points), as in
LCCConfig; some recorded commands give them in points. The float model's options are
--float-epochs, --float-lr (default: the pipeline's --lr) and --schedule; --seed seeds both.
Older recorded commands named them --epochs, --lr, --prune-epochs and --prune-lr, and the
held-out search set size --search-samples (now --holdout-samples).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fewops.cli.options import add_config_options, config_from_options
from fewops.codes import csd
from fewops.data import load
from fewops.methods.baselines import CSDCode, CSDConfig
from fewops.methods.lcc import LCC_PRESETS, LCCConfig
from fewops.models import build
from fewops.nn.api import compress_
from fewops.nn.coded import layer_matrix
from fewops.nn.fold import fold_batchnorm_
from fewops.nn.geometry import output_positions
from fewops.nn.to_network import compile_network
from fewops.train.fit import evaluate, fit


def _split(data, seed: int, train_samples: int | None, search_samples: int | None = None):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.y_train))
    n_val = len(order) // 10
    val, train = order[:n_val], order[n_val:]
    if train_samples is not None:
        train = train[:train_samples]
        val = val[: max(1000, train_samples // 10)]
    if search_samples is not None:  # from the same held-out 10%: the training split is unchanged
        val = order[: min(search_samples, n_val)]
    sub = copy.copy(data)
    object.__setattr__(sub, "x_train", data.x_train[train])
    object.__setattr__(sub, "y_train", data.y_train[train])
    return sub, (data.x_train[val], data.y_train[val])


def _weight_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]


def csd_baseline(model, data, tolerance=0.005, max_bits=12):
    """Smallest CSD width keeping test accuracy within ``tolerance`` of float; its adds.
    BatchNorm is folded into the layers first, as the LCC pipeline does, so both count a
    network with no per-channel multipliers left."""
    model = copy.deepcopy(model).eval()
    fold_batchnorm_(model)
    names = _weight_names(model)
    pos = output_positions(model, torch.as_tensor(data.x_test[:1]), names)
    float_acc = evaluate(model, data.x_test, data.y_test)
    rows = []
    for bits in range(2, max_bits + 1):
        m = copy.deepcopy(model)
        compress_(m, CSDConfig(CSDCode(bits=bits)))
        acc = evaluate(m, data.x_test, data.y_test)
        adds = 0
        for n in names:
            w = layer_matrix(model.get_submodule(n)).numpy()
            adds += csd.adds_for_integer_matrix(csd.quantize(w, bits)[0]) * pos[n]
        rows.append({"bits": bits, "test_accuracy": acc, "adds": int(adds)})
        if acc >= float_acc - tolerance:
            return rows[-1], rows
    return rows[-1], rows


def run_trained(args, cfg: LCCConfig, model_name, model_opts):
    torch.manual_seed(args.seed)
    data = load(args.data, seed=args.seed)
    train, val = _split(data, args.seed, args.train_samples, args.holdout_samples)
    model = build(model_name, data.input_shape, data.num_classes, **model_opts)
    t0 = time.perf_counter()
    cache = Path(args.cache) / (
        f"{model_name}-{args.data}-e{args.float_epochs}-n{args.train_samples}-s{args.seed}"
        f"{'' if args.schedule == 'constant' else '-' + args.schedule}.pt"
    )
    cached = cache.exists()
    if cached:  # the float model of an earlier run with the same settings
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        schedule = None if args.schedule == "constant" else args.schedule
        fit(
            model,
            train,
            epochs=args.float_epochs,
            lr=args.float_lr,
            seed=args.seed,
            lr_schedule=schedule,
            progress=False,
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    train_s = time.perf_counter() - t0
    model.eval()
    float_test = evaluate(model, data.x_test, data.y_test)
    print(f"float test accuracy {float_test:.4f} ({train_s:.0f} s training)", flush=True)
    control = float_control(args, cfg, model, train, data, cache) if args.float_control else None
    if args.control_only:
        return {"float_test_accuracy": float_test, "float_control": control}
    csd_best, csd_rows = csd_baseline(model, data)
    print(f"CSD baseline {csd_best}", flush=True)
    coded = copy.deepcopy(model)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    stages = compress_(
        coded,
        replace(cfg, validation=val),
        data=train,
        workers=args.workers,
        prune_cache=args.prune_cache,
        train_threads=args.threads,
    ).report
    lcc_s = time.perf_counter() - t0
    lcc_test = evaluate(coded, data.x_test, data.y_test)
    simulated = simulate_coded(coded, train, data, args.simulate) if args.simulate else None
    adds = stages["lcc"]["adds"]
    result = {
        "model": model_name,
        "model_options": model_opts,
        "data": args.data,
        "data_source": data.source,
        "train_samples": len(train.y_train),
        "search_samples": len(val[1]),
        "test_samples": len(data.y_test),
        "float_test_accuracy": float_test,
        "float_control": control,
        "csd_baseline": csd_best,
        "csd_sweep": csd_rows,
        "lcc_test_accuracy": lcc_test,
        "integer_simulation": simulated,
        "lcc_adds": adds,
        "adds_ratio_csd_over_lcc": csd_best["adds"] / adds,
        "loss_points": 100 * (float_test - lcc_test),
        # against the better float model: the plain one or the one trained on as long
        "loss_points_vs_best_float": 100
        * (max(float_test, control["test_accuracy"] if control else 0.0) - lcc_test),
        "train_seconds": round(train_s, 1),
        "float_model_cached": cached,
        "pipeline_seconds": round(lcc_s, 1),
        "loadavg_pipeline_start": load_start,
        "loadavg_pipeline_end": os.getloadavg(),
        "stages": stages,
    }
    print(
        f"LCC test accuracy {lcc_test:.4f}, adds {adds}, CSD {csd_best['adds']} "
        f"({result['adds_ratio_csd_over_lcc']:.2f}x), loss {result['loss_points']:.2f} points",
        flush=True,
    )
    return result


def simulate_coded(coded, train, data, count: int) -> dict:
    """Run the first ``count`` test images through the integer simulator (8-bit activations,
    calibrated on 256 training images): its accuracy, whether its logits equal the float64
    reference bit for bit, and how often it predicts what the torch model predicts."""
    t0 = time.perf_counter()
    net = compile_network(coded, train.x_train[:256], act_bits=8)
    x, y = data.x_test[:count], data.y_test[:count]
    logits = net.run(x)
    exponent = net.layers[-1].exponent if hasattr(net, "steps") else net.exponent
    reference = net.reference(x)
    as_float = np.ldexp(logits.astype(np.float64), exponent)
    bits = int(max(abs(int(v)) for v in logits.ravel()).bit_length())
    # float64 holds the reference exactly only while the integers fit in 53 bits; beyond that
    # (LCC layers with very fine output scales) it agrees to float64 precision
    exact = bool(np.array_equal(as_float, reference)) if bits <= 53 else None
    relative = float(np.abs(as_float - reference).max() / max(np.abs(reference).max(), 1e-300))
    with torch.no_grad():
        torch_pred = coded.eval()(torch.as_tensor(x)).argmax(1).numpy()
    pred = logits.argmax(1)
    result = {
        "images": int(count),
        "act_bits": 8,
        "accuracy": float((pred == y).mean()),
        "torch_accuracy_same_images": float((torch_pred == y).mean()),
        "agrees_with_torch": float((pred == torch_pred).mean()),
        "logit_bits": bits,
        "equals_float64_reference": exact,
        "max_relative_difference_to_reference": relative,
        "predictions_equal_reference": float((pred == reference.argmax(1)).mean()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"integer simulation: {result}", flush=True)
    return result


def pipeline_epochs(cfg: LCCConfig, layers: int) -> int:
    """Epochs of training the pipeline gives the model after float training (once per coded
    group, the last included: it fine-tunes the biases and normalisations)."""
    prog = cfg.progressive
    groups = layers if prog.code_groups is None else min(prog.code_groups, layers)
    coding = prog.code_finetune_epochs * groups
    pruning = cfg.train.epochs + cfg.prune.finetune_epochs if cfg.prune.prune_lambda > 0 else 0
    return pruning + coding


def float_control(args, cfg: LCCConfig, model, train, data, cache: Path) -> dict:
    """The float model trained on for as many epochs as the pipeline trains the coded one
    (cosine from the pipeline's rate), so that extra training is not mistaken for coding
    gain: the coded model is judged against the better of the two float accuracies."""
    epochs = pipeline_epochs(cfg, len(_weight_names(model)))
    path = cache.with_name(cache.stem + f"-control{epochs}-lr{cfg.train.lr:g}.pt")
    control = copy.deepcopy(model)
    t0 = time.perf_counter()
    cached = path.exists()
    if cached:
        control.load_state_dict(torch.load(path, weights_only=True))
    else:
        fit(
            control,
            train,
            epochs=epochs,
            lr=cfg.train.lr,
            seed=args.seed + 7,
            lr_schedule="cosine",
            progress=False,
        )
        torch.save(control.state_dict(), path)
    control.eval()
    acc = evaluate(control, data.x_test, data.y_test)
    seconds = round(time.perf_counter() - t0, 1)
    print(
        f"float control ({epochs} more epochs): test accuracy {acc:.4f} ({seconds} s)", flush=True
    )
    return {"epochs": epochs, "test_accuracy": acc, "seconds": seconds, "cached": cached}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_resnet34(args, cfg: LCCConfig):
    torch.manual_seed(args.seed)
    model = build("resnet34", (3, 224, 224), 1000).eval()
    cfg = LCCConfig(code=cfg.code, share=False)  # random weights: nothing to prune or search
    load_start = os.getloadavg()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    stages = compress_(model, cfg, input_shape=(3, 224, 224), workers=args.workers).report
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    load_end = os.getloadavg()
    layers = stages["lcc"]["layers"]
    result = {
        "model": "resnet34 (3x224x224, 1000 classes, random He-initialised weights)",
        "target_db": cfg.code.target_db,
        "layers": len(layers),
        "min_layer_sqnr_db": min(v["sqnr_db"] for v in layers.values()),
        "adds_per_inference": stages["lcc"]["adds"],
        "csd_adds_equal_sqnr": stages["lcc"]["csd_adds_equal_sqnr"],
        "entries": stages["original"]["entries"],
        "adds_per_entry_per_position": sum(v["adds"] for v in layers.values())
        / stages["original"]["entries"],
        "seconds": round(seconds, 1),
        # CPU time of this process and its (reaped) worker processes: on a shared machine the
        # wall time depends on the other jobs, the CPU time much less.
        "cpu_seconds": round(cpu, 1),
        "workers": args.workers,
        "loadavg_pipeline_start": load_start,
        "loadavg_pipeline_end": load_end,
        "stages": stages,
    }
    print(
        f"ResNet-34: {len(layers)} layers at >= {result['min_layer_sqnr_db']:.2f} dB, "
        f"{result['adds_per_inference']} adds per inference, {seconds:.0f} s wall, "
        f"{cpu:.0f} CPU s, load {load_start} -> {load_end}",
        flush=True,
    )
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bench", choices=("mlp", "resnet20", "resnet34"))
    p.add_argument("--data", default="mnist")
    p.add_argument("--out", required=True)
    p.add_argument("--float-epochs", type=int, default=10, help="float model training epochs")
    p.add_argument(
        "--float-lr", type=float, default=None, help="float model learning rate (default: --lr)"
    )
    p.add_argument(
        "--schedule", choices=("cosine", "constant"), default="cosine", help="float training"
    )
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument(
        "--holdout-samples",
        type=int,
        default=None,
        help="held-out search set size (default: all 10%%, or max(1000, train/10) with --train-samples)",
    )
    pipeline = p.add_argument_group("pipeline options (LCCConfig, from its 'mlp' preset)")
    add_config_options(pipeline, LCC_PRESETS["mlp"])
    p.add_argument("--workers", type=int, default=2, help="processes coding layers")
    p.add_argument(
        "--prune-cache", default=None, help="pruned-model cache (default: <--cache>/pruned)"
    )
    p.add_argument("--cache", default="/tmp/lccb/models")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is best under load)")
    p.add_argument(
        "--float-control",
        action="store_true",
        help="also train the float model on for as many epochs as the pipeline trains",
    )
    p.add_argument(
        "--control-only", action="store_true", help="with --float-control: stop after the control"
    )
    p.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="run the first N test images of the coded model through the integer simulator",
    )
    args = p.parse_args(argv)
    cfg = config_from_options(LCC_PRESETS["mlp"], args)
    args.seed = cfg.train.seed  # one seed for the data split, the float model and the pipeline
    if args.prune_cache is None:
        args.prune_cache = str(Path(args.cache) / "pruned")
    if args.float_lr is None:  # one learning rate for float training and the pipeline
        args.float_lr = cfg.train.lr
    if args.bench == "resnet34" and cfg.code.target_db is None:
        # every layer at one SQNR (no accuracy to search on)
        cfg = replace(cfg, code=replace(cfg.code, target_db=40.0))
    elif args.bench != "resnet34" and cfg.code.target_db is not None:
        p.error("--target-db is for resnet34; trained models search the SQNR per layer")
    load_at_start = os.getloadavg()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.bench == "mlp":
        result = run_trained(args, cfg, "mlp", {"hidden": [512, 256]})
    elif args.bench == "resnet20":
        result = run_trained(args, cfg, "resnet20", {})
    else:
        result = run_resnet34(args, cfg)
    result["command"] = "python " + " ".join(sys.argv)
    result["machine"] = {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
