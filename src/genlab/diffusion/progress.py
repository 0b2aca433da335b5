"""The sampling loops' progress bar: shown when asked for and stderr is a terminal, never in a log file."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def steps_bar(steps: Iterable[T], desc: str, progress: bool) -> Iterable[T]:
    """`steps`, with a tqdm bar when `progress` and stderr is a terminal (tqdm's disable=None: off elsewhere)."""
    return tqdm(steps, desc=desc, disable=None if progress else True)
