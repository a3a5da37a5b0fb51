"""The LCC network pipeline (spec section 2.2): prune -> share -> LCC per layer.

``compress_(model, LCCConfig(...), data=dataset)`` runs, in place:

1. **prune** (when ``prune_lambda > 0`` and data is given): training with the group-lasso
   proximal step over whole input columns/channels, physical removal of the zero groups
   (:mod:`fewops.nn.prune`), fine-tuning;
2. **SQNR search**: each layer's SQNR is chosen so that network accuracy stays within
   ``tolerance`` of the float model. The search runs on a cheap proxy first (the weights plus
   Gaussian noise at the layer's SQNR: one forward pass per trial, no decomposition), uniform
   level first, then layer by layer from the most expensive down; the real codes are then
   checked and, if they miss, every layer is raised by ``db_step`` and coded again
   (``max_rounds`` times). The best found is kept and, if it misses, reported (with a
   :class:`ToleranceNotMet` warning), never silently accepted;
3. **share + LCC** per layer, layers in parallel processes
   (:func:`fewops.codes.share.share_and_decompose`): affinity-propagation column sharing at
   the layer's SQNR plus ``share_margin_db``, LCC of the narrower matrix, one graph;
4. the layers become :class:`~fewops.nn.coded.CodedLinear`/``CodedConv2d``.

The per-stage report (JSON-able) is stored as ``model.fewops_stages``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from fewops.codes import csd
from fewops.codes.share import share_and_decompose
from fewops.nn.api import LayerSelection, register, set_submodule, target_layers
from fewops.nn.coded import CodedConv2d, CodedLinear, coded_like, layer_matrix

ALGORITHMS = ("dmp", "rs", "fs", "mixed", "grow", "best")
# Modules with weights that are not matrix products of their input: allowed, left in float.
PER_CHANNEL_WEIGHTS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.PReLU,
)


class ToleranceNotMet(UserWarning):
    """The accuracy tolerance could not be met; the best coding found is used and reported."""


@dataclass(frozen=True)
class LCCConfig:
    """Linear computation coding of a network, with optional pruning and column sharing.

    SQNR: ``target_db`` codes every layer at that SQNR (no search, no data needed); None
    searches per-layer SQNRs in ``db_min..db_max`` (steps of ``db_step``) keeping accuracy
    within ``tolerance`` (a fraction: 0.005 = 0.5 points) of the float model.
    LCC: ``algorithm`` ("dmp", "rs", "fs" = fs-LCC, "mixed", "grow", "best"), ``S`` terms per
    wiring row, ``mem`` beam width (rs), ``slice_width`` (None: about log2(rows)).
    Pruning: ``prune_lambda`` (0 = off), ``prune_layers`` (names; None = every coded layer),
    ``prune_epochs``, ``finetune_epochs``, ``lr``; ``prune_relative`` scales each layer's
    threshold by its RMS group norm (lambda is then a unitless rate, see
    :class:`fewops.nn.prune.GroupProx`); ``train_threads`` torch threads while training.
    Sharing: ``share``; clusters are kept at the layer's SQNR + ``share_margin_db``.
    ``workers`` processes code layers in parallel (None: CPU count). ``search_samples``
    training samples form the search set unless ``validation=(x, y)`` is passed.
    """

    algorithm: str = "dmp"
    S: int = 2
    mem: int = 8
    slice_width: int | None = None
    target_db: float | None = None
    tolerance: float = 0.005
    db_min: float = 8.0
    db_max: float = 40.0
    db_step: float = 2.0
    max_rounds: int = 3
    proxy_share: float = 0.6
    prune_lambda: float = 0.0
    prune_layers: tuple[str, ...] | None = None
    prune_epochs: int = 3
    finetune_epochs: int = 1
    lr: float = 1e-3
    prune_relative: bool = True
    train_threads: int | None = None
    share: bool = True
    share_margin_db: float = 6.0
    csd_bits: int = 8
    workers: int | None = None
    search_samples: int = 5000
    seed: int = 0
    progress: bool = False
    layers: LayerSelection = field(default_factory=LayerSelection)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Unknown LCC algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}."
            )
        if self.target_db is not None and not (0 < self.target_db <= 200):
            raise ValueError(f"target_db must be in (0, 200] dB; got {self.target_db}.")
        if not (0 <= self.tolerance < 1):
            raise ValueError(
                f"tolerance is an accuracy fraction in [0, 1) (0.005 = 0.5 points); got {self.tolerance}."
            )
        if not (0 < self.db_min <= self.db_max <= 200) or self.db_step <= 0:
            raise ValueError(
                f"Need 0 < db_min <= db_max <= 200 and db_step > 0; got db_min={self.db_min}, "
                f"db_max={self.db_max}, db_step={self.db_step}."
            )
        if not (self.prune_lambda >= 0 and math.isfinite(self.prune_lambda)):
            raise ValueError(f"prune_lambda must be a finite number >= 0; got {self.prune_lambda}.")
        if not (0 < self.proxy_share <= 1):
            raise ValueError(f"proxy_share must be in (0, 1]; got {self.proxy_share}.")
        if self.max_rounds < 1 or self.S < 1 or self.mem < 1:
            raise ValueError("max_rounds, S and mem must each be at least 1.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = {"skip": list(self.layers.skip), "overrides": dict(self.layers.overrides)}
        return d


# -- checks and helpers ---------------------------------------------------------------------


def check_codable(model: nn.Module, config: LCCConfig) -> None:
    """Raise a ValueError naming the first layer with weights that the pipeline cannot code."""
    skip = config.layers.skip
    import re

    for name, module in model.named_modules():
        if any(p == name or re.fullmatch(p, name) for p in skip):
            continue
        own = list(module.parameters(recurse=False))
        if not own or isinstance(module, PER_CHANNEL_WEIGHTS + (CodedLinear, CodedConv2d)):
            continue
        why = None
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                why = f"a grouped convolution (groups={module.groups})"
            elif module.padding_mode != "zeros":
                why = f"a convolution with padding_mode={module.padding_mode!r}"
        elif not isinstance(module, nn.Linear):
            why = f"a {type(module).__name__}"
        if why is not None:
            raise ValueError(
                f"LCC cannot code layer {name!r}: it is {why}; the pipeline codes Linear and "
                f"ungrouped, zero-padded Conv2d layers. Skip it with "
                f"LCCConfig(layers=LayerSelection(skip=({name!r},))) to keep it in float."
            )


def _positions(model: nn.Module, names: list[str], sample: torch.Tensor) -> dict[str, int]:
    """Output positions per layer (1 for Linear, H*W of the output for Conv2d)."""
    out: dict[str, int] = {}
    hooks = []
    for name in names:
        module = model.get_submodule(name)

        def hook(mod, inp, res, name=name):
            out[name] = int(np.prod(res.shape[2:])) if res.dim() > 2 else 1

        hooks.append(module.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return out


def _set_weight(module: nn.Module, w: np.ndarray) -> None:
    t = torch.as_tensor(w, dtype=module.weight.dtype, device=module.weight.device)
    module.weight.data = t.reshape(module.weight.shape)


def _accuracy(model, x, y) -> float:
    from fewops.nn.train import evaluate

    return float(evaluate(model, x, y))


def csd_adds(w: np.ndarray, bits: int) -> int:
    """Dense CSD adds of W at ``bits`` bits (per output position)."""
    if not np.any(w):
        return 0
    return csd.adds_for_integer_matrix(csd.quantize(w, bits)[0])


# -- SQNR search on the noise proxy ---------------------------------------------------------


class _Swapper:
    """Temporarily replace layer weights (restored on exit)."""

    def __init__(self, model, modules: dict[str, nn.Module]):
        self.model, self.modules = model, modules
        self.saved = {n: m.weight.data.clone() for n, m in modules.items()}

    def set(self, weights: dict[str, np.ndarray]) -> None:
        for n, w in weights.items():
            _set_weight(self.modules[n], w)

    def restore(self) -> None:
        for n, m in self.modules.items():
            m.weight.data = self.saved[n].clone()


def _noisy(w: np.ndarray, db: float, seed: int) -> np.ndarray:
    """W plus i.i.d. Gaussian noise at SQNR ``db`` on its nonzero columns (zero ones stay 0)."""
    cols = np.any(w != 0, axis=0)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(w.shape) * cols
    scale = np.linalg.norm(w) * 10 ** (-db / 20) / max(np.linalg.norm(noise), 1e-300)
    return w + scale * noise


def search_levels(
    model, mats: dict[str, np.ndarray], cost: dict[str, float], x, y, floor: float, cfg: LCCConfig
) -> tuple[dict[str, float], list[dict]]:
    """Per-layer SQNR on the noise proxy: lowest uniform level, then layer by layer."""
    swap = _Swapper(model, {n: model.get_submodule(n) for n in mats})
    trials: list[dict] = []
    seeds = {n: cfg.seed * 7919 + i for i, n in enumerate(mats)}

    def acc(levels: dict[str, float]) -> float:
        swap.set({n: _noisy(mats[n], levels[n], seeds[n]) for n in mats})
        a = _accuracy(model, x, y)
        trials.append({"levels": dict(levels), "accuracy": a})
        return a

    grid = np.arange(cfg.db_max, cfg.db_min - 1e-9, -cfg.db_step)
    try:
        levels = dict.fromkeys(mats, float(cfg.db_max))
        for d in grid:
            trial = dict.fromkeys(mats, float(d))
            if acc(trial) >= floor:
                levels = trial
            else:
                break
        for n in sorted(mats, key=lambda k: -cost[k]):
            while levels[n] - cfg.db_step >= cfg.db_min - 1e-9:
                trial = dict(levels, **{n: levels[n] - cfg.db_step})
                if acc(trial) >= floor:
                    levels = trial
                else:
                    break
    finally:
        swap.restore()
    return levels, trials


# -- coding layers in parallel -------------------------------------------------------------


def _code_job(args):
    name, w, db, kwargs = args
    t0 = time.perf_counter()
    try:
        coded = share_and_decompose(w, db, **kwargs)
    except ValueError as exc:
        raise ValueError(
            f"LCC of layer {name!r} ({w.shape[0]}x{w.shape[1]}) failed: {exc}"
        ) from exc
    return name, coded, time.perf_counter() - t0


def code_layers(
    mats: dict[str, np.ndarray], levels: dict[str, float], cfg: LCCConfig
) -> tuple[dict, dict[str, float]]:
    """Share + LCC each layer at its level; layers run in ``cfg.workers`` processes."""
    import os

    kwargs = {
        "share_margin_db": cfg.share_margin_db if cfg.share else None,
        "algorithm": cfg.algorithm,
        "S": cfg.S,
        "mem": cfg.mem,
        "slice_width": cfg.slice_width,
        "seed": cfg.seed,
        "workers": 1,
        "reference_bits": cfg.csd_bits,
    }
    jobs = [(n, mats[n], levels[n], kwargs) for n in sorted(mats, key=lambda k: -mats[k].size)]
    workers = (os.cpu_count() or 1) if cfg.workers is None else int(cfg.workers)
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results = [_code_job(j) for j in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_code_job, jobs))
    return {n: c for n, c, _ in results}, {n: s for n, _, s in results}


# -- the pipeline ---------------------------------------------------------------------------


def _prune_names(model: nn.Module, names: list[str], cfg: LCCConfig) -> list[str]:
    """Layers to regularise: ``cfg.prune_layers``, else every coded layer with >= 2 groups.

    A layer with one input group (a stem convolution on a grey image) could only lose all of
    it, which removal refuses; leaving it out keeps a default run from failing on it.
    """
    if cfg.prune_layers is not None:
        return list(cfg.prune_layers)
    keep = []
    for n in names:
        module = model.get_submodule(n)
        groups = module.in_features if isinstance(module, nn.Linear) else module.in_channels
        if groups > 1:
            keep.append(n)
    return keep


def _search_set(data, validation, cfg: LCCConfig):
    if validation is not None:
        x, y = validation
        return (
            torch.as_tensor(np.asarray(x), dtype=torch.float32),
            torch.as_tensor(np.asarray(y), dtype=torch.int64),
            "given",
        )
    if data is None:
        return None, None, None
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    n = min(cfg.search_samples, len(y))
    idx = np.random.default_rng(cfg.seed).choice(len(y), size=n, replace=False)
    return (
        torch.as_tensor(x[idx]),
        torch.as_tensor(y[idx], dtype=torch.int64),
        f"{n} training samples",
    )


def run_lcc_pipeline(
    model: nn.Module, cfg: LCCConfig, targets=None, *, data=None, validation=None, input_shape=None
):
    """Run the pipeline in place (see the module docstring); returns the stage report.

    ``data`` (a Dataset) is needed for pruning and for the SQNR search; ``validation=(x, y)``
    replaces the default search set (``search_samples`` training samples). Without data,
    ``input_shape`` (C, H, W) lets conv layers count their output positions.
    """
    t_start = time.perf_counter()
    check_codable(model, cfg)
    if targets is None:
        targets = target_layers(model, cfg)
    names = [n for n, _, _ in targets]
    x, y, source = _search_set(data, validation, cfg)
    if cfg.target_db is None and x is None:
        raise ValueError(
            "LCCConfig(target_db=None) searches per-layer SQNRs against accuracy and needs data: "
            "pass data=dataset (or validation=(x, y)), or set target_db to code every layer at "
            "one SQNR."
        )
    if cfg.prune_lambda > 0 and data is None:
        raise ValueError("Pruning (prune_lambda > 0) retrains the model and needs data=dataset.")
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
    positions = _positions(model, names, sample) if sample is not None else dict.fromkeys(names, 1)
    float_acc = _accuracy(model, x, y) if x is not None else None
    report["float_accuracy"] = float_acc

    def csd_total(mats):
        return int(sum(csd_adds(mats[n], cfg.csd_bits) * positions[n] for n in mats))

    mats0 = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
    stage = {"csd_bits": cfg.csd_bits, "csd_adds": csd_total(mats0)}
    stage["entries"] = int(sum(m.size for m in mats0.values()))
    report["original"] = stage

    # 1. pruning
    if cfg.prune_lambda > 0:
        from fewops.nn.prune import prune_by_group_lasso

        t0 = time.perf_counter()
        pr = prune_by_group_lasso(
            model,
            data,
            lam=cfg.prune_lambda,
            epochs=cfg.prune_epochs,
            lr=cfg.lr,
            finetune_epochs=cfg.finetune_epochs,
            names=_prune_names(model, names, cfg),
            seed=cfg.seed,
            progress=cfg.progress,
            relative=cfg.prune_relative,
            fit_options={"num_threads": cfg.train_threads},
        )
        mats1 = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
        report["prune"] = {
            "lambda": cfg.prune_lambda,
            **pr.to_dict(),
            "accuracy": _accuracy(model, x, y),
            "entries": int(sum(m.size for m in mats1.values())),
            "nonzero_columns": int(sum(np.any(m != 0, axis=0).sum() for m in mats1.values())),
            "csd_adds": csd_total(mats1),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        positions = _positions(model, names, sample)
    mats = {n: layer_matrix(model.get_submodule(n)).numpy() for n in names}
    cost = {n: mats[n].size * positions[n] for n in names}

    # 2. SQNR search on the proxy
    floor = None if float_acc is None else float_acc - cfg.tolerance
    if cfg.target_db is not None:
        levels = dict.fromkeys(names, float(cfg.target_db))
        report["search"] = {"mode": "fixed", "target_db": cfg.target_db}
    else:
        proxy_floor = float_acc - cfg.proxy_share * cfg.tolerance
        pruned_acc = report.get("prune", {}).get("accuracy")
        if pruned_acc is not None and pruned_acc < proxy_floor:
            report["prune"]["note"] = (
                f"pruning alone lost {100 * (float_acc - pruned_acc):.2f} points, more than the "
                f"{100 * cfg.proxy_share * cfg.tolerance:.2f} the search may use; every layer "
                "starts at db_max. Use a smaller prune_lambda or more fine-tuning."
            )
        t0 = time.perf_counter()
        levels, trials = search_levels(model, mats, cost, x, y, proxy_floor, cfg)
        report["search"] = {
            "mode": "search",
            "tolerance": cfg.tolerance,
            "proxy_floor": proxy_floor,
            "proxy_levels": dict(levels),
            "proxy_trials": len(trials),
            "proxy_seconds": round(time.perf_counter() - t0, 2),
            "rounds": [],
        }

    # 3. share + LCC, checked against the tolerance, raised if it misses
    modules = {n: model.get_submodule(n) for n in names}
    best = None
    rounds = cfg.max_rounds if cfg.target_db is None else 1
    for _ in range(rounds):
        t0 = time.perf_counter()
        coded, seconds = code_layers(mats, levels, cfg)
        acc = None
        if x is not None:
            swap = _Swapper(model, modules)
            swap.set({n: coded[n].matrix for n in names})
            try:
                acc = _accuracy(model, x, y)
            finally:
                swap.restore()
        adds = int(sum(coded[n].extra["adds"] * positions[n] for n in names))
        entry = {
            "levels": dict(levels),
            "accuracy": acc,
            "adds": adds,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if cfg.target_db is None:
            report["search"]["rounds"].append(entry)
        key = (acc if acc is not None else 0.0, -adds)
        if best is None or key > best[0]:
            best = (key, coded, seconds, dict(levels), acc)
        if floor is None or acc >= floor:
            best = (key, coded, seconds, dict(levels), acc)
            break
        levels = {n: min(v + cfg.db_step, 200.0) for n, v in levels.items()}
    _, coded, seconds, levels, acc = best
    met = floor is None or acc >= floor
    report["accuracy"] = acc
    report["tolerance_met"] = met
    if not met:
        warnings.warn(
            f"LCC could not keep accuracy within {cfg.tolerance:g} of the float model "
            f"({float_acc:.4f}): the best coding found reaches {acc:.4f} on the search set. "
            "It is used and reported under stages['search']; raise db_max or the tolerance.",
            ToleranceNotMet,
            stacklevel=3,
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
    report = _jsonable(report)
    model.fewops_stages = report
    return report


def _jsonable(value):
    """Non-finite floats (an exact layer's SQNR is inf) become None; numpy scalars Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@register(LCCConfig)
def _lcc(model, config, targets, data=None, validation=None, input_shape=None, **_):
    run_lcc_pipeline(
        model, config, targets, data=data, validation=validation, input_shape=input_shape
    )


# -- CLI ------------------------------------------------------------------------------------


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``fewops compress --method lcc``."""
    parser.add_argument(
        "--algorithm", choices=ALGORITHMS, default="dmp", help="LCC algorithm (fs = fs-LCC)"
    )
    parser.add_argument("--S", type=int, default=2, help="terms per wiring row (dmp/rs)")
    parser.add_argument("--mem", type=int, default=8, help="beam width (rs)")
    parser.add_argument("--slice-width", type=int, default=None, help="columns per slice")
    parser.add_argument(
        "--target-db", type=float, default=None, help="one SQNR for every layer (no search)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="accuracy loss allowed, in points (default 0.5)",
    )
    parser.add_argument("--db-min", type=float, default=8.0)
    parser.add_argument("--db-max", type=float, default=40.0)
    parser.add_argument("--db-step", type=float, default=2.0)
    parser.add_argument(
        "--prune-lambda", type=float, default=0.0, help="group-lasso strength (0: no pruning)"
    )
    parser.add_argument(
        "--prune-layers", nargs="*", default=None, help="layers to prune (default all)"
    )
    parser.add_argument(
        "--prune-absolute",
        action="store_true",
        help="one group-lasso threshold lr*lambda for all layers (default: relative per layer)",
    )
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--prune-lr", type=float, default=1e-3)
    parser.add_argument(
        "--no-share", action="store_true", help="no affinity-propagation column sharing"
    )
    parser.add_argument("--share-margin-db", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=None, help="processes coding layers")


def config_from_args(args: argparse.Namespace) -> LCCConfig:
    """The :class:`LCCConfig` that parsed CLI options describe."""
    return LCCConfig(
        algorithm=args.algorithm,
        S=args.S,
        mem=args.mem,
        slice_width=args.slice_width,
        target_db=args.target_db,
        tolerance=args.tolerance / 100.0,
        db_min=args.db_min,
        db_max=args.db_max,
        db_step=args.db_step,
        prune_lambda=args.prune_lambda,
        prune_layers=None if args.prune_layers is None else tuple(args.prune_layers),
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        prune_relative=not args.prune_absolute,
        lr=args.prune_lr,
        share=not args.no_share,
        share_margin_db=args.share_margin_db,
        workers=args.workers,
    )


def demo_config() -> LCCConfig:
    """The LCC entry of ``fewops demo`` (small MLP on digits): search, sharing, no pruning."""
    return LCCConfig(algorithm="dmp", tolerance=0.005, workers=1, search_samples=1000)
