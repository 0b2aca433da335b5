"""The optimizer shared by the LightningModules: AdamW with a linear learning-rate warm-up."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from omegaconf import DictConfig


def scaled_lr(lr: float, cfg: DictConfig, world_size: int) -> float:
    """lr, or with trainer.scale_lr the linear scaling rule (Goyal et al. 2017): lr x global batch / reference."""
    if not cfg.trainer.scale_lr:
        return lr
    return lr * cfg.data.batch_size * world_size / cfg.trainer.reference_batch_size


def adamw_with_warmup(parameters: Iterable[torch.nn.Parameter], optim: DictConfig, lr: float) -> dict[str, Any]:
    """configure_optimizers' return value for the `model.optim` block at learning rate `lr` (see scaled_lr); the LR
    ramps up over warmup_steps."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    warmup = max(1, optim.warmup_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
