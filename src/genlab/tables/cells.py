"""Finished cells of a sweep, one JSON each, named by the hash of everything that decides the cell's numbers.

A rerun with the same settings finds the file and skips the cell, so a killed sweep resumes where it stopped.
Files are written whole (temporary file, then rename): a kill leaves either the finished cell or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_VERSION = 1  # bump when a change to the evaluation makes old cells wrong


def cell_hash(settings: dict[str, Any], seed: int, context: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the cell's settings, its seed and the sweep context (checkpoint and
    extractor hashes, n, split, ...)."""
    payload = {"version": CACHE_VERSION, "settings": settings, "seed": seed, **context}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CellStore:
    """<folder>/<hash>.json per finished cell."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The finished cell, or None (a truncated or unreadable file counts as not finished)."""
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path(key))
