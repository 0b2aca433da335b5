"""Power-function EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models",
sec. 3.1): an average that is correct from step 0, so no warm-up or start step has to be tuned to the run's length.

At step t the average is updated with beta_t = (1 - 1/t)^(gamma + 1) (their eq. 1 discretised per step). Unrolled,
the average after T steps weights step t by (t/T)^(gamma+1) - ((t-1)/T)^(gamma+1): a discrete version of a weight
profile proportional to tau^gamma over the whole run, whatever T is. The width of that profile relative to the run is
sigma_rel = sqrt(gamma + 1) / ((gamma + 2) sqrt(gamma + 3)) (their eq. 3): sigma_rel = 0.05 is gamma = 16.97, the
length the paper's ImageNet models used; 0.10 is gamma = 6.94.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from torch import Tensor


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent gamma whose profile has relative width sigma_rel: the largest real root of
    sigma^2 (gamma + 2)^2 (gamma + 3) = gamma + 1, i.e. gamma^3 + 7 gamma^2 + (16 - 1/s^2) gamma + 12 - 1/s^2 = 0."""
    if not 0.0 < sigma_rel < 0.28:  # gamma -> -1 as sigma_rel -> 0.2887: wider profiles are not power functions
        raise ValueError(f"sigma_rel must be in (0, 0.28), got {sigma_rel}")
    k = 1.0 / sigma_rel**2
    roots = np.roots([1.0, 7.0, 16.0 - k, 12.0 - k])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


def gamma_to_sigma_rel(gamma: float) -> float:
    """sigma_rel of the power profile tau^gamma (Karras et al. 2024, eq. 3)."""
    return math.sqrt(gamma + 1) / ((gamma + 2) * math.sqrt(gamma + 3))


def power_beta(t: int, gamma: float) -> float:
    """beta_t = (1 - 1/t)^(gamma + 1) for update t = 1, 2, ... (beta_1 = 0: the first update copies the weights)."""
    return (1.0 - 1.0 / t) ** (gamma + 1.0)


def power_multi_avg_fn(gamma: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """AveragedModel's multi_avg_fn for the power EMA: one beta per update for all parameters (one host read of the
    update count, not one per tensor); num_averaged counts the earlier updates."""

    def multi_avg_fn(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        beta = power_beta(int(num_averaged) + 1, gamma)
        for avg, cur in zip(averaged, current):
            avg.lerp_(cur, 1.0 - beta)  # beta avg + (1 - beta) cur

    return multi_avg_fn
