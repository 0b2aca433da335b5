"""best-*.ckpt by a monitored metric, never chosen on a NaN or inf."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor


class FiniteModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, except that a non-finite monitored value never makes a checkpoint "best":
    Lightning ranks a NaN as the worst value, but while fewer than save_top_k checkpoints exist it still saves one."""

    def check_monitor_top_k(self, trainer: L.Trainer, current: Tensor | None = None) -> bool:
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current))):
            return False
        return super().check_monitor_top_k(trainer, current)
