"""Timestep handling shared by the diffusion model and the noise-aware classifier."""

from __future__ import annotations

import torch
from torch import Tensor

QUARTERS = 4


def draw_timesteps_and_noise(
    x0: Tensor, num_timesteps: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """t ~ U{0, ..., T-1} per sample and eps ~ N(0, I) shaped like x0, drawn in that order from `generator`."""
    t = torch.randint(0, num_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    return t, noise


def quarter_means(values: Tensor, t: Tensor, num_timesteps: int) -> dict[int, Tensor]:
    """Mean of per-sample `values` [B] in each quarter of [0, T) that holds samples, keyed 1..4."""
    quarter = (t * QUARTERS) // num_timesteps
    return {q + 1: values[quarter == q].mean() for q in range(QUARTERS) if (quarter == q).any()}
