"""What the network predicts (eps, x0 or v) and how the training loss weights each timestep (uniform or Min-SNR-gamma).

Everything downstream (samplers, solvers, guidance, the NLL, inversion) works in eps: `to_eps` converts the network's
output in one place. With x_t = a x0 + s eps, a = sqrt(abar_t), s = sqrt(1 - abar_t), a^2 + s^2 = 1:

    v   = a eps - s x0                       (Salimans & Ho 2022, sec. 4)
    eps = (x_t - a x0) / s                   from an x0 prediction
    eps = s x_t + a v                        from a v prediction: a v + s x_t = (a^2 + s^2) eps = eps
    x0  = a x_t - s v                        likewise: a x_t - s v = (a^2 + s^2) x0 = x0

Min-SNR-gamma (Hang et al. 2023) weights the x0-MSE of timestep t by min(SNR_t, gamma), SNR_t = a^2 / s^2. Each target's
own MSE is a fixed multiple of the x0-MSE, so the weight on it follows:
    eps: x0 - x0_hat = -(s / a)(eps - eps_hat)   => |x0 - x0_hat|^2 = |eps - eps_hat|^2 / SNR
         weight on the eps-MSE = min(SNR, gamma) / SNR
    x0:  weight on the x0-MSE = min(SNR, gamma)
    v:   x0 - x0_hat = -s (v - v_hat)            => |x0 - x0_hat|^2 = s^2 |v - v_hat|^2 = |v - v_hat|^2 / (SNR + 1)
         weight on the v-MSE = min(SNR, gamma) / (SNR + 1)
(The v weight is the one implementations get wrong: dividing by SNR, as for eps, under-weights every timestep by
SNR / (SNR + 1).) "uniform" weights each target's MSE by 1: for eps that is DDPM's L_simple.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import Tensor


class Prediction(StrEnum):
    """diffusion.prediction: what the network outputs."""

    eps = "eps"  # the noise (Ho et al. 2020)
    x0 = "x0"  # the clean image
    v = "v"  # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)


class LossWeighting(StrEnum):
    """diffusion.loss_weighting: the weight of each timestep's loss."""

    uniform = "uniform"  # the target's plain MSE (eps: L_simple)
    min_snr = "min_snr"  # Min-SNR-gamma: min(SNR, gamma) on the x0-MSE (Hang et al. 2023)


def _coefficients(alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
    return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()


def target(prediction: str, x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """What the network should output for x_t = sqrt(abar) x0 + sqrt(1 - abar) noise; alpha_bar broadcasts to x0."""
    if prediction == Prediction.eps:
        return noise
    if prediction == Prediction.x0:
        return x0
    a, s = _coefficients(alpha_bar)
    return a * noise - s * x0


def to_eps(prediction: str, output: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """The eps that a network's output means, for every sampler and guidance to use."""
    if prediction == Prediction.eps:
        return output
    a, s = _coefficients(alpha_bar)
    if prediction == Prediction.x0:
        return (x_t - a * output) / s
    return s * x_t + a * output


def to_x0(prediction: str, output: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """The clean image that a network's output means."""
    a, s = _coefficients(alpha_bar)
    if prediction == Prediction.eps:
        return (x_t - s * output) / a
    if prediction == Prediction.x0:
        return output
    return a * x_t - s * output


def denoised(prediction: str, output: Tensor, x_t: Tensor, alpha: float, sigma: float) -> tuple[Tensor, Tensor]:
    """(x0, eps) at a sample x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1), each straight from the network's output
    in its own target, with no division that the target does not need: a v-network's x0 = alpha x_t - sigma v never
    divides by alpha, which is 4.9e-5 at t = 999 of the cosine schedule (eps -> x0 through 1 / alpha loses the v part in
    float32). `alpha`, `sigma`: float64 scalars of the sampler's grid point."""
    if prediction == Prediction.eps:
        return (x_t - sigma * output) / alpha, output
    if prediction == Prediction.x0:
        return output, (x_t - alpha * output) / sigma
    return alpha * x_t - sigma * output, sigma * x_t + alpha * output


def loss_weight(prediction: str, weighting: str, alpha_bar: Tensor, gamma: float = 5.0) -> Tensor:
    """The per-sample weight on the MSE of `prediction`'s target (see the module docstring for the derivation)."""
    if weighting == LossWeighting.uniform:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1.0 - alpha_bar)
    clipped = torch.clamp(snr, max=gamma)
    if prediction == Prediction.eps:
        return clipped / snr
    if prediction == Prediction.x0:
        return clipped
    return clipped / (snr + 1.0)
