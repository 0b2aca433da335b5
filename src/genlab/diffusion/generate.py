"""Generate images from a diffusion model with given SamplerSettings, in batches, reproducibly.

Guidance is built here only: the CFG wrapper around the network and the classifier-guidance gradient, per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from genlab.diffusion.classifier_guidance import CondFn, LogProbFn, classifier_grad_fn
from genlab.diffusion.gaussian import GaussianDiffusion
from genlab.diffusion.guidance import classifier_free_guidance
from genlab.diffusion.samplers import ddim_sample, ddpm_sample
from genlab.diffusion.settings import SamplerName, SamplerSettings
from genlab.diffusion.solvers import SOLVERS
from genlab.errors import GenlabError


@dataclass
class Steering:
    """What guidance needs besides its strengths (which live in SamplerSettings): the labels to steer towards, the
    conditional network's null label, and the classifier's log-probability."""

    labels: Tensor | None = None  # [n] class per sample
    null_class: int | None = None  # the conditional model's null label; None for an unconditional model
    classifier_log_prob: LogProbFn | None = None


def guided_functions(
    model_fn: Callable[..., Tensor], settings: SamplerSettings, steering: Steering, start: int, b: int
) -> tuple[Callable[..., Tensor], dict, CondFn | None]:
    """The model_fn, its kwargs and the classifier cond_fn for samples [start, start + b)."""
    if steering.labels is None:
        return model_fn, {}, None
    y = steering.labels[start : start + b]
    cond_fn = None
    if steering.classifier_log_prob is not None and settings.classifier_scale != 0:
        cond_fn = classifier_grad_fn(steering.classifier_log_prob, y, settings.classifier_scale)
    if steering.null_class is None:  # unconditional network: labels only steer the classifier
        return model_fn, {}, cond_fn
    return classifier_free_guidance(model_fn, settings.guidance, steering.null_class), {"y": y}, cond_fn


def generate(
    diffusion: GaussianDiffusion,
    model_fn: Callable[..., Tensor],
    n: int,
    image_shape: tuple[int, int, int],
    settings: SamplerSettings,
    *,
    steering: Steering | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Sample `n` images in [-1, 1] of shape (C, H, W).

    All randomness comes from one generator seeded with `seed`, so the same seed gives the same
    images whatever the batch size, as long as batches are drawn in order.
    """
    steering = steering or Steering()
    # One bar over all n images (not one per batch or per step), off when stderr is not a terminal.
    bar = tqdm(total=n, desc=f"sampling ({settings.name}, {settings.nfe(diffusion.num_timesteps)} NFE)",
               unit="img", disable=None if progress else True)
    if steering.labels is not None:
        steering = Steering(steering.labels.to(device), steering.null_class, steering.classifier_log_prob)
    generator = torch.Generator(device=device).manual_seed(seed)
    T = diffusion.num_timesteps
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        shape = (b, *image_shape)
        x_T = torch.randn(shape, generator=generator, device=device)
        fn, model_kwargs, cond_fn = guided_functions(model_fn, settings, steering, start, b)
        common = dict(x_T=x_T, generator=generator, clip_denoised=settings.clip, model_kwargs=model_kwargs,
                      cond_fn=cond_fn, progress=False, spacing=str(settings.grid))
        steps = settings.steps if settings.steps is not None else T
        if settings.name == SamplerName.ddpm:
            variance = str(settings.variance) if settings.variance is not None else None
            x0 = ddpm_sample(diffusion, fn, shape, steps=settings.steps, variance=variance, **common)
        elif settings.name == SamplerName.ddim:
            x0 = ddim_sample(diffusion, fn, shape, steps=steps, eta=settings.eta, **common)
        else:  # the ODE solvers share ddim_sample's interface
            x0 = SOLVERS[str(settings.name)](diffusion, fn, shape, steps=steps, **common)
        if not bool(torch.isfinite(x0).all()):
            raise GenlabError(nonfinite_message(settings, T, start, b))
        out.append(x0.clamp(-1, 1).cpu())
        bar.update(b)
    bar.close()
    return torch.cat(out)


def nonfinite_message(settings: SamplerSettings, num_timesteps: int, start: int, b: int) -> str:
    """Why no image of a batch with NaN or inf is ever written or scored, and which setting to look at."""
    causes = [f"{k}={getattr(settings, k):g}" for k in ("guidance", "classifier_scale") if getattr(settings, k)]
    if causes:
        hint = f"lower {' or '.join(causes)}"
    elif settings.name == SamplerName.ddim and settings.clip:  # already the most robust sampler: nothing to try there
        hint = "the weights may have diverged: check the run's loss curve, or sample the raw weights with ema=false"
    else:
        hint = "the weights may have diverged (check the run's loss curve), or try sampler=ddim with clipping"
    return (f"sampling with {settings.label(num_timesteps)} gave non-finite values (NaN or inf) in samples "
            f"{start}..{start + b - 1}; nothing was written or scored. {hint[0].upper()}{hint[1:]}.")
