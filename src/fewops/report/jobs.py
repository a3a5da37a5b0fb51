"""The jobs behind the CLI: the demo and ``compress`` (float model, baselines, one method)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fewops.data import load
from fewops.data.adapt import as_dataset
from fewops.io.coded_model import save_compressed
from fewops.io.records import RunRecord, array_digest, recording_layers, sha256_hex
from fewops.methods.baselines import CSDCode, CSDConfig, DenseCode, DenseConfig
from fewops.methods.registry import METHODS, demo_config
from fewops.nn.api import compress_
from fewops.report.hardware import add_hardware_figures
from fewops.report.pipeline import config_to_dict, float_accuracy, run_method
from fewops.report.write import build_report, markdown_table, write_report
from fewops.train.cache import train_or_load

DEMO_HIDDEN = (64, 32)
DEMO_EPOCHS = 40
# Runtime settings of the demo's methods: the demo's small MLP codes faster in one process
# than with a pool of workers that each import torch.
DEMO_RUNTIME = {"lcc": {"workers": 1}}


def csd_bits_for_accuracy(
    model, dataset, tolerance: float = 0.005, max_bits: int = 16, progress: bool = False
) -> int:
    """Smallest CSD width whose coded model stays within ``tolerance`` of the float accuracy."""
    reference = float_accuracy(model, dataset.x_test, dataset.y_test)
    widths = tqdm(
        range(2, max_bits + 1), desc="csd: width search", unit="width", disable=not progress
    )
    with widths:
        for bits in widths:
            trial = compress_(copy.deepcopy(model), CSDConfig(CSDCode(bits=bits))).model
            if float_accuracy(trial, dataset.x_test, dataset.y_test) >= reference - tolerance:
                return bits
    return max_bits


def baselines(
    model,
    dataset,
    *,
    act_bits: int,
    simulate: bool = True,
    models: dict | None = None,
    progress: bool = False,
) -> list[dict]:
    """Dense MAC (16-bit) and CSD at the smallest width keeping float accuracy within 0.5 points.

    ``models``, when given, receives the coded models by method name (for saving).
    """
    dense_entry, dense_model = run_method(
        "dense",
        model,
        dataset,
        DenseConfig(DenseCode(bits=16)),
        act_bits=act_bits,
        simulate=simulate,
        progress=progress,
    )
    bits = csd_bits_for_accuracy(model, dataset, progress=progress)
    csd_entry, csd_model = run_method(
        "csd",
        model,
        dataset,
        CSDConfig(CSDCode(bits=bits)),
        act_bits=act_bits,
        simulate=simulate,
        progress=progress,
    )
    csd_entry["config"]["chosen_by"] = "smallest width within 0.5 points of float accuracy"
    if models is not None:
        models.update(dense=dense_model, csd=csd_model)
    return [dense_entry, csd_entry]


def run_demo(out_dir: Path, *, seed: int = 0, progress: bool = True, methods=None) -> dict:
    """Train an MLP on digits, code it with every available method, simulate, report."""
    start = time.perf_counter()
    dataset = load("digits", seed=seed)
    model, info = train_or_load(
        "mlp",
        "digits",
        epochs=DEMO_EPOCHS,
        seed=seed,
        dataset=dataset,
        hidden=DEMO_HIDDEN,
        lr=3e-3,
        progress=progress,
    )
    act_bits = 8
    models: dict = {}
    entries = baselines(model, dataset, act_bits=act_bits, models=models)
    for name in methods or list(METHODS):
        if METHODS[name].baseline:
            continue
        if progress:
            print(f"coding with {name} ...", flush=True)
        entry, models[name] = run_method(
            name, model, dataset, demo_config(name), act_bits=act_bits, **DEMO_RUNTIME.get(name, {})
        )
        entries.append(entry)
    add_hardware_figures(entries, models)
    report = build_report(
        "digits",
        "mlp",
        entries,
        float_model={
            "accuracy": float_accuracy(model, dataset.x_test, dataset.y_test),
            "hidden": list(DEMO_HIDDEN),
            "epochs": DEMO_EPOCHS,
            "cached": info["cached"],
        },
        seconds=round(time.perf_counter() - start, 2),
    )
    write_report(out_dir, report)
    return report


def run_compress(
    method: str,
    method_config,
    out_dir: Path,
    *,
    model_name: str = "mlp",
    data: str = "digits",
    data_root: str | None = None,
    float_epochs: int = 10,
    float_lr: float = 1e-3,
    hidden: tuple[int, ...] | None = None,
    seed: int = 0,
    act_bits: int = 8,
    simulate: bool = True,
    progress: bool = True,
    model=None,
    dataset=None,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Train or load the float model, code it with one method beside the baselines, report.

    ``model`` (a trained nn.Module) and ``dataset`` (anything
    :func:`fewops.data.adapt.as_dataset` takes) replace the zoo model and the named data set.
    ``workers``: processes coding layers (None: the CPU count; inside
    ``fewops.parallel.cluster`` the Dask cluster's workers).

    The run resumes: ``out_dir/run.json`` records its settings and the hashes of its inputs, and
    each finished stage is kept in ``out_dir/stages`` (:mod:`fewops.io.records`: the float
    model's record, the pruned and fine-tuned model, every coded layer), so the same call after a
    kill continues from there and writes the same report. A folder holding a run with other
    settings is refused unless ``overwrite``.
    """
    start = time.perf_counter()
    dataset = load(data, root=data_root, seed=seed) if dataset is None else as_dataset(dataset)
    record = RunRecord(out_dir)
    given = {
        "model_name": model_name,
        "data": data,
        "float_epochs": float_epochs,
        "float_lr": float_lr,
        "hidden": list(hidden) if hidden else None,
        "seed": seed,
        "act_bits": act_bits,
        "simulate": bool(simulate),
    }
    record.claim(run_settings(method, method_config, dataset, model, given), overwrite=overwrite)
    info = {"cached": False, "path": None}
    if model is None:
        model, info = train_or_load(
            model_name,
            data,
            epochs=float_epochs,
            seed=seed,
            dataset=dataset,
            hidden=tuple(hidden) if hidden and model_name == "mlp" else None,
            lr=float_lr,
            progress=progress,
        )
    record.finish("float", {"path": str(info["path"]), "weights": state_digest(model)})
    models: dict = {}
    entries = baselines(
        model, dataset, act_bits=act_bits, simulate=simulate, models=models, progress=progress
    )
    if not METHODS[method].baseline:
        runtime = {}
        if method == "lcc":  # its workers, and its pruned model kept in the output folder
            runtime = {"workers": workers, "prune_cache": record.stages / "prune"}
        with recording_layers(record.layer_store()):
            entry, models[method] = run_method(
                method,
                model,
                dataset,
                method_config,
                act_bits=act_bits,
                simulate=simulate,
                progress=progress,
                **runtime,
            )
        entries.append(entry)
    add_hardware_figures(entries, models, progress=progress)
    save_compressed(Path(out_dir) / "model", models[method], method, dataset, act_bits, simulate)
    report = build_report(
        data,
        model_name,
        entries,
        float_model={
            "accuracy": float_accuracy(model, dataset.x_test, dataset.y_test),
            "epochs": float_epochs,
            "cached": info["cached"],
            "path": str(info["path"]),
        },
        seconds=round(time.perf_counter() - start, 2),
    )
    write_report(out_dir, report)
    record.finish("report", {"sha256": sha256_hex((Path(out_dir) / "report.json").read_bytes())})
    return report


def state_digest(model) -> str:
    """sha256 of a model's weights (names, dtypes, shapes and bytes, in name order)."""
    state = model.state_dict()
    return sha256_hex(
        *(f"{k}:{array_digest(state[k].detach().cpu().numpy())}" for k in sorted(state))
    )


def run_settings(method: str, method_config, dataset, model, given: dict) -> dict:
    """What makes a compress run: its ``given`` arguments (not the runtime ones such as workers
    or progress), the method's config and the content hashes of its inputs (the data set's
    arrays; a given model's weights)."""
    data_hashes = {
        k: array_digest(np.asarray(getattr(dataset, k)))
        for k in ("x_train", "y_train", "x_test", "y_test")
    }
    return {
        **given,
        "method": method,
        "config": config_to_dict(method_config),
        "inputs": {"data": data_hashes, "model": None if model is None else state_digest(model)},
    }


def summary(report: dict) -> str:
    return markdown_table(report)
