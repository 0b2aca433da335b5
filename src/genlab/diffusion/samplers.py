"""Samplers: loops that call the network, and step functions that only do math.

DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) and DDIM (Song et al. 2021, eqs. 12 and 16).
The loops call `model_fn(x_t, t, **model_kwargs)` with original timesteps t in [0, T) and nothing else, so
classifier-free guidance is composed outside as a model_fn wrapper (a conditional and a null call combined).
Classifier guidance (Dhariwal & Nichol 2021) enters through the optional `cond_fn(x_t, t)`, the scaled gradient of
log p(y | x_t), which shifts the DDPM mean (Algorithm 1) or the DDIM eps (Algorithm 2); see classifier_guidance.py.
All randomness comes from `generator`, on the device of x, in a fixed order, so a seed reproduces samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.diffusion.classifier_guidance import CondFn, guided_eps, guided_mean
from genlab.diffusion.gaussian import GaussianDiffusion, ModelFn, predict_x0, x0_coefficients
from genlab.diffusion.progress import steps_bar
from genlab.diffusion.respace import respace
from genlab.diffusion.schedules import ddim_timesteps


def _initial_noise(
    diffusion: GaussianDiffusion, shape: tuple[int, ...], x_T: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """x_T as given (checked against `shape`), or drawn from N(0, I) on the diffusion's device."""
    shape = tuple(shape)
    if x_T is not None:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
        return x_T
    return torch.randn(shape, generator=generator, device=diffusion.betas.device)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def timestep_batch(t: int, x: Tensor) -> Tensor:
    """Timestep t as the [B] LongTensor a network and the schedule accessor take."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def ddpm_step(diffusion: GaussianDiffusion, out: dict, t: Tensor, noise: Tensor) -> Tensor:
    """x_{t-1} = mean + sigma_t z, with z = 0 where t == 0 (Algorithm 2, line 4).

    `out` is what `p_mean_variance` returns; `diffusion` is not read, it keeps the signature uniform across steps.
    """
    nonzero = (t != 0).to(out["mean"].dtype).view(-1, *([1] * (out["mean"].ndim - 1)))  # [B] -> [B, 1, ..., 1]
    return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise


@torch.no_grad()
def ddpm_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = True,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
    steps: int | None = None,
    spacing: str = "uniform",
    variance: str | None = None,
) -> Tensor:
    """Ancestral sampling, t = T-1, ..., 0 (Algorithm 2); over `steps` respaced steps when given (respace.py).

    `variance` ("beta" or "beta_tilde") overrides the diffusion's sigma_t^2 for sampling. Draw order from
    `generator`: x_T (unless given), then one N(0, I) tensor per step except the last, which adds no noise.
    With `cond_fn`, each step's mean becomes mean + Sigma * cond_fn(x_t, t), Sigma the model variance
    (classifier guidance, Dhariwal & Nichol Algorithm 1). model_fn and cond_fn always see original timesteps.
    """
    process, timestep_map = diffusion, None
    if (steps not in (None, diffusion.num_timesteps) or spacing != "uniform"
            or variance not in (None, diffusion.variance)):
        process, timestep_map = respace(diffusion, steps or diffusion.num_timesteps, spacing, variance)
    x = _initial_noise(diffusion, shape, x_T, generator)
    model_kwargs = model_kwargs or {}
    for i in steps_bar(range(process.num_timesteps - 1, -1, -1), "DDPM", progress):
        t = timestep_batch(i, x)  # the step of `process`
        t_model = t if timestep_map is None else timestep_batch(int(timestep_map[i]), x)  # the original timestep
        eps = model_fn(x, t_model, **model_kwargs)
        out = process.p_mean_variance_from_eps(x, t, eps, clip_denoised)
        if cond_fn is not None:
            out = {**out, "mean": guided_mean(out["mean"], out["variance"], cond_fn(x, t_model))}
        noise = _randn_like(x, generator) if i > 0 else torch.zeros_like(x)
        x = ddpm_step(process, out, t, noise)
    return x


def ddim_sigma(alpha_bar_t: Tensor | float, alpha_bar_prev: Tensor | float, eta: float) -> Tensor | float:
    """sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev) (DDIM eq. 16).

    With eta = 1 and consecutive timesteps this is DDPM's posterior std sqrt(beta_tilde_t).
    """
    if isinstance(alpha_bar_t, Tensor):
        return eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev))
    return eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev))


def ddim_step(
    x_t: Tensor,
    eps: Tensor,
    alpha_bar_t: Tensor | float,
    alpha_bar_prev: Tensor | float,
    eta: float,
    noise: Tensor | None,
    clip_denoised: bool,
) -> Tensor:
    """One DDIM update x_t -> x_prev (eq. 12); alpha_bar_* are floats or tensors broadcastable to x_t.

    With `clip_denoised`, the predicted x0 is clamped to [-1, 1] and eps is recomputed from the clamped x0, so both
    terms of eq. 12 describe the same x0 (x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps still holds). This makes the
    eta = 1, all-steps update equal DDPM's clipped posterior-mean step exactly. `noise` may be None when eta == 0.
    """
    alpha_bar_t = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    alpha_bar_prev = torch.as_tensor(alpha_bar_prev, dtype=x_t.dtype, device=x_t.device)
    pred_x0 = predict_x0(x_t, eps, *x0_coefficients(alpha_bar_t))  # "predicted x0", eq. 12
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
        eps = (x_t - torch.sqrt(alpha_bar_t) * pred_x0) / torch.sqrt(1 - alpha_bar_t)
    # sigma_t(eta), eq. 16; exactly 0 for eta = 0, also where abar_t = 1 (inversion's first step) makes it 0/0.
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta) if eta > 0 else torch.zeros_like(alpha_bar_t)
    # "direction pointing to x_t", eq. 12; clamped at 0 because eta > 1 can make the radicand negative.
    dir_xt = torch.sqrt((1 - alpha_bar_prev - sigma**2).clamp(min=0.0)) * eps
    x_prev = torch.sqrt(alpha_bar_prev) * pred_x0 + dir_xt
    if eta == 0:
        return x_prev
    if noise is None:
        raise ValueError("ddim_step needs noise when eta > 0")
    return x_prev + sigma * noise  # "random noise", eq. 12


@torch.no_grad()
def ddim_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    eta: float = 0.0,
    spacing: str = "uniform",
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = True,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
) -> Tensor:
    """DDIM sampling over `steps` timesteps from `ddim_timesteps` (eta = 0: deterministic; eta = 1: DDPM-like).

    Draw order from `generator`: x_T (unless given), then, only when eta > 0, one N(0, I) tensor per step except
    the last (whose sigma is 0). With eta == 0 nothing else is drawn, so the result depends only on x_T.
    With `cond_fn`, each step uses eps_hat = eps - sqrt(1 - abar_t) * cond_fn(x_t, t) (Dhariwal & Nichol eq. 14).
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    timesteps = ddim_timesteps(diffusion.num_timesteps, steps, spacing)
    x = _initial_noise(diffusion, shape, x_T, generator)
    model_kwargs = model_kwargs or {}
    # Pairs (t, t_prev): [(t_S, t_{S-1}), ..., (t_2, t_1 = 0), (0, -1)], with abar_{-1} = 1 so the last step
    # returns its predicted x0. E.g. T=1000, steps=50: [(999, 979), (979, 958), ..., (20, 0), (0, -1)].
    pairs = list(zip(timesteps, timesteps[1:] + [-1]))
    for t_cur, t_prev in steps_bar(pairs, "DDIM", progress):
        t = timestep_batch(t_cur, x)
        eps = model_fn(x, t, **model_kwargs)
        alpha_bar_t = diffusion.extract(diffusion.alphas_cumprod, t, x)
        if t_prev >= 0:
            alpha_bar_prev = diffusion.extract(diffusion.alphas_cumprod, timestep_batch(t_prev, x), x)
        else:
            alpha_bar_prev = torch.ones_like(alpha_bar_t)
        if cond_fn is not None:
            eps = guided_eps(eps, alpha_bar_t, cond_fn(x, t))
        noise = None
        if eta > 0:  # the last step has sigma = 0 (abar_prev = 1): zeros instead of a draw
            noise = _randn_like(x, generator) if t_prev >= 0 else torch.zeros_like(x)
        x = ddim_step(x, eps, alpha_bar_t, alpha_bar_prev, eta, noise, clip_denoised)
    return x
