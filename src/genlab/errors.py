"""The one exception type for bad user input, the one way to quote another exception in its message, and how to
recognise a full disk behind any exception."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class GenlabError(Exception):
    """Bad input (config, data, checkpoint, path) with a message that says how to fix it.

    The CLI prints the message and exits with status 2, without a traceback.
    """


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or its type name when it has none), at most `limit`
    characters: what a one-line error quotes of the cause."""
    text = str(getattr(exc, "msg", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else "no message"
    return lines[0][:limit]


def disk_full(exc: BaseException) -> BaseException | None:
    """The "no space left" error behind `exc` (ENOSPC, or EDQUOT: a full quota), following the chain of exceptions:
    torch.save's zip writer raises a RuntimeError while handling the OSError, or words it as "file write failed"
    when it wrote through its own C++ file. None when the disk was not full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        text = str(current).lower()
        if "no space left" in text or "file write failed" in text or "quota exceeded" in text:
            return current
        current = current.__cause__ or current.__context__
    return None


def mount_point(path: str | Path) -> Path:
    """The file system (its mount point) that holds `path`, for messages about a full disk."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current.parent != current:
        current = current.parent
    while not os.path.ismount(current) and current.parent != current:
        current = current.parent
    return current
