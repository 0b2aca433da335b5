"""Generate images from a diffusion model with the configured sampler, in batches, reproducibly."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from genlab.diffusion import GaussianDiffusion, ddim_sample, ddpm_sample


def generate(
    diffusion: GaussianDiffusion,
    model_fn: Callable[..., Tensor],
    n: int,
    image_shape: tuple[int, int, int],
    *,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "uniform",
    clip_denoised: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Sample `n` images in [-1, 1] of shape (C, H, W).

    All randomness comes from one generator seeded with `seed`, so the same seed gives the same
    images whatever the batch size, as long as batches are drawn in order.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        shape = (b, *image_shape)
        x_T = torch.randn(shape, generator=generator, device=device)
        if sampler == "ddpm":
            x0 = ddpm_sample(
                diffusion, model_fn, shape, x_T=x_T, generator=generator, clip_denoised=clip_denoised, progress=progress
            )
        elif sampler == "ddim":
            x0 = ddim_sample(
                diffusion,
                model_fn,
                shape,
                steps=steps,
                eta=eta,
                spacing=spacing,
                x_T=x_T,
                generator=generator,
                clip_denoised=clip_denoised,
                progress=progress,
            )
        else:
            raise ValueError(f"unknown sampler {sampler!r}: expected 'ddpm' or 'ddim'")
        out.append(x0.clamp(-1, 1).cpu())
    return torch.cat(out)


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats to 0..255 uint8, rounded (what PNG writers and wandb.Image expect)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
