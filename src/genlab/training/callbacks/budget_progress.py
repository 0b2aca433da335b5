"""The run's budget, in steps or trainer.max_time: its Timer, and the share spent, for a learning rate that decays to zero
at its end (model.optim.decay)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer


def time_budget(trainer: L.Trainer) -> Timer | None:
    """Lightning's Timer of trainer.max_time, when the run has a time budget; None otherwise."""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return timer if timer is not None and timer.time_remaining() is not None else None


def budget_spent(trainer: L.Trainer) -> float:
    """From 0 to 1: the larger of steps / trainer.max_steps and elapsed / trainer.max_time, since the run ends at
    whichever comes first. Time is Lightning's Timer's, which a resumed run carries on from."""
    spent = trainer.global_step / trainer.max_steps if trainer.max_steps > 0 else 0.0
    timer = time_budget(trainer)
    if timer is not None:
        elapsed = timer.time_elapsed()
        spent = max(spent, elapsed / max(elapsed + timer.time_remaining(), 1e-9))
    return min(max(spent, 0.0), 1.0)


class BudgetProgress(L.Callback):
    """Sets `pl_module.budget_progress` before each training batch; the LR schedule of models.optim reads it. Rank
    0's clock decides for every rank, so DDP replicas keep one learning rate."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        pl_module.budget_progress = float(trainer.strategy.broadcast(budget_spent(trainer)))
