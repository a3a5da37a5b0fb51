"""Train one WACR family on the Keras MNIST CNN from scratch and print one JSON line: for
exploring families (benchmarks/results/wacr.md, fifth pass). Layers left out of the family
JSON stay float, which isolates one part of the network.

    python benchmarks/wacr_family.py TAG FAMILY_JSON [--wacr-preset NAME] [WACR options]
        [--teacher PATH --distill T,ALPHA] [--checkpoint PATH]

FAMILY_JSON (a JSON string or file) maps layer names (0 conv1, 2 conv2, 7 dense1, 10 dense2)
to PolyCode fields or to [axis, interval, degree]. The WACR options are those of
``fewops compress --method wacr`` (generated from PolyConfig: --epochs, --lr, --batch-size,
--seed, --mode, --init, --precondition, --qat-epochs, --qat-lr, --augment-shift, --dropout,
--ema, --restarts, --optimizer adamw --weight-decay WD, ...), on top of the preset
``--wacr-preset`` (default mnist-cnn-tensor-blocks-q: the benchmark's best recipe, whose
families FAMILY_JSON replaces). --distill T,ALPHA with --teacher PATH (a float model's state
dict) distils from that model; --checkpoint PATH makes retraining resume from PATH (so QAT
settings can be compared on one retrained network; delete PATH.qat between them). The float
layers keep the float model's own init (seeded by --seed); accuracy on the 2,000 held-out test
images. For example (the eighth pass, seed 1):

    python benchmarks/wacr_family.py v2s1 docs/wacr-tensor-blocks-q.json --seed 1 --qat-lr 2e-3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wacr  # noqa: E402

from fewops.cli.options import add_config_options, config_from_options  # noqa: E402
from fewops.data import load  # noqa: E402
from fewops.methods.wacr import WACR_PRESETS  # noqa: E402
from fewops.methods.wacr.retrain import retrain_  # noqa: E402
from fewops.models import build  # noqa: E402
from fewops.nn.api import LayerSelection, compress_  # noqa: E402
from fewops.train.fit import evaluate  # noqa: E402

LAYERS = ("0", "2", "7", "10")
DEFAULT_PRESET = "mnist-cnn-tensor-blocks-q"


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _family(text: str) -> dict:
    """FAMILY_JSON: a JSON object or the path of a file holding one."""
    source = text if text.lstrip().startswith("{") else Path(text).read_text()
    spec = json.loads(source)
    return {
        k: {f: _tuples(x) for f, x in v.items()} if isinstance(v, dict) else tuple(v)
        for k, v in spec.items()
    }


def build_parser(preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    """TAG, FAMILY_JSON and the script's own options, then the WACR options generated from
    PolyConfig with ``preset``'s values as defaults (no layer options: FAMILY_JSON sets them)."""
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tag", help="name of the run in the JSON line")
    parser.add_argument("family", type=_family, help="FAMILY_JSON: a JSON object or file")
    parser.add_argument(
        "--wacr-preset",
        default=DEFAULT_PRESET,
        choices=list(WACR_PRESETS),
        help=f"WACR preset the method options start from (default {DEFAULT_PRESET})",
    )
    parser.add_argument("--teacher", default=None, help="state dict of a float model to distil")
    parser.add_argument(
        "--distill", default=None, metavar="T,ALPHA", help="distillation temperature and weight"
    )
    parser.add_argument("--checkpoint", default=None, help="retraining resumes from this file")
    group = parser.add_argument_group(f"WACR options (defaults: preset {preset!r})")
    add_config_options(group, WACR_PRESETS[preset], skip=("layers",))
    return parser


def main(argv: list[str]) -> dict:
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    first.add_argument("--wacr-preset", default=DEFAULT_PRESET, choices=list(WACR_PRESETS))
    known, _ = first.parse_known_args(argv)
    parser = build_parser(known.wacr_preset)
    args = parser.parse_args(argv)
    if args.distill is not None and args.teacher is None:
        parser.error("--distill needs --teacher PATH (the float model that teaches).")
    base = config_from_options(WACR_PRESETS[args.wacr_preset], args)
    cfg = wacr.config_for(args.family, base)
    skip = tuple(n for n in LAYERS if n not in args.family)
    cfg = dataclasses.replace(cfg, layers=LayerSelection(skip=skip, overrides=cfg.layers.overrides))
    torch.set_num_threads(1)
    data = load("mnist")
    torch.manual_seed(cfg.train.seed)
    model = build("mnist-cnn", data.input_shape, data.num_classes)
    fit_options: dict = {}
    if args.distill is not None:
        temperature, alpha = (float(v) for v in args.distill.split(","))
        teacher = build("mnist-cnn", data.input_shape, data.num_classes)
        teacher.load_state_dict(torch.load(args.teacher, weights_only=True))
        fit_options.update(teacher=teacher.eval(), distill_T=temperature, distill_alpha=alpha)
    if args.checkpoint is not None:  # retraining resumes from it; QAT writes CHECKPOINT.qat
        fit_options["checkpoint"] = args.checkpoint
    started = time.time()
    history = retrain_(model, cfg, data, progress=False, **fit_options)
    family = evaluate(model, data.x_test, data.y_test)  # after QAT: already on the grid
    compress_(model, dataclasses.replace(wacr.with_epochs(cfg, 0), init="float"), data=data)
    result = {
        "tag": args.tag,
        "epochs": cfg.train.epochs,
        "config": dataclasses.asdict(cfg),
        "stored_numbers": wacr.count_params(model),
        "family_accuracy": family,
        "coded_accuracy": evaluate(model, data.x_test, data.y_test),
        "last_test_accuracies": [round(a, 4) for a in history["test_accuracy"][-5:]],
        "last_train_accuracy": history["train_accuracy"][-1],
        "qat_test_accuracies": [round(a, 4) for a in history["qat"]["test_accuracy"]]
        if "qat" in history
        else None,
        "restarts": history.get("restarts"),
        "seconds": round(time.time() - started),
        "command": "python benchmarks/wacr_family.py " + " ".join(argv),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
