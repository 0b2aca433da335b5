"""Save `last.ckpt` at the final training step when the periodic checkpoint did not fall on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


class FinalCheckpoint(L.Callback):
    """ModelCheckpoint saves every N steps; a run of max_steps not divisible by N would end unsaved.

    This saves at the last batch, before EMAWeightAveraging's on_train_end overwrites the raw
    weights with the averaged ones, so the checkpoint keeps both.
    """

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == trainer.max_steps and step % self.every_n_steps != 0:
            trainer.save_checkpoint(self.path)
