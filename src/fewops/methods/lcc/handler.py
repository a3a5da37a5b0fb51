"""The LCC network pipeline (spec section 2.2): prune -> share -> LCC per layer.

``compress_(model, LCCConfig(...), data=dataset)`` runs, in place:

1. **prune** (when ``prune.prune_lambda > 0`` and data is given): training with the group-lasso
   proximal step over whole input columns/channels, physical removal of the zero groups
   (:mod:`fewops.methods.lcc.prune`), fine-tuning; optionally cached (``prune_cache=``);
2. **SQNR search**: each layer's SQNR is chosen so that network accuracy stays within
   ``search.tolerance`` of the float model. The search runs on a cheap proxy first (the weights
   plus Gaussian noise at the layer's SQNR: one forward pass per trial, no decomposition),
   uniform level first, then layer by layer from the most expensive down; the real codes are
   then checked and, if they miss, every layer is raised by ``search.db_step`` and coded again
   (``search.max_rounds`` times). The best found is kept and, if it misses, reported (with a
   :class:`ToleranceNotMet` warning), never silently accepted;
   with ``progressive.code_finetune_epochs > 0`` the layers are instead searched, coded and
   followed by fine-tuning of the float rest group by group (:mod:`fewops.methods.lcc.stages`);
3. **share + LCC** per layer, layers in parallel processes
   (:func:`fewops.codes.lcc.column_sharing.share_and_decompose`): affinity-propagation column
   sharing at the layer's SQNR plus ``share_margin_db``, LCC of the narrower matrix, one graph;
4. the layers become :class:`~fewops.nn.coded.CodedLinear`/``CodedConv2d``.

The per-stage report (JSON-able) is the ``report`` of the :class:`~fewops.nn.api.CompressResult`.
The pieces live in :mod:`fewops.methods.lcc.config` (config, presets, checks),
:mod:`fewops.methods.lcc.search` (proxy search, parallel coding) and
:mod:`fewops.methods.lcc.stages` (cached pruning, progressive coding).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fewops.codes import csd
from fewops.data.adapt import as_dataset
from fewops.io.json_values import jsonable
from fewops.methods.lcc.config import LCCCode, LCCConfig, ToleranceNotMet, check_codable
from fewops.methods.lcc.search import (
    WeightSwap,
    accuracy,
    code_layers,
    csd_adds,
    search_levels,
)
from fewops.methods.lcc.stages import code_progressively, prune_stage
from fewops.nn.api import MethodOutcome, register, set_submodule, target_layers
from fewops.nn.coded import coded_like, layer_matrix
from fewops.nn.fold import fold_batchnorm_
from fewops.nn.geometry import output_positions

__all__ = ["run_lcc_pipeline"]


def _prune_names(model: nn.Module, names: list[str], cfg: LCCConfig) -> list[str]:
    """Layers to regularise: ``cfg.prune.prune_layers``, else every coded layer with >= 2 groups.

    A layer with one input group (a stem convolution on a grey image) could only lose all of
    it, which removal refuses; leaving it out keeps a default run from failing on it.
    """
    if cfg.prune.prune_layers is not None:
        return list(cfg.prune.prune_layers)
    keep = []
    for n in names:
        module = model.get_submodule(n)
        groups = module.in_features if isinstance(module, nn.Linear) else module.in_channels
        if groups > 1:
            keep.append(n)
    return keep


def _search_set(data, cfg: LCCConfig):
    if cfg.validation is not None:
        x, y = cfg.validation
        return (
            torch.as_tensor(np.asarray(x), dtype=torch.float32),
            torch.as_tensor(np.asarray(y), dtype=torch.int64),
            "given",
        )
    if data is None:
        return None, None, None
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    n = min(cfg.search.search_samples, len(y))
    idx = np.random.default_rng(cfg.train.seed).choice(len(y), size=n, replace=False)
    return (
        torch.as_tensor(x[idx]),
        torch.as_tensor(y[idx], dtype=torch.int64),
        f"{n} training samples",
    )


def _layer_codes(cfg: LCCConfig, targets) -> dict[str, LCCCode]:
    """Each target layer's code; a per-layer target_db needs the config's fixed-SQNR mode."""
    codes = {name: layer_cfg.code for name, _, layer_cfg in targets}
    if cfg.code.target_db is None:
        fixed = [n for n, c in codes.items() if c.target_db is not None]
        if fixed:
            raise ValueError(
                f"Layer {fixed[0]!r} overrides target_db={codes[fixed[0]].target_db!r}, but the "
                "config searches every layer's SQNR (code.target_db=None); set code.target_db to "
                "code all layers at fixed SQNRs, or leave target_db out of the overrides."
            )
    else:
        missing = [n for n, c in codes.items() if c.target_db is None]
        if missing:
            raise ValueError(
                f"Layer {missing[0]!r} overrides target_db=None, but the config codes every "
                f"layer at a fixed SQNR (code.target_db={cfg.code.target_db!r}); give that layer "
                "an SQNR instead."
            )
    return codes


def _code_at_once(
    model,
    names,
    modules,
    mats,
    cost,
    positions,
    x,
    y,
    float_acc,
    floor,
    cfg,
    report,
    codes,
    workers,
):
    """Proxy search for all layers at once, then real codes raised by db_step until they pass."""
    search = cfg.search
    if cfg.code.target_db is not None:
        levels = {n: float(codes[n].target_db) for n in names}
        report["search"] = {"mode": "fixed", "target_db": cfg.code.target_db}
    else:
        proxy_floor = float_acc - search.proxy_share * search.tolerance
        t0 = time.perf_counter()
        levels, trials = search_levels(model, mats, cost, x, y, proxy_floor, cfg)
        report["search"] = {
            "mode": "search",
            "tolerance": search.tolerance,
            "proxy_floor": proxy_floor,
            "proxy_levels": dict(levels),
            "proxy_trials": len(trials),
            "proxy_seconds": round(time.perf_counter() - t0, 2),
            "rounds": [],
        }
    best = None
    rounds = search.max_rounds if cfg.code.target_db is None else 1
    for _ in range(rounds):
        t0 = time.perf_counter()
        coded, seconds = code_layers(mats, levels, cfg, codes, workers=workers)
        acc = None
        if x is not None:
            swap = WeightSwap(model, modules)
            swap.set({n: coded[n].matrix for n in names})
            try:
                acc = accuracy(model, x, y)
            finally:
                swap.restore()
        adds = int(sum(coded[n].extra["adds"] * positions[n] for n in names))
        entry = {
            "levels": dict(levels),
            "accuracy": acc,
            "adds": adds,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if cfg.code.target_db is None:
            report["search"]["rounds"].append(entry)
        key = (acc if acc is not None else 0.0, -adds)
        if best is None or key > best[0]:
            best = (key, coded, seconds, dict(levels), acc)
        if floor is None or acc >= floor:
            best = (key, coded, seconds, dict(levels), acc)
            break
        levels = {n: min(v + search.db_step, 200.0) for n, v in levels.items()}
    _, coded, seconds, levels, acc = best
    return coded, seconds, levels, acc


def run_lcc_pipeline(
    model: nn.Module,
    cfg: LCCConfig,
    targets=None,
    *,
    data=None,
    input_shape=None,
    workers: int | None = None,
    progress: bool = False,
    prune_cache: str | Path | None = None,
    train_threads: int | None = None,
) -> dict:
    """Run the pipeline in place (see the module docstring); returns the stage report.

    ``data`` (a Dataset) is needed for pruning and for the SQNR search; ``cfg.validation``
    replaces the default search set (``search.search_samples`` training samples). Without data,
    ``input_shape`` (C, H, W) lets conv layers count their output positions. How the run uses
    the machine: ``workers`` processes code layers in parallel (None: the CPU count),
    ``progress`` shows training progress bars, ``prune_cache`` is a folder keeping pruned models
    for the next run with the same weights, data and settings, ``train_threads`` the torch
    threads while training (None: torch's default).
    """
    t_start = time.perf_counter()
    check_codable(model, cfg)
    if targets is None:
        targets = target_layers(model, cfg)
    codes = _layer_codes(cfg, targets)
    names = [n for n, _, _ in targets]
    search = cfg.search
    fixed = cfg.code.target_db is not None
    progressive = cfg.progressive.code_finetune_epochs > 0
    x, y, source = _search_set(data, cfg)
    if not fixed and x is None:
        raise ValueError(
            "LCCConfig(code=LCCCode(target_db=None)) searches per-layer SQNRs against accuracy "
            "and needs data: pass data=dataset (or LCCConfig(validation=(x, y))), or set "
            "code.target_db to code every layer at one SQNR."
        )
    if cfg.prune.prune_lambda > 0 and data is None:
        raise ValueError(
            "Pruning (prune.prune_lambda > 0) retrains the model and needs data=dataset."
        )
    report: dict = {"config": cfg.to_dict(), "search_set": source}
    sample = None
    if x is not None:
        sample = x[:1]
    elif input_shape is not None:
        sample = torch.zeros((1, *input_shape))
    else:
        first = next((m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)), None)
        if isinstance(first, nn.Linear):
            sample = torch.zeros((1, first.in_features))
    report["positions_known"] = sample is not None
    positions = (
        output_positions(model, sample, names) if sample is not None else dict.fromkeys(names, 1)
    )
    float_acc = accuracy(model, x, y) if x is not None else None
    report["float_accuracy"] = float_acc

    def csd_total(mats):
        return int(sum(csd_adds(mats[n], cfg.csd_bits) * positions[n] for n in mats))

    mats0 = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
    stage = {"csd_bits": cfg.csd_bits, "csd_adds": csd_total(mats0)}
    stage["entries"] = int(sum(m.size for m in mats0.values()))
    report["original"] = stage

    # 1. pruning
    if cfg.prune.prune_lambda > 0:
        t0 = time.perf_counter()
        pr, cached = prune_stage(
            model,
            data,
            _prune_names(model, names, cfg),
            cfg,
            prune_cache=prune_cache,
            progress=progress,
            train_threads=train_threads,
        )
        mats1 = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
        report["prune"] = {
            "lambda": cfg.prune.prune_lambda,
            **pr,
            "cached": cached,
            "accuracy": accuracy(model, x, y),
            "entries": int(sum(m.size for m in mats1.values())),
            "nonzero_columns": int(sum(np.any(m != 0, axis=0).sum() for m in mats1.values())),
            "csd_adds": csd_total(mats1),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        positions = output_positions(model, sample, names)
    if cfg.fold_batchnorm and not (not fixed and progressive):
        report["fold"] = fold_batchnorm_(model, names)  # progressive coding folds per group
    mats = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
    cost = {n: mats[n].size * positions[n] for n in names}

    # 2.-3. SQNR search and coding: all layers at once, or group by group with fine-tuning
    floor = None if float_acc is None else float_acc - search.tolerance
    modules = {n: model.get_submodule(n) for n in names}
    if not fixed:
        proxy_floor = float_acc - search.proxy_share * search.tolerance
        pruned_acc = report.get("prune", {}).get("accuracy")
        if pruned_acc is not None and pruned_acc < proxy_floor:
            report["prune"]["note"] = (
                f"pruning alone lost {100 * (float_acc - pruned_acc):.2f} points, more than the "
                f"{100 * search.proxy_share * search.tolerance:.2f} the search may use; every "
                "layer starts at db_max. Use a smaller prune_lambda or more fine-tuning."
            )
    if not fixed and progressive:
        if data is None:
            raise ValueError(
                "Progressive coding (progressive.code_finetune_epochs > 0) fine-tunes the model "
                "and needs data=dataset."
            )
        coded, seconds, levels, mats, acc, prog = code_progressively(
            model,
            names,
            positions,
            data,
            x,
            y,
            float_acc,
            cfg,
            codes=codes,
            workers=workers,
            progress=progress,
            train_threads=train_threads,
        )
        modules = {n: model.get_submodule(n) for n in names}
        report["fold"] = [f for g in prog["groups"] for f in g["folded"]]
        report["search"] = {
            "mode": "progressive",
            "tolerance": search.tolerance,
            "levels": dict(levels),
            "groups": [
                {
                    k: g[k]
                    for k in ("layers", "proxy_floor", "proxy_levels", "proxy_trials", "rounds")
                }
                for g in prog["groups"]
            ],
        }
        report["code_finetune"] = {
            **{k: prog[k] for k in ("epochs", "lr", "slack", "seconds")},
            "groups": [
                {
                    "layers": g["layers"],
                    "accuracy_before": g["accuracy_before"],
                    "accuracy_coded": g["rounds"][-1]["accuracy_coded"],
                    "accuracy": g["accuracy"],
                    "within_floor": g["met"],
                }
                for g in prog["groups"]
            ],
        }
    else:
        coded, seconds, levels, acc = _code_at_once(
            model,
            names,
            modules,
            mats,
            cost,
            positions,
            x,
            y,
            float_acc,
            floor,
            cfg,
            report,
            codes,
            workers,
        )
    met = floor is None or acc >= floor
    report["accuracy"] = acc
    report["tolerance_met"] = met
    if not met:
        warnings.warn(
            f"LCC could not keep accuracy within {search.tolerance:g} of the float model "
            f"({float_acc:.4f}): the best coding found reaches {acc:.4f} on the search set. "
            "It is used and reported under report['search']; raise db_max or the tolerance.",
            ToleranceNotMet,
            stacklevel=4,  # the caller of compress_
        )

    # 4. swap the layers and report each stage
    layers = {}
    for n in names:
        module = modules[n]
        c = coded[n]
        w = mats[n]
        ex = c.extra
        bits = csd.bits_for_sqnr(w, ex["sqnr_db"]) if math.isfinite(ex["sqnr_db"]) else None
        layers[n] = {
            "shape": list(w.shape),
            "positions": positions[n],
            "level_db": levels[n],
            **ex,
            "csd_bits_equal_sqnr": bits,
            "csd_adds_equal_sqnr": None if bits is None else csd_adds(w, bits),
            "seconds": round(seconds[n], 3),
        }
        set_submodule(model, n, coded_like(module, c))
    report["share"] = {
        "inputs_read": int(sum(coded[n].extra["inputs_read"] for n in names)),
        "clusters": int(sum(coded[n].extra["clusters"] for n in names)),
        "presum_adds": int(sum(coded[n].extra["presum_adds"] * positions[n] for n in names)),
        "csd_adds": int(sum(coded[n].extra["shared_csd_adds"] * positions[n] for n in names)),
    }
    report["lcc"] = {
        "adds": int(sum(coded[n].extra["adds"] * positions[n] for n in names)),
        "lcc_adds": int(sum(coded[n].extra["lcc_adds"] * positions[n] for n in names)),
        "csd_adds_equal_sqnr": int(
            sum((layers[n]["csd_adds_equal_sqnr"] or 0) * positions[n] for n in names)
        ),
        "layers": layers,
    }
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    return jsonable(report)


@register(LCCConfig)
def _lcc(
    model,
    config,
    targets,
    data=None,
    input_shape=None,
    workers: int | None = None,
    progress: bool = False,
    prune_cache: str | Path | None = None,
    train_threads: int | None = None,
) -> MethodOutcome:
    report = run_lcc_pipeline(
        model,
        config,
        targets,
        data=None if data is None else as_dataset(data),
        input_shape=input_shape,
        workers=workers,
        progress=progress,
        prune_cache=prune_cache,
        train_threads=train_threads,
    )
    return MethodOutcome(report=report)
