"""Samplers whose order is a function of (seed, epoch) only, sharded across DDP ranks by genlab itself, so that an
interrupted run resumes mid-epoch with exactly the batches it would have seen, and so that D devices with batch b
see the same samples at every step as one device with batch D x b."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffle(Sampler[int]):
    """This rank's share of a dataset of `size` items, in the order torch.randperm gives for (seed, epoch).

    The epoch's permutation is cut to a multiple of world_size and dealt out round-robin: rank r gets positions
    r, r + W, r + 2W, ... So batch k of every rank together is exactly positions [k W b, (k + 1) W b) of the
    permutation, the batch k that a single device with batch W x b draws.

    Lightning calls `set_epoch` before each epoch. After a resume, `skip(epoch, n)` drops this rank's first n
    indices of that epoch (the batches already trained on) the next time that epoch is iterated.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, number of indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, epoch: int, count: int) -> None:
        """Leave out this rank's first `count` indices of `epoch`, once."""
        self._skip = (epoch, count)

    def __iter__(self) -> Iterator[int]:
        # A generator function: the order is drawn at the first next(), after Lightning's set_epoch.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)[: len(self) * self.world_size]
        mine = order[self.rank :: self.world_size].tolist()
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start, self._skip = self._skip[1], None
        yield from mine[start:]

    def __len__(self) -> int:
        return self.size // self.world_size


class ShardedSequential(Sampler[int]):
    """Indices rank, rank + W, rank + 2W, ... in order: each rank validates its own share, once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
