"""Noise schedules beta_1..beta_T and the timestep subsets that few-step DDIM visits.

Schedules are computed in float64; `GaussianDiffusion` stores what it derives from them as float32.
Index i in [0, T) of a schedule is the paper's timestep i + 1 (DDPM counts 1..T, code counts 0..T-1).
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch
from torch import Tensor

class Schedule(StrEnum):
    """The noise schedule beta_1..beta_T."""

    linear = "linear"
    cosine = "cosine"


class Spacing(StrEnum):
    """Which of the T timesteps a few-step sampler visits."""

    uniform = "uniform"  # evenly spread integer timesteps (every sampler)
    quadratic = "quadratic"  # DDIM's t ~ k^2 spacing (ddim, ddpm)
    logsnr = "logsnr"  # uniform in log-SNR (the ODE solvers; DPM-Solver's recommendation)
    karras = "karras"  # Karras et al. 2022 eq. 5, rho = 7 (the ODE solvers; EDM's grid)


ScheduleName = Schedule  # the older name
SCHEDULES: tuple[str, ...] = tuple(m.value for m in Schedule)
SPACINGS: tuple[str, ...] = ("uniform", "quadratic")  # the DDIM / DDPM timestep subsets of ddim_timesteps


def _check_num_timesteps(num_timesteps: int) -> None:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive int, got {num_timesteps!r}")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear schedule (Ho et al. 2020, sec. 4): float64, exactly these endpoints for any T."""
    _check_num_timesteps(num_timesteps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_alpha_bar(u: Tensor, s: float = 0.008) -> Tensor:
    """alpha_bar at continuous time u = t / T: f(u) / f(0), f(u) = cos(((u + s) / (1 + s)) * pi / 2)^2 (eq. 17)."""
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021 cosine schedule: beta_t = 1 - alpha_bar(t/T) / alpha_bar((t-1)/T), clipped at max_beta.

    Code index i gets beta = 1 - alpha_bar((i+1)/T) / alpha_bar(i/T), so cumprod(1 - beta)[i] = alpha_bar((i+1)/T)
    wherever no beta up to i was clipped. Only the last few steps hit the clip (alpha_bar(1) = 0 would give beta = 1).
    """
    _check_num_timesteps(num_timesteps)
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = cosine_alpha_bar(u, s)
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def make_betas(schedule: str, num_timesteps: int, **kwargs: float) -> Tensor:
    """The named schedule ("linear" or "cosine") with its keyword arguments."""
    if schedule == "linear":
        return linear_betas(num_timesteps, **kwargs)
    if schedule == "cosine":
        return cosine_betas(num_timesteps, **kwargs)
    raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")


def ddim_timesteps(num_timesteps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """`steps` distinct original timesteps in decreasing order, ending at 0, for few-step DDIM.

    "uniform": an even spread over [0, T-1] with both ends included, t_k = round(k (T-1) / (S-1)), so sampling starts
      at T-1 like DDPM does. (The DDIM paper's `range(0, T, T // S)` starts at T - T//S instead, e.g. 980 for
      T=1000, S=50, and yields more than S steps when S does not divide T.) T=1000, S=50 gives 999, 979, ..., 20, 0.
    "quadratic": the DDIM paper's t_k = floor((k sqrt(0.8 T) / (S-1))^2), which starts at 0.8 T and crowds the steps
      near t = 0. Where flooring would repeat a timestep (small t), the later one is pushed up to the previous + 1,
      so all S timesteps stay distinct and within [0, T-1].
    steps == T gives T-1, ..., 0 for both spacings; steps == 1 gives [0], as both the paper and improved-diffusion do.
    """
    _check_num_timesteps(num_timesteps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an int in [1, num_timesteps={num_timesteps}], got {steps!r}")
    if steps == 1:
        return [0]
    T, S = num_timesteps, steps
    if spacing == "uniform":
        # round(k (T-1) / (S-1)) in integer arithmetic (half up), so no float can produce a repeat.
        ts = [(2 * k * (T - 1) + (S - 1)) // (2 * (S - 1)) for k in range(S)]
    elif spacing == "quadratic":
        # floor(0.8 T k^2 / (S-1)^2) = floor(4 T k^2 / (5 (S-1)^2)), exactly.
        ts = []
        for k in range(S):
            q = (4 * T * k * k) // (5 * (S - 1) ** 2)
            ts.append(q if not ts or q > ts[-1] else ts[-1] + 1)
    else:
        raise ValueError(f"unknown spacing {spacing!r}: expected one of {', '.join(SPACINGS)}")
    return ts[::-1]
