"""Batch augmentations for ``fewops.train.fit.fit(augment=...)``.

They draw from torch's global random generator, which ``fit`` seeds per epoch, so training
with augmentation stays reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def random_crop_flip(padding: int = 4, flip: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """The usual CIFAR augmentation: zero-pad by ``padding``, crop back at a random offset,
    and mirror left-right with probability 1/2 (when ``flip``)."""
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")

    # torch is imported on use so that loading data does not pay for importing it.
    import torch
    import torch.nn.functional as F

    def augment(x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"random_crop_flip expects a batch (N, C, H, W), got shape {tuple(x.shape)}."
            )
        n, _, h, w = x.shape
        if padding:
            padded = F.pad(x, (padding, padding, padding, padding))
            dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
            dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
            rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
            cols = dx[:, None] + torch.arange(w, device=x.device)  # (N, W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            # Advanced indices split by a slice put their dims first: result is (N, H, W, C).
            x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if flip:
            mirror = torch.rand(n, device=x.device) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x.contiguous()

    return augment
