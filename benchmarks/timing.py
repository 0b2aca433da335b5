"""Interleaved timing: the candidates take turns (A B A B ...), so a machine that speeds up or slows down
during the run affects them alike, and the median ignores the odd slow iteration."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds per call of one candidate over the interleaved rounds."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, items: int) -> float:
        """Items (images) per second at the median."""
        return items / self.median


def interleaved(
    candidates: dict[str, Callable[[], object]], rounds: int, warmup: int, device: torch.device
) -> dict[str, Timing]:
    """Run each candidate `warmup` times, then `rounds` times in turn; the seconds of every timed call."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    sync(device)
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            sync(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(s) for name, s in seconds.items()}


def timed_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call (compilation, a long sampling run)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start
