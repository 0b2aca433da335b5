"""How n samples are split across DDP ranks and labelled: shares of a grid, class-balanced evaluation labels."""

from __future__ import annotations

import torch
from torch import Tensor


def share_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank's share when n items are split across world ranks in order, the first n % world one larger."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """[0, 1, .., K-1, 0, 1, ..]: n class labels in equal shares, as evaluation samples a conditional model."""
    return torch.arange(n) % int(num_classes)


def grid_share(num_images: int, num_classes: int | None, rank: int = 0, world: int = 1
               ) -> tuple[int, Tensor | None, int]:
    """Rank's share of a validation grid: (number of images, their labels or None, row length or 0).

    A conditional grid (num_classes given) has one row per class (grid_labels); the grid is split in order.
    """
    if num_classes is None:
        lo, hi = share_bounds(num_images, rank, world)
        return hi - lo, None, 0
    labels, per_class = grid_labels(num_images, int(num_classes))
    lo, hi = share_bounds(len(labels), rank, world)
    return hi - lo, labels[lo:hi], per_class


def grid_labels(num_images: int, num_classes: int) -> tuple[Tensor, int]:
    """Labels [0,0,..,1,1,..] for a grid with one row per class, and the row length (about num_images / classes)."""
    per_class = max(1, num_images // num_classes)
    return torch.arange(num_classes).repeat_interleave(per_class), per_class
