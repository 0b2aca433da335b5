"""Negative log-likelihood of a diffusion model through its variational bound, in bits per dimension.

DDPM (Ho et al. 2020) eq. 5, with t counted from 0 as everywhere in genlab (the paper's t = 1 is our t = 0):

    L = L_T + sum_{t=1}^{T-1} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                      the prior term (no network)
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))    one network call each, t = 1 .. T-1
    L_0     = -log p(x_0 | x_1)                                the discretised Gaussian decoder (sec. 3.3)

Each term is summed over the D = C*H*W dimensions and divided by D ln 2. Plain torch: the network is the usual
`model_fn(x_t, t, **model_kwargs) -> eps` argument, so the bound can be checked with a fake network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.diffusion.gaussian import GaussianDiffusion, ModelFn, mean_flat

NUM_BINS = 256  # 8-bit data: x_0 lies on 256 evenly spaced values in [-1, 1]


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor, bins: int = NUM_BINS) -> Tensor:
    """Elementwise log P(x) in nats for x on the `bins`-level grid of [-1, 1] (DDPM eq. 13).

    Each value owns the interval x +- 1/(bins - 1); the two end bins extend to -inf and +inf, so the
    probabilities of the `bins` values sum to 1 for any mean and scale.
    """
    half_bin = 1.0 / (bins - 1)
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (x - mean + half_bin)
    lower = inv_std * (x - mean - half_bin)
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Phi(upper): the lowest bin
    log_one_minus_cdf_lower = torch.special.log_ndtr(-lower)  # log (1 - Phi(lower)): the highest bin
    # log (Phi(upper) - Phi(lower)), computed on the side of the mean where the tails do not cancel
    mid = torch.where(
        lower > 0,
        log_one_minus_cdf_lower + torch.log1p(-torch.exp(torch.special.log_ndtr(-upper) - log_one_minus_cdf_lower)),
        log_cdf_upper + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - log_cdf_upper)),
    )
    edge = 1.0 - half_bin  # between the last two grid values
    return torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_one_minus_cdf_lower, mid))


def prior_bpd(diffusion: GaussianDiffusion, x0: Tensor) -> Tensor:
    """L_T in bits/dim [B]: KL(q(x_T | x_0) || N(0, I))."""
    t = torch.full((x0.shape[0],), diffusion.num_timesteps - 1, dtype=torch.long, device=x0.device)
    mean = diffusion.extract(diffusion.sqrt_alphas_cumprod, t, x0) * x0
    logvar = torch.log(diffusion.extract(1.0 - diffusion.alphas_cumprod, t, x0)).expand_as(x0)
    kl = normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0))
    return mean_flat(kl) / math.log(2.0)


def vb_term_bpd(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x0: Tensor,
    x_t: Tensor,
    t: Tensor,
    model_kwargs: dict | None = None,
) -> Tensor:
    """L_{t-1} for t >= 1, or L_0 for t == 0, in bits/dim [B], at one x_t per sample."""
    true_mean, _, true_logvar = diffusion.q_posterior_mean_variance(x0, x_t, t)
    # No clipping of x0_hat: the bound is of the model as defined, not of the sampler's clipped variant.
    out = diffusion.p_mean_variance(model_fn, x_t, t, clip_denoised=False, model_kwargs=model_kwargs)
    kl = mean_flat(normal_kl(true_mean, true_logvar.expand_as(x0), out["mean"], out["log_variance"].expand_as(x0)))
    decoder_nll = -mean_flat(discretized_gaussian_log_likelihood(x0, out["mean"], 0.5 * out["log_variance"]))
    return torch.where(t == 0, decoder_nll, kl) / math.log(2.0)


@torch.no_grad()
def nll_bpd(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x0: Tensor,
    *,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> dict[str, Tensor]:
    """The variational bound of -log p(x_0) in bits/dim for a batch x0 [B, C, H, W] on the 8-bit grid.

    Returns "total" [B], "prior" [B] (L_T), "decoder" [B] (L_0) and "terms" [B, T] (column t holds L_{t-1}
    for t >= 1 and L_0 at t = 0). One x_t ~ q(x_t | x_0) is drawn per timestep, so the bound is an unbiased
    one-sample estimate per image.
    """
    B, T = x0.shape[0], diffusion.num_timesteps  # batch, diffusion steps
    terms = torch.zeros(B, T, device=x0.device, dtype=x0.dtype)
    for step in range(T):
        t = torch.full((B,), step, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = diffusion.q_sample(x0, t, noise)
        terms[:, step] = vb_term_bpd(diffusion, model_fn, x0, x_t, t, model_kwargs)
    prior = prior_bpd(diffusion, x0)
    return {"total": terms.sum(dim=1) + prior, "prior": prior, "decoder": terms[:, 0], "terms": terms}


def quantize_to_bins(x: Tensor, bins: int = NUM_BINS) -> Tensor:
    """Snap [-1, 1] images to the `bins`-level grid the discretised decoder assumes (rounding, not truncation)."""
    levels = bins - 1
    return ((x.clamp(-1, 1) + 1) * (levels / 2)).round() / (levels / 2) - 1
