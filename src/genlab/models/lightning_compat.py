"""Every use of a private Lightning API in genlab, in one place, each with a test that fails when Lightning changes it
(tests/models/test_lightning_compat.py).

This file sits in `models/` rather than `training/` because the LightningModules need two of these and the layer rule
lets `training/` import `models/`, not the other way round.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import lightning as L
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from lightning.pytorch.core.optimizer import LightningOptimizer


def trainer_of(module: L.LightningModule) -> "L.Trainer | None":
    """The module's Trainer, or None outside one (the public `module.trainer` raises there)."""
    return module._trainer


@contextmanager
def uncounted(optimizer: LightningOptimizer) -> Iterator[None]:
    """Hide one optimizer's steps from trainer.global_step.

    In manual optimisation Lightning counts every optimizer.step() of every optimizer (Lightning issue #17958), so
    max_steps would count D and G updates together. The loop installs these two hooks on each optimizer at every
    batch; silencing the discriminator's leaves global_step = generator steps.
    """
    before, after = optimizer._on_before_step, optimizer._on_after_step
    optimizer._on_before_step = optimizer._on_after_step = lambda: None
    try:
        yield
    finally:
        optimizer._on_before_step, optimizer._on_after_step = before, after


def swap_average_weights(trainer: L.Trainer, module: L.LightningModule) -> list[WeightAveraging]:
    """Swap the averaged weights of every WeightAveraging callback into `module` (or back: it is its own inverse);
    return the callbacks swapped. Lightning has no public swap; its validation hooks use this one."""
    swapped = [cb for cb in trainer.callbacks
               if isinstance(cb, WeightAveraging) and getattr(cb, "_average_model", None) is not None]
    for cb in swapped:
        cb._swap_models(module)
    return swapped


def wandb_run_started(logger: Any) -> bool:
    """A WandbLogger whose run was created (reading the public `experiment` would start one)."""
    return logger._experiment is not None
