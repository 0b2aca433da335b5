"""Respacing: the DDPM process restricted to a subsequence of its timesteps (Nichol & Dhariwal 2021, sec. 4).

Keeping abar at timesteps tau_1 < ... < tau_S fixes a shorter Markov chain with betas
beta'_i = 1 - abar_{tau_i} / abar_{tau_{i-1}} (abar_{tau_0 - 1} = 1). Ancestral sampling on it is DDPM with S steps:
with sigma^2 = beta_tilde' it is DDIM with eta = 1; with sigma^2 = beta' it is the DDIM paper's sigma-hat row
(Song et al. 2021, Table 1), the setting of Ho et al.'s CIFAR-10 FID at S = T.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.diffusion.gaussian import GaussianDiffusion
from genlab.diffusion.schedules import ddim_timesteps


def respaced_betas(alphas_cumprod: Tensor, timesteps: list[int]) -> Tensor:
    """beta'_i = 1 - abar_{tau_i} / abar_{tau_{i-1}} for increasing timesteps tau (float64)."""
    if any(b <= a for a, b in zip(timesteps, timesteps[1:])):
        raise ValueError(f"timesteps must be strictly increasing, got {timesteps}")
    kept = alphas_cumprod.double()[torch.tensor(timesteps)]
    previous = torch.cat([kept.new_ones(1), kept[:-1]])
    return 1.0 - kept / previous


def respace(
    diffusion: GaussianDiffusion, steps: int, spacing: str = "uniform", variance: str | None = None
) -> tuple[GaussianDiffusion, Tensor]:
    """The S-step process over `ddim_timesteps(T, steps, spacing)` and the original timestep of each of its steps.

    `variance` ("beta" or "beta_tilde") picks sigma^2 of the new process; None keeps the diffusion's own choice.
    """
    if steps < 2:
        raise ValueError(f"a respaced DDPM needs at least 2 steps, got {steps}")
    timesteps = sorted(ddim_timesteps(diffusion.num_timesteps, steps, spacing))
    # abar in float64 from the betas: the float32 abar buffer loses beta_0 = 1e-4 to rounding in 1 - abar_0.
    betas = respaced_betas(torch.cumprod(1.0 - diffusion.betas.double(), dim=0), timesteps)
    process = GaussianDiffusion(betas, variance or diffusion.variance).to(diffusion.betas.device)
    return process, torch.tensor(timesteps, dtype=torch.long, device=diffusion.betas.device)
