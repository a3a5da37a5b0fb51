"""Training stages of the LCC pipeline: cached group-lasso pruning and progressive coding.

*Progressive coding* (``LCCConfig(progressive=CodeFinetune(code_finetune_epochs=k))``) codes the layers group by group in
model order. After each group is coded its weights are frozen, and whatever is still float (the
later layers, every bias, normalisation parameters) is fine-tuned for k epochs, so the next
groups and the biases absorb the coding error. Each group is searched on the noise proxy with
the earlier groups already coded, so a layer can run at a lower SQNR than it could if every
layer were coded at once. Masked (zero) input groups of float layers are kept at zero.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fewops.io.tensors import read_tensors, save_tensors
from fewops.methods.lcc.config import LCCCode, LCCConfig
from fewops.methods.lcc.prune import KeepZero, prune_by_group_lasso, zero_groups
from fewops.methods.lcc.search import accuracy, code_layers, search_levels, set_weight
from fewops.nn.coded import layer_matrix
from fewops.nn.fold import fold_batchnorm_
from fewops.train.fit import fit
from fewops.train.recipe import Recipe


def fit_options(recipe: Recipe, train_threads: int | None) -> dict:
    """What every training of the pipeline takes from the recipe besides epochs, rate and seed."""
    return {
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "weight_decay": recipe.weight_decay,
        "num_threads": train_threads,
    }


# -- pruning, with an optional cache ----------------------------------------------------------


def _prune_key(model: nn.Module, data, names: list[str], cfg: LCCConfig) -> str:
    """Hash of everything the pruned model depends on: weights, training set, settings."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for arr in (data.x_train, data.y_train):
        a = np.ascontiguousarray(np.asarray(arr))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    recipe = cfg.train
    settings = {
        "lambda": cfg.prune.prune_lambda,
        "epochs": recipe.epochs,
        "finetune": cfg.prune.finetune_epochs,
        "lr": recipe.lr,
        "relative": cfg.prune.prune_relative,
        "seed": recipe.seed,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "weight_decay": recipe.weight_decay,
        "lr_schedule": recipe.lr_schedule,
        "names": list(names),
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


PRUNE_CACHE_FORMAT = "fewops-pruned-model-1"


def _adopt(model: nn.Module, other: nn.Module) -> None:
    """Make ``model`` (in place) the module ``other``: its children, parameters and buffers."""
    for name in list(model._modules):
        if name not in other._modules:
            del model._modules[name]
    for name, child in other.named_children():
        setattr(model, name, child)
    for name, p in other._parameters.items():
        model._parameters[name] = p
    for name, b in other._buffers.items():
        model._buffers[name] = b


def _resize_to(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Give ``model``'s layers the (pruned) shapes of ``tensors``, then load them strictly.

    Pruning removes input groups and feeder outputs, so a pruned Linear, Conv2d or BatchNorm has
    fewer features than the float model; its sizes are read back from the saved weights.
    """
    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        for attr, value in list(module._parameters.items()) + list(module._buffers.items()):
            saved = tensors.get(prefix + attr)
            if value is None or saved is None or saved.shape == value.shape:
                continue
            if attr in module._parameters:
                module._parameters[attr] = nn.Parameter(
                    saved.clone(), requires_grad=value.requires_grad
                )
            else:
                module._buffers[attr] = saved.clone()
        weight = tensors.get(prefix + "weight")
        if weight is None:
            continue
        if isinstance(module, nn.Linear) and weight.dim() == 2:
            module.out_features, module.in_features = (int(v) for v in weight.shape)
        elif isinstance(module, nn.Conv2d) and weight.dim() == 4:
            module.out_channels = int(weight.shape[0])
            module.in_channels = int(weight.shape[1]) * module.groups
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.num_features = int(weight.shape[0])
    model.load_state_dict(tensors, strict=True)


def load_pruned(path: Path, model: nn.Module, key: str) -> dict | None:
    """The report of the cache entry at ``path`` with ``model`` made the pruned model, or None
    (after a warning naming the file) when the entry is damaged, tampered with or does not fit.

    The entry is a safetensors file (never unpickled) whose content hash and input key are
    checked; anything that fails is pruned again, not trusted.
    """
    try:
        tensors, meta = read_tensors(
            path, expected_format=PRUNE_CACHE_FORMAT, what="pruned-model cache entry"
        )
        if meta.get("key") != key:
            raise ValueError(f"The pruned-model cache entry {path} was made from other inputs.")
        report = json.loads(meta["report"])
        if not isinstance(report, dict):
            raise ValueError(f"The pruned-model cache entry {path} has no report.")
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise ValueError(f"The pruned-model cache entry {path} holds NaN or inf in {bad[0]}.")
        pruned = copy.deepcopy(model)
        _resize_to(pruned, tensors)
    except (ValueError, KeyError, RuntimeError, RecursionError) as exc:
        warnings.warn(
            f"Ignoring the pruned-model cache entry {path} ({exc}); pruning again.", stacklevel=3
        )
        return None
    _adopt(model, pruned)
    return report


def prune_stage(
    model: nn.Module,
    data,
    names: list[str],
    cfg: LCCConfig,
    *,
    prune_cache: str | Path | None = None,
    progress: bool = False,
    train_threads: int | None = None,
) -> tuple[dict, bool]:
    """Group-lasso pruning of ``names`` in place; (PruneReport dict, whether it was cached).

    ``prune_cache``: a folder where the pruned model is kept, keyed by the float weights, the
    training set and the pruning settings, so a second run with the same ones skips training.
    Entries are safetensors files with a content hash and the key of their inputs; a damaged or
    tampered entry is pruned again (with a warning), never trusted.
    """
    path = None
    key = _prune_key(model, data, names, cfg)
    if prune_cache is not None:
        path = Path(prune_cache) / f"pruned-{key}.safetensors"
        if path.exists():
            report = load_pruned(path, model, key)
            if report is not None:
                return report, True
    pr = prune_by_group_lasso(
        model,
        data,
        lam=cfg.prune.prune_lambda,
        epochs=cfg.train.epochs,
        lr=cfg.train.lr,
        lr_schedule=cfg.train.lr_schedule,
        finetune_epochs=cfg.prune.finetune_epochs,
        names=names,
        seed=cfg.train.seed,
        progress=progress,
        relative=cfg.prune.prune_relative,
        fit_options=fit_options(cfg.train, train_threads),
    ).to_dict()
    if path is not None:
        metadata = {"format": PRUNE_CACHE_FORMAT, "key": key, "report": json.dumps(pr)}
        save_tensors(path, model.state_dict(), metadata)
    return pr, False


# -- progressive coding -------------------------------------------------------------------------


def code_groups(names: list[str], groups: int | None) -> list[list[str]]:
    """``names`` (model order) in ``groups`` contiguous groups of near-equal size (None: 1 each)."""
    if groups is None or groups >= len(names):
        return [[n] for n in names]
    return [list(g) for g in np.array_split(np.array(names, dtype=object), groups) if len(g)]


def _finetune(
    model: nn.Module,
    data,
    float_names: list[str],
    cfg: LCCConfig,
    seed: int,
    *,
    progress: bool,
    train_threads: int | None,
) -> bool:
    """Fine-tune the trainable parameters; zero groups of float layers stay zero."""
    if cfg.progressive.code_finetune_epochs == 0 or not any(
        p.requires_grad for p in model.parameters()
    ):
        return False
    masks = {}
    if float_names:
        masks = {n: z for n, z in zero_groups(model, 0.0, float_names).items() if bool(z.any())}
    fit(
        model,
        data,
        epochs=cfg.progressive.code_finetune_epochs,
        lr=cfg.progressive.code_finetune_lr or cfg.train.lr,
        seed=seed,
        progress=progress,
        after_step=KeepZero(masks) if masks else None,
        lr_schedule="cosine",
        ema_decay=cfg.train.ema,
        **fit_options(cfg.train, train_threads),
    )
    return True


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def code_progressively(
    model: nn.Module,
    names: list[str],
    positions: dict[str, int],
    data,
    x,
    y,
    float_acc: float,
    cfg: LCCConfig,
    *,
    codes: dict[str, LCCCode] | None = None,
    workers: int | None = None,
    progress: bool = False,
    train_threads: int | None = None,
) -> tuple[dict, dict, dict, dict, float, dict]:
    """Code ``names`` group by group with fine-tuning in between (see the module docstring).

    ``codes`` are the layers' codes (default ``cfg.code`` for all), ``workers`` the processes
    coding a group's layers. Returns (coded, seconds, levels, matrices at coding time, final search-set accuracy,
    report). The weights of the coded layers are left set to their decoded matrices and
    frozen; the caller swaps in the coded modules.
    """
    modules = {n: model.get_submodule(n) for n in names}
    search, prog = cfg.search, cfg.progressive
    keep_floor = float_acc - search.proxy_share * search.tolerance
    final_floor = float_acc - search.tolerance
    groups = code_groups(names, prog.code_groups)
    coded_all: dict = {}
    seconds_all: dict = {}
    levels_all: dict = {}
    mats_all: dict = {}
    group_reports = []
    acc = accuracy(model, x, y)  # after pruning, if any
    t_stage = time.perf_counter()
    for gi, group in enumerate(groups):
        last = gi == len(groups) - 1
        later = [n for g in groups[gi + 1 :] for n in g]
        folded = fold_batchnorm_(model, group) if cfg.fold_batchnorm else []
        mats = {n: layer_matrix(modules[n]).numpy() for n in group}
        cost = {n: mats[n].size * positions[n] for n in group}
        # A group followed by fine-tuning may lose a little more before it; nothing follows
        # the last one but the biases, so it gets no slack.
        # Every group's proxy search is measured against the accuracy it starts from when that
        # is already below the floor (pruning or an earlier group may have used the budget;
        # the fine-tuning that follows can win it back). For the last group the float floor
        # would be out of reach at any SQNR and pin every layer at db_max: its rounds are
        # still judged against the float-relative floor below.
        start = min(keep_floor, acc - search.proxy_share * search.tolerance)
        proxy_floor = start - (0.0 if last else prog.code_finetune_slack)
        t0 = time.perf_counter()
        levels, trials = search_levels(model, mats, cost, x, y, proxy_floor, cfg)
        entry = {
            "layers": list(group),
            "folded": folded,
            "accuracy_before": acc,
            "proxy_floor": proxy_floor,
            "proxy_levels": dict(levels),
            "proxy_trials": len(trials),
            "proxy_seconds": round(time.perf_counter() - t0, 2),
            "rounds": [],
        }
        floor = final_floor if last else start
        before = _state(model)
        best = None
        for r in range(search.max_rounds):
            t0 = time.perf_counter()
            coded, seconds = code_layers(mats, levels, cfg, codes, workers=workers)
            for n in group:
                set_weight(modules[n], coded[n].matrix)
                modules[n].weight.requires_grad_(False)
            acc_coded = accuracy(model, x, y)
            tuned = _finetune(
                model,
                data,
                later,
                cfg,
                seed=cfg.train.seed + 1000 + 10 * gi + r,
                progress=progress,
                train_threads=train_threads,
            )
            acc = accuracy(model, x, y)
            adds = int(sum(coded[n].extra["adds"] * positions[n] for n in group))
            entry["rounds"].append(
                {
                    "levels": dict(levels),
                    "accuracy_coded": acc_coded,
                    "accuracy": acc,
                    "finetuned": tuned,
                    "adds": adds,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            key = (acc, -adds)
            if best is None or acc >= floor or key > best[0]:
                best = (key, coded, seconds, dict(levels), acc, _state(model))
            if acc >= floor:
                break
            model.load_state_dict(before)
            levels = {n: min(v + search.db_step, 200.0) for n, v in levels.items()}
        _, coded, seconds, levels, acc, state = best
        model.load_state_dict(state)
        for n in group:
            modules[n].weight.requires_grad_(False)
        entry["accuracy"] = acc
        entry["met"] = acc >= floor
        group_reports.append(entry)
        coded_all.update(coded)
        seconds_all.update(seconds)
        levels_all.update(levels)
        mats_all.update(mats)
    report = {
        "epochs": prog.code_finetune_epochs,
        "lr": prog.code_finetune_lr or cfg.train.lr,
        "slack": prog.code_finetune_slack,
        "groups": group_reports,
        "seconds": round(time.perf_counter() - t_stage, 2),
    }
    return coded_all, seconds_all, levels_all, mats_all, acc, report
