"""The optimizer shared by the LightningModules: AdamW with a linear learning-rate warm-up."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from omegaconf import DictConfig


def adamw_with_warmup(parameters: Iterable[torch.nn.Parameter], optim: DictConfig) -> dict[str, Any]:
    """configure_optimizers' return value for the `model.optim` block; the LR ramps up over warmup_steps."""
    optimizer = torch.optim.AdamW(parameters, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    warmup = max(1, optim.warmup_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
