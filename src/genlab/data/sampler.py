"""A shuffling sampler whose order is a function of (seed, epoch) only, so an interrupted run can be resumed
mid-epoch with exactly the batches it would have seen."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffle(Sampler[int]):
    """Indices of a dataset of `size` items in the order torch.randperm gives for (seed, epoch).

    Lightning calls `set_epoch` before each epoch. After a resume, `skip(epoch, n)` drops the first n indices of that
    epoch (the batches already trained on) the next time that epoch is iterated. Unlike RandomSampler with the global
    generator, the order does not depend on how much of the global RNG stream other code has used.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, number of indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, epoch: int, count: int) -> None:
        """Leave out the first `count` indices of `epoch`, once."""
        self._skip = (epoch, count)

    def __iter__(self) -> Iterator[int]:
        # A generator function: the order is drawn at the first next(), after Lightning's set_epoch.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start, self._skip = self._skip[1], None
        yield from order[start:]

    def __len__(self) -> int:
        return self.size
