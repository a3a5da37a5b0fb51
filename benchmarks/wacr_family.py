"""Train one WACR family on the Keras MNIST CNN from scratch and print one JSON line: for
exploring families (benchmarks/results/wacr.md, fifth pass). Layers left out of the family
JSON stay float, which isolates one part of the network.

    python benchmarks/wacr_family.py TAG EPOCHS 'FAMILY_JSON' [key=value ...]

FAMILY_JSON maps layer names (0 conv1, 2 conv2, 7 dense1, 10 dense2) to PolyConfig fields or
to [axis, interval, degree]. Options: lr (3e-3), batch (64), seed (0), dropout (0), precond
(1; 0 = raw moments), distill=T,ALPHA with teacher=PATH (a float model's state dict), augment=S
(random shifts of up to S pixels), wd (AdamW weight decay), qat=N and qat_lr (quantization-
aware epochs after retraining), checkpoint=PATH (retraining resumes from it, so QAT settings
can be compared on one retrained network; delete PATH.qat between them), ema=DECAY (weight
averaging), restarts=N (seeds seed..seed+N-1, lowest training loss kept). Retraining: Adam,
cosine, the float model's own init for the float layers; accuracy on the 2,000 held-out test
images.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wacr  # noqa: E402

from fewops.data import load  # noqa: E402
from fewops.methods.wacr.poly import retrain_  # noqa: E402
from fewops.models import build  # noqa: E402
from fewops.nn.api import LayerSelection, compress_  # noqa: E402
from fewops.train.fit import evaluate  # noqa: E402

LAYERS = ("0", "2", "7", "10")


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def main(argv: list[str]) -> dict:
    tag, epochs, spec = argv[0], int(argv[1]), json.loads(argv[2])
    opts = dict(a.split("=", 1) for a in argv[3:])
    seed = int(opts.get("seed", 0))
    preset = {
        k: {f: _tuples(x) for f, x in v.items()} if isinstance(v, dict) else tuple(v)
        for k, v in spec.items()
    }
    torch.set_num_threads(1)
    data = load("mnist")
    torch.manual_seed(seed)
    model = build("mnist-cnn", data.input_shape, data.num_classes)
    cfg = wacr.config_for(
        preset,
        epochs,
        "reparam",
        float(opts.get("lr", 3e-3)),
        8,
        batch_size=int(opts.get("batch", 64)),
        init="scratch",
        precondition=opts.get("precond", "1") == "1",
        qat_epochs=int(opts.get("qat", 0)),
        qat_lr=float(opts["qat_lr"]) if "qat_lr" in opts else None,
        restarts=int(opts.get("restarts", 1)),
        augment_shift=int(opts.get("augment", 0)),
        dropout=float(opts.get("dropout", 0.0)),
        ema=float(opts["ema"]) if "ema" in opts else None,
    )
    skip = tuple(n for n in LAYERS if n not in preset)
    cfg = dataclasses.replace(
        cfg, seed=seed, layers=LayerSelection(skip=skip, overrides=cfg.layers.overrides)
    )
    fit_options: dict = {}
    if "distill" in opts:
        temperature, alpha = (float(v) for v in opts["distill"].split(","))
        teacher = build("mnist-cnn", data.input_shape, data.num_classes)
        teacher.load_state_dict(torch.load(opts["teacher"], weights_only=True))
        fit_options.update(teacher=teacher.eval(), distill_T=temperature, distill_alpha=alpha)
    if "checkpoint" in opts:  # retraining resumes from it; QAT writes CHECKPOINT.qat
        fit_options["checkpoint"] = opts["checkpoint"]
    if "wd" in opts:
        fit_options.update(optimizer="adamw", weight_decay=float(opts["wd"]))
    started = time.time()
    history = retrain_(model, cfg, data, progress=False, **fit_options)
    family = evaluate(model, data.x_test, data.y_test)  # after QAT: already on the grid
    compress_(model, dataclasses.replace(cfg, epochs=0, init="float"), data=data)
    result = {
        "tag": tag,
        "epochs": epochs,
        "options": opts,
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
