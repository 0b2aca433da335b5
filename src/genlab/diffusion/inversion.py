"""DDIM inversion (encoding x0 -> x_T) and spherical interpolation of latents (Song et al. 2021, secs. 5.3-5.4).

With eta = 0, DDIM sampling is an Euler discretisation of an ODE (DDIM eq. 14, in the variables
xbar = x / sqrt(abar) and sigma = sqrt((1 - abar) / abar)): d xbar = eps_theta(x, t) d sigma. Running the same
discretisation forwards in time encodes an image into the x_T that DDIM decodes back into (nearly) that image;
the error is the ODE discretisation error, which vanishes as the number of steps grows (DDIM Table 2).
Decode with `ddim_sample(..., eta=0.0, x_T=x_T, clip_denoised=False)` and the same `steps` and `spacing`: the
decoder must be the exact mirror of the encoder, and clipping the predicted x0 (a projection) is not part of
the ODE, so it would make the two maps disagree wherever an intermediate x0_hat leaves [-1, 1]. Measured on a
600-step ddpm_digits model (EMA, 16 training images, MSE on [0, 1] pixels), unclipped vs clipped decoding:
S=1000 1.0e-6 vs 5.7e-4, S=50 2.4e-4 vs 7.0e-4; only at S=10 does clipping help (0.014 vs 0.0031), by hiding
part of a coarse ODE solve.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.diffusion.gaussian import GaussianDiffusion, ModelFn
from genlab.diffusion.progress import steps_bar
from genlab.diffusion.samplers import ddim_step, timestep_batch
from genlab.diffusion.schedules import ddim_timesteps


@torch.no_grad()
def ddim_invert(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x0: Tensor,
    *,
    steps: int,
    spacing: str = "uniform",
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode clean images x0 [B, ...] into DDIM latents x_T by running deterministic DDIM (eta = 0) forwards.

    The step t_prev -> t is DDIM eq. 13 read upwards: x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps, with
    eps = eps_theta(x_{t_prev}, t_prev) taken at the current point (the future one is unknown) and
    x0_hat = (x_{t_prev} - sqrt(1 - abar_{t_prev}) eps) / sqrt(abar_{t_prev}). Pairs (t_prev, t), the mirror of
    `ddim_sample`'s: [(-1, 0), (0, t_1), ..., (t_{S-1}, t_S)], e.g. T=1000, S=50: (-1, 0), (0, 20), ..., (979, 999).
    The first step maps the clean image (abar_{-1} = 1) to timestep 0, undoing the sampler's last step (0, -1);
    the network is not defined at t = -1, so it is evaluated at t = 0 there (abar_0 = 1 - beta_1 ~ 1).
    The predicted x0 is never clipped: clipping is not invertible, and the latent must decode back to x0.
    """
    timesteps = ddim_timesteps(diffusion.num_timesteps, steps, spacing)[::-1]  # increasing: 0, t_1, ..., t_S
    model_kwargs = model_kwargs or {}
    x = x0
    pairs = list(zip([-1] + timesteps[:-1], timesteps))
    for t_prev, t_next in steps_bar(pairs, "DDIM inversion", progress):
        t_model = timestep_batch(max(t_prev, 0), x)
        eps = model_fn(x, t_model, **model_kwargs)
        alpha_bar_next = diffusion.extract(diffusion.alphas_cumprod, timestep_batch(t_next, x), x)
        if t_prev >= 0:
            alpha_bar_prev = diffusion.extract(diffusion.alphas_cumprod, t_model, x)
        else:
            alpha_bar_prev = torch.ones_like(alpha_bar_next)  # abar_{-1} = 1: x is the clean image
        # The sampler's own step with the time pair reversed: from abar_{t_prev} up to abar_{t_next}, eta = 0.
        x = ddim_step(x, eps, alpha_bar_prev, alpha_bar_next, eta=0.0, noise=None, clip_denoised=False)
    return x


def slerp(a: Tensor, b: Tensor, alpha: float | Tensor) -> Tensor:
    """Spherical interpolation from a (alpha = 0) to b (alpha = 1), per sample over all but the batch dimension.

    DDIM eq. 67 (sec. 5.3, appendix D.5): sin((1 - alpha) theta) / sin(theta) a + sin(alpha theta) / sin(theta) b,
    theta = arccos(<a, b> / (|a| |b|)). Gaussian latents have nearly equal norms and lie near a sphere, where a
    straight line would pass through low-norm points the model never saw. Where a and b are (anti)parallel,
    sin(theta) ~ 0 and the formula is 0/0, so linear interpolation is used. `alpha` is a float, a 0-d tensor or a
    tensor [B] (one alpha per sample).
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    B = a.shape[0]
    # float64: arccos loses precision near cos = 1, exactly where the parallel fallback is decided.
    a_flat, b_flat = a.reshape(B, -1).double(), b.reshape(B, -1).double()  # [B, ...] -> [B, D]
    alpha_t = torch.as_tensor(alpha, dtype=torch.float64, device=a.device).reshape(-1, 1)  # [] or [B] -> [1|B, 1]
    norms = a_flat.norm(dim=1, keepdim=True) * b_flat.norm(dim=1, keepdim=True)  # [B, 1]
    cos = (a_flat * b_flat).sum(1, keepdim=True) / norms.clamp_min(1e-300)  # a zero vector: cos 0, not NaN
    theta = torch.arccos(cos.clamp(-1.0, 1.0))  # [B, 1]
    sin_theta = torch.sin(theta)
    near_parallel = sin_theta < 1e-6
    safe_sin = torch.where(near_parallel, torch.ones_like(sin_theta), sin_theta)
    w_a = torch.where(near_parallel, 1 - alpha_t, torch.sin((1 - alpha_t) * theta) / safe_sin)
    w_b = torch.where(near_parallel, alpha_t, torch.sin(alpha_t * theta) / safe_sin)
    return (w_a * a_flat + w_b * b_flat).reshape(a.shape).to(a.dtype)
