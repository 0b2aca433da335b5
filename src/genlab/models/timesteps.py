"""Timestep handling shared by the diffusion model and the noise-aware classifier."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor

from genlab.models.lightning_compat import trainer_of

QUARTERS = 4


def rank_and_world(module: L.LightningModule) -> tuple[int, int]:
    """(global rank, number of processes) of a module's Trainer; (0, 1) for a module used outside one."""
    trainer = trainer_of(module)
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def draw_timesteps_and_noise(
    x0: Tensor, num_timesteps: int, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1,
    sample_times: Callable[..., Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """t ~ U{0, ..., T-1} per sample (or `sample_times(n, device, generator)`: the process's own training times) and
    eps ~ N(0, I) shaped like x0, drawn in that order from `generator`.

    Under DDP every rank draws for the whole global batch (world_size x B) from the same stream and keeps rows
    rank, rank + W, ...: the rows its data shard holds (genlab.data.sampler). Ranks then get independent noise, and
    W devices with batch B see the same (x0, t, eps) triples as one device with batch W x B.
    """
    n = x0.shape[0]
    if sample_times is None:
        t = torch.randint(0, num_timesteps, (n * world_size,), device=x0.device, generator=generator)
    else:
        t = sample_times(n * world_size, x0.device, generator)
    noise = torch.randn((n * world_size, *x0.shape[1:]), device=x0.device, generator=generator)
    return t[rank::world_size], noise[rank::world_size]


def quarter_means(values: Tensor, t: Tensor, num_timesteps: int) -> dict[int, Tensor]:
    """Mean of per-sample `values` [B] in each quarter of [0, T) that holds samples, keyed 1..4."""
    quarter = (t * QUARTERS) // num_timesteps
    return {q + 1: values[quarter == q].mean() for q in range(QUARTERS) if (quarter == q).any()}
