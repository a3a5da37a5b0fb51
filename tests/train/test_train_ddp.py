"""fit under torchrun with two CPU processes (gloo): one checkpoint, identical weights."""

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from torch import nn

from fewops.train.checkpoint import load_checkpoint

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist
    from torch import nn

    from fewops.train.fit import fit

    out = Path(sys.argv[1])

    class Data:
        rng = np.random.default_rng(0)
        x_train = rng.random((300, 1, 8, 8), dtype=np.float32)
        y_train = (x_train[:, 0, :4].sum(axis=(1, 2)) > x_train[:, 0, 4:].sum(axis=(1, 2)))
        y_train = y_train.astype(np.int64)
        x_test, y_test = x_train[:50], y_train[:50]

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 2),
    )
    history = fit(model, Data, epochs=2, batch_size=32, lr=1e-2, seed=1,
                  checkpoint=out / "ddp.safetensors", progress=True)
    rank = dist.get_rank()
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.detach().numpy().tobytes())
    (out / f"rank{rank}.sha256").write_text(digest.hexdigest())
    (out / f"rank{rank}.world").write_text(str(dist.get_world_size()))
    (out / f"rank{rank}.loss").write_text(repr(history["loss"]))
    dist.destroy_process_group()
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(model):
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.detach().numpy().tobytes())
    return digest.hexdigest()


def test_two_process_ddp_training(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    src = Path(__file__).resolve().parents[2] / "src"
    paths = [str(src)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert (tmp_path / "rank0.world").read_text() == "2"
    hashes = {(tmp_path / f"rank{r}.sha256").read_text() for r in (0, 1)}
    assert len(hashes) == 1, "the two processes ended with different weights"
    losses = {(tmp_path / f"rank{r}.loss").read_text() for r in (0, 1)}
    assert len(losses) == 1, "the reported (all-reduced) losses differ between processes"

    checkpoint = tmp_path / "ddp.safetensors"
    assert checkpoint.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 2),
    )
    with torch.no_grad():
        epoch, history = load_checkpoint(checkpoint, model)
    assert epoch == 2 and history["epoch"] == [1, 2]
    assert _digest(model) == hashes.pop()
