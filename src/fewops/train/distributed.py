"""Data-parallel training support for ``fit`` under ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N processes and tells each its place through
the environment variables RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; that is torchrun's own protocol, read here and nowhere else. Without WORLD_SIZE
(or with WORLD_SIZE=1) everything runs in one process and no process group is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The environment variable {name}={value!r} set by torchrun should be an integer."
        ) from None


def setup_from_env(device: torch.device | None = None) -> DistContext:
    """Join the process group torchrun describes, creating it on first use.

    Uses the gloo backend on CPU and nccl when ``device`` is a CUDA device. On CPU each process
    gets an equal share of the cores for its intra-op threads, so N processes on N cores do not
    oversubscribe them.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    if not dist.is_available():
        raise RuntimeError(
            "WORLD_SIZE > 1 asks for distributed training, but torch.distributed is unavailable."
        )
    cuda = device is not None and torch.device(device).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
        if not cuda:
            local_world = max(1, _env_int("LOCAL_WORLD_SIZE", dist.get_world_size()))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=_env_int("LOCAL_RANK", 0),
    )


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def sum_across(ctx: DistContext, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity in one process)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_module_state(ctx: DistContext, module: nn.Module, src: int = 0) -> None:
    """Make every process hold rank ``src``'s parameters and buffers.

    DDP keeps parameters equal, but each process updates BatchNorm running statistics from its
    own last batch; this settles them on rank 0's values at the end of training.
    """
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)
