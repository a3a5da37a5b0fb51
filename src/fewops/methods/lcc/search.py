"""The LCC pipeline's SQNR search on the noise proxy, and the coding of layers in parallel."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fewops.codes import csd
from fewops.codes.lcc.layer_job import code_layer
from fewops.io.records import LayerStore, current_layer_store
from fewops.methods.lcc.config import LCCCode, LCCConfig
from fewops.parallel import pmap
from fewops.train.fit import evaluate


def set_weight(module: nn.Module, w: np.ndarray) -> None:
    """Set the weight of a Linear/Conv2d from its (out, in) matrix ``w`` (conv: im2col)."""
    t = torch.as_tensor(w, dtype=module.weight.dtype, device=module.weight.device)
    module.weight.data = t.reshape(module.weight.shape)


def accuracy(model: nn.Module, x, y) -> float:
    """Accuracy of ``model`` on (x, y), as a float."""
    return float(evaluate(model, x, y))


def csd_adds(w: np.ndarray, bits: int) -> int:
    """Dense CSD adds of W at ``bits`` bits (per output position)."""
    if not np.any(w):
        return 0
    return csd.adds_for_integer_matrix(csd.quantize(w, bits)[0])


class WeightSwap:
    """Replace layer weights for a trial; ``restore`` puts the saved ones back."""

    def __init__(self, model, modules: dict[str, nn.Module]):
        self.model, self.modules = model, modules
        self.saved = {n: m.weight.data.clone() for n, m in modules.items()}

    def set(self, weights: dict[str, np.ndarray]) -> None:
        for n, w in weights.items():
            set_weight(self.modules[n], w)

    def restore(self) -> None:
        for n, m in self.modules.items():
            m.weight.data = self.saved[n].clone()


def with_noise(w: np.ndarray, db: float, seed: int) -> np.ndarray:
    """W plus i.i.d. Gaussian noise at SQNR ``db`` on its nonzero columns (zero ones stay 0)."""
    cols = np.any(w != 0, axis=0)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(w.shape) * cols
    scale = np.linalg.norm(w) * 10 ** (-db / 20) / max(np.linalg.norm(noise), 1e-300)
    return w + scale * noise


def search_levels(
    model, mats: dict[str, np.ndarray], cost: dict[str, float], x, y, floor: float, cfg: LCCConfig
) -> tuple[dict[str, float], list[dict]]:
    """Per-layer SQNR on the noise proxy: lowest uniform level, then layer by layer.

    Only the layers in ``mats`` get noise; the others keep their current weights.
    """
    swap = WeightSwap(model, {n: model.get_submodule(n) for n in mats})
    trials: list[dict] = []
    seeds = {n: cfg.train.seed * 7919 + i for i, n in enumerate(mats)}
    search = cfg.search

    def acc(levels: dict[str, float]) -> float:
        swap.set({n: with_noise(mats[n], levels[n], seeds[n]) for n in mats})
        a = accuracy(model, x, y)
        trials.append({"levels": dict(levels), "accuracy": a})
        return a

    grid = np.arange(search.db_max, search.db_min - 1e-9, -search.db_step)
    try:
        levels = dict.fromkeys(mats, float(search.db_max))
        for d in grid:
            trial = dict.fromkeys(mats, float(d))
            if acc(trial) >= floor:
                levels = trial
            else:
                break
        for n in sorted(mats, key=lambda k: -cost[k]):
            while levels[n] - search.db_step >= search.db_min - 1e-9:
                trial = dict(levels, **{n: levels[n] - search.db_step})
                if acc(trial) >= floor:
                    levels = trial
                else:
                    break
    finally:
        swap.restore()
    return levels, trials


def code_layers(
    mats: dict[str, np.ndarray],
    levels: dict[str, float],
    cfg: LCCConfig,
    codes: dict[str, LCCCode] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[dict, dict[str, float]]:
    """Share + LCC each layer at its level with its code (``codes``, default ``cfg.code``);
    layers run in ``workers`` processes (None: the CPU count) through
    :func:`fewops.parallel.pmap` (on the Dask cluster inside ``fewops.parallel.cluster``);
    ``progress`` shows a bar of finished layers. Inside ``fewops.io.records.recording_layers``,
    layers whose matrix, SQNR and settings were coded before are read back from the store, and
    each newly coded layer is stored as soon as it finishes."""
    jobs = []
    for n in sorted(mats, key=lambda k: -mats[k].size):
        code = cfg.code if codes is None else codes[n]
        kwargs = {
            "share_margin_db": cfg.share_margin_db if cfg.share else None,
            "algorithm": code.algorithm,
            "S": code.S,
            "mem": code.mem,
            "slice_width": code.slice_width,
            "seed": cfg.train.seed,
            "workers": 1,
            "reference_bits": cfg.csd_bits,
            "max_datapath_bits": code.max_datapath_bits,
        }
        jobs.append((n, mats[n], levels[n], kwargs))
    store = current_layer_store()
    keys = [LayerStore.key(w, db, kw) for _, w, db, kw in jobs] if store is not None else []
    found = {i: store.get(k) for i, k in enumerate(keys)} if store is not None else {}
    found = {i: r for i, r in found.items() if r is not None}
    todo = [i for i in range(len(jobs)) if i not in found]

    def record(j: int, result) -> None:
        if store is not None:
            store.put(keys[todo[j]], *result)  # a finished layer survives a kill of this run

    results = pmap(
        code_layer,
        [jobs[i] for i in todo],
        workers=workers,
        progress=progress,
        desc="lcc layers",
        on_result=record,
    )
    found.update(zip(todo, results, strict=True))
    names = [n for n, _, _, _ in jobs]
    return (
        {n: found[i][0] for i, n in enumerate(names)},
        {n: found[i][1] for i, n in enumerate(names)},
    )
