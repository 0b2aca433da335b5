"""Kept checkpoints every N minutes of training (callbacks.checkpoint.every_n_minutes): the states at 5, 10 and 20
minutes of a time-to-quality run. Lightning's ModelCheckpoint(train_time_interval=...) does this for automatic
optimisation only: under manual optimisation (the GAN) it saves by steps alone, so a GAN run had none."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L


class TimeCheckpoint(L.Callback):
    """`time-step<step>.ckpt` in `dirpath` each time `minutes` of training have passed since the last one (or since
    training started), for every kind of module; never rotated."""

    def __init__(self, dirpath: Path, minutes: float) -> None:
        self.dirpath, self.seconds = Path(dirpath), float(minutes) * 60.0
        self.last: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.last is None or trainer.sanity_checking:
            return
        now = time.monotonic()
        due = trainer.strategy.broadcast(now - self.last >= self.seconds)  # rank 0's clock decides for all ranks
        if not due:
            return
        self.last = now
        path = self.dirpath / f"time-step{trainer.global_step:07d}.ckpt"
        if not path.exists():  # a GAN's discriminator-only batch keeps the step: one file per step
            trainer.save_checkpoint(path)
