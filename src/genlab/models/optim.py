"""The optimizer shared by the LightningModules: AdamW with a linear learning-rate warm-up and, optionally, a decay
to zero over the end of the run's budget."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from omegaconf import DictConfig


def scaled_lr(lr: float, cfg: DictConfig, world_size: int) -> float:
    """lr, or with trainer.scale_lr the linear scaling rule (Goyal et al. 2017): lr x global batch / reference."""
    if not cfg.trainer.scale_lr:
        return lr
    return lr * cfg.data.batch_size * world_size / cfg.trainer.reference_batch_size


def decay_factor(progress: float, decay: str, fraction: float) -> float:
    """The LR's multiplier once `progress` (0 to 1) of the budget is spent: 1 until the last `fraction` of it, then
    down to 0 at its end, linearly or along half a cosine. decay 'none' keeps 1."""
    if decay == "none":
        return 1.0
    into = (progress - (1.0 - fraction)) / fraction  # 0 where the decay starts, 1 at the budget's end
    if into <= 0.0:
        return 1.0
    into = min(into, 1.0)
    return 1.0 - into if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * into))


def adamw_with_warmup(parameters: Iterable[torch.nn.Parameter], optim: DictConfig, lr: float,
                      progress: Callable[[], float] = lambda: 0.0) -> dict[str, Any]:
    """configure_optimizers' return value for the `model.optim` block at learning rate `lr` (see scaled_lr); the LR
    ramps up over warmup_steps, then follows decay_factor of `progress()`, the share of the budget spent (set by the
    BudgetProgress callback)."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    warmup = max(1, optim.warmup_steps)
    # .get: the configs of checkpoints saved before these keys existed
    decay, fraction = str(optim.get("decay", "none")), float(optim.get("decay_fraction", 0.2))

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * decay_factor(progress(), decay, fraction)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
