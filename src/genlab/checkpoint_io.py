"""Checkpoint writes that never leave a truncated file in place of a good one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

TMP_MARK = ".tmp-"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a hidden temporary file beside the target, fsync, then os.replace onto the target.

    os.replace is atomic within one file system, so a crash or SIGKILL at any moment leaves either the previous
    checkpoint or the new one, never a partial file. (Lightning's own save goes through fsspec, whose temporary
    file lives in the system temp folder: on another file system its final move is a copy, which a kill can cut.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files left by a process killed while saving; return them."""
    stale = [p for p in Path(folder).glob(f".*{TMP_MARK}*") if p.is_file()] if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
