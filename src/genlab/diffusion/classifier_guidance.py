"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", sec. 4).

A noise-aware classifier p_phi(y | x_t, t) steers an unconditional (or conditional) diffusion model towards class y.
The samplers take a `cond_fn(x_t, t) -> s * grad_{x_t} log p_phi(y | x_t)` and apply it:

- DDPM (Algorithm 1): the reverse-step mean moves by Sigma * cond_fn, mu + s Sigma grad log p(y | x_t).
- DDIM (Algorithm 2): eps_hat = eps - sqrt(1 - abar_t) * cond_fn, then the usual DDIM step with eps_hat.
- The ODE solvers of any process: the same eps_hat on the process's VP view (denoiser.py); a flow or EDM model reads
  a VP-trained classifier at the timestep of equal log-SNR (`at_matching_noise`).

The samplers run under `torch.no_grad()`; only `cond_fn` turns gradients back on, for one backward pass through the
classifier per step. Plain torch: this file never imports lightning and never owns a network.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

LogProbFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_t, t, y) -> log p(y | x_t, t) per sample [B]
CondFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t) -> guidance gradient, shaped like x_t


def classifier_grad_fn(log_prob_fn: LogProbFn, y: Tensor, scale: float) -> CondFn:
    """cond_fn(x_t, t) = scale * grad_{x_t} log p(y | x_t, t), computed with gradients enabled on a copy of x_t."""
    scale = float(scale)

    def cond_fn(x_t: Tensor, t: Tensor) -> Tensor:
        if y.shape != (x_t.shape[0],):
            raise ValueError(f"labels y must have shape [B]=[{x_t.shape[0]}], got {list(y.shape)}")
        if scale == 0.0:  # the unguided sampler, without a classifier forward and backward pass per step
            return torch.zeros_like(x_t)
        # The samplers run under no_grad: re-enable autograd here only, on a leaf copy of x_t.
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            log_p = log_prob_fn(x, t, y)
            if log_p.shape != (x.shape[0],):
                raise ValueError(f"log_prob_fn must return one value per sample [B], got {list(log_p.shape)}")
            # Samples are independent, so the gradient of the batch sum is each sample's own gradient.
            (grad,) = torch.autograd.grad(log_p.sum(), x)
        return scale * grad

    return cond_fn


def at_matching_noise(log_prob_fn: LogProbFn, lambda_of: Callable[[Tensor], Tensor],
                      classifier_time_of: Callable[[Tensor], Tensor]) -> LogProbFn:
    """A noise-aware classifier trained on a VP process, read at another process's times (flow, EDM): the solvers
    guide the process's VP sample x = alpha x~, which is distributed as the classifier's x_t' at the time t' of the
    same log-SNR lambda. `lambda_of(t)`: the process's lambda at its times; `classifier_time_of(lambda)`: the
    classifier's (fractional) timestep of that lambda."""

    def log_prob(x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        lam = lambda_of(t.detach().double().cpu())
        t_classifier = classifier_time_of(lam).to(device=x_t.device, dtype=torch.float32)
        return log_prob_fn(x_t, t_classifier, y)

    return log_prob


def guided_mean(mean: Tensor, variance: Tensor, grad: Tensor) -> Tensor:
    """mu + Sigma * g: the DDPM reverse-step mean shifted by the scaled classifier gradient (Algorithm 1)."""
    return mean + variance * grad


def guided_eps(eps: Tensor, alpha_bar_t: Tensor, grad: Tensor) -> Tensor:
    """eps_hat = eps - sqrt(1 - abar_t) * g, the classifier-guided score for DDIM (eq. 14, Algorithm 2)."""
    return eps - torch.sqrt(1.0 - alpha_bar_t) * grad
