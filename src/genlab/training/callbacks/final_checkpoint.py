"""Save `last.ckpt` at the final training step, whether the run ends at max_steps or at its time budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from genlab.training.callbacks.budget_progress import time_budget


def out_of_time(trainer: L.Trainer) -> bool:
    """The run's time budget (trainer.max_time, Lightning's Timer) is spent."""
    timer = time_budget(trainer)
    return timer is not None and timer.time_remaining() <= 0


def time_budget_minutes(trainer: L.Trainer) -> float | None:
    """trainer.max_time in minutes, as Lightning's Timer holds it; None for a run without one."""
    timer = time_budget(trainer)
    if timer is None:
        return None
    return (timer.time_elapsed() + timer.time_remaining()) / 60.0  # elapsed + remaining is the whole budget


class FinalCheckpoint(Checkpoint):
    """ModelCheckpoint saves every N steps; a run of max_steps not divisible by N, or one stopped by its time budget,
    would end unsaved.

    This saves at the last batch, before EMAWeightAveraging's on_train_end overwrites the raw weights with the
    averaged ones, so the checkpoint keeps both. It is a `Checkpoint`, so Lightning runs it after its Timer, which
    decides at the same batch whether the time is up.
    """

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        last = step == trainer.max_steps or (trainer.should_stop and out_of_time(trainer))
        if last and step % self.every_n_steps != 0:
            trainer.save_checkpoint(self.path)


class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every N steps. At the end of training FinalCheckpoint has already saved it; Lightning's own
    end-of-training save would come after EMAWeightAveraging put the averaged weights in the model, and, finding
    last.ckpt taken, write a second `last-v1.ckpt` whose raw weights are the average."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass
