"""One progress bar over the whole run, with an ETA: over its steps, or over its time budget when trainer.max_time is
set (Lightning's own bar counts the batches of one epoch)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from genlab.training.callbacks.budget_progress import time_budget


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with total = trainer.max_steps starting at the resumed step and updated by global_step
    (a GAN's generator steps), or, with a time budget, total = its seconds and updated by the time spent (a resumed
    run starts with what it spent before). Shows the loss and val/loss, not `v_num` (always "logs" here)."""

    def _position(self, trainer: L.Trainer) -> tuple[int, int]:
        timer = time_budget(trainer)
        if timer is not None:
            return int(timer.time_elapsed()), int(timer.time_elapsed() + timer.time_remaining())
        return trainer.global_step, trainer.max_steps

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        bar = self.train_progress_bar
        n, total = self._position(trainer)
        if bar.total != total:  # the first epoch of this process: one bar for the whole run
            bar.reset(total=total)
            bar.initial = n  # a resumed run starts where it stopped; the ETA counts what is left
            bar.n = n
            bar.unit = "s" if time_budget(trainer) is not None else "it"
            bar.set_description("train (time budget, s)" if time_budget(trainer) is not None else "train steps")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        bar = self.train_progress_bar
        n, total = self._position(trainer)
        if bar is not None and self._should_update(trainer.global_step, trainer.max_steps):
            bar.n = min(n, total)
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
