"""Generate images from a diffusion model with the configured sampler, in batches, reproducibly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from genlab.diffusion import GaussianDiffusion, classifier_free_guidance, ddim_sample, ddpm_sample

LogProbFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # log p(y | x_t, t) per sample [B]


@dataclass
class Guidance:
    """How labels steer sampling: CFG weight w (needs a conditional model), and/or a classifier."""

    labels: Tensor | None = None  # [n] class per sample
    cfg_weight: float = 0.0  # w in eps~ = (1 + w) eps_c - w eps_null
    null_class: int | None = None  # the conditional model's null label; None for an unconditional model
    classifier_log_prob: LogProbFn | None = None
    classifier_scale: float = 0.0  # s in grad = s * grad log p(y | x_t)


def _batch_functions(
    model_fn: Callable[..., Tensor], guidance: Guidance, start: int, b: int
) -> tuple[Callable[..., Tensor], dict, Callable[[Tensor, Tensor], Tensor] | None]:
    """The model_fn, its kwargs and the classifier cond_fn for samples [start, start + b)."""
    if guidance.labels is None:
        return model_fn, {}, None
    y = guidance.labels[start : start + b]
    cond_fn = None
    if guidance.classifier_log_prob is not None and guidance.classifier_scale != 0:
        from genlab.diffusion import classifier_grad_fn

        cond_fn = classifier_grad_fn(guidance.classifier_log_prob, y, guidance.classifier_scale)
    if guidance.null_class is None:  # unconditional network: labels only steer the classifier
        return model_fn, {}, cond_fn
    return classifier_free_guidance(model_fn, guidance.cfg_weight, guidance.null_class), {"y": y}, cond_fn


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
    ddpm_steps: int | None = None,
    variance: str | None = None,
    clip_denoised: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    guidance: Guidance | None = None,
    progress: bool = False,
) -> Tensor:
    """Sample `n` images in [-1, 1] of shape (C, H, W).

    All randomness comes from one generator seeded with `seed`, so the same seed gives the same
    images whatever the batch size, as long as batches are drawn in order. `ddpm_steps` and `variance` apply to
    the DDPM sampler only (respaced ancestral sampling, diffusion/respace.py).
    """
    guidance = guidance or Guidance()
    if guidance.labels is not None:
        guidance.labels = guidance.labels.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        shape = (b, *image_shape)
        x_T = torch.randn(shape, generator=generator, device=device)
        fn, model_kwargs, cond_fn = _batch_functions(model_fn, guidance, start, b)
        common = dict(
            x_T=x_T,
            generator=generator,
            clip_denoised=clip_denoised,
            model_kwargs=model_kwargs,
            cond_fn=cond_fn,
            progress=progress,
        )
        if sampler == "ddpm":
            x0 = ddpm_sample(diffusion, fn, shape, steps=ddpm_steps, spacing=spacing, variance=variance, **common)
        elif sampler == "ddim":
            x0 = ddim_sample(diffusion, fn, shape, steps=steps, eta=eta, spacing=spacing, **common)
        else:
            raise ValueError(f"unknown sampler {sampler!r}: expected 'ddpm' or 'ddim'")
        out.append(x0.clamp(-1, 1).cpu())
    return torch.cat(out)


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats to 0..255 uint8, rounded (what PNG writers and wandb.Image expect)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def share_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank's share when n items are split across world ranks in order, the first n % world one larger."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """[0, 1, .., K-1, 0, 1, ..]: n class labels in equal shares, as evaluation samples a conditional model."""
    return torch.arange(n) % int(num_classes)


def grid_share(num_images: int, num_classes: int | None, rank: int = 0, world: int = 1
               ) -> tuple[int, Tensor | None, int]:
    """Rank's share of a validation grid: (number of images, their labels or None, row length or 0).

    A conditional grid (num_classes given) has one row per class (grid_labels); the grid is split in order.
    """
    if num_classes is None:
        lo, hi = share_bounds(num_images, rank, world)
        return hi - lo, None, 0
    labels, per_class = grid_labels(num_images, int(num_classes))
    lo, hi = share_bounds(len(labels), rank, world)
    return hi - lo, labels[lo:hi], per_class


def grid_labels(num_images: int, num_classes: int) -> tuple[Tensor, int]:
    """Labels [0,0,..,1,1,..] for a grid with one row per class, and the row length (about num_images / classes)."""
    per_class = max(1, num_images // num_classes)
    return torch.arange(num_classes).repeat_interleave(per_class), per_class
