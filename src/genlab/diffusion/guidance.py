"""Classifier-free guidance (Ho & Salimans 2021) as a wrapper around the network.

Two conventions exist for the same thing:
- w ("guidance", Ho & Salimans eq. 6): eps~ = (1 + w) eps(x_t, c) - w eps(x_t, null); w = 0 is the
  plain conditional model.
- s ("guidance_scale", as in GLIDE, Imagen and diffusers): eps~ = eps(x_t, null) + s (eps(x_t, c) - eps(x_t, null));
  s = 1 is the plain conditional model.
They are the same family with s = 1 + w.

Autoguidance (Karras et al. 2024, eq. 1) mixes the main model with a weaker guide of the same task instead of the
unconditional model, in the second convention: out~ = out_guide + w (out_main - out_guide), w = guide_scale, so w = 1
is the main model alone (CFG's s with the guide in the place of eps(x_t, null)). Outputs are combined in the
network's own target (eps, x0, v or the flow velocity): each is affine in the output, so this is the same as
mixing the denoised D's of eq. 1.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

ModelFn = Callable[..., Tensor]


def guidance_weight(guidance: float | None = None, guidance_scale: float | None = None) -> float:
    """The w of eps~ = (1 + w) eps_c - w eps_null from either convention (s = 1 + w); 0 when neither is given."""
    if guidance is not None and guidance_scale is not None:
        raise ValueError("give either guidance (w) or guidance_scale (s = 1 + w), not both")
    if guidance_scale is not None:
        return float(guidance_scale) - 1.0
    return float(guidance or 0.0)


def cfg_combine(eps_cond: Tensor, eps_uncond: Tensor, w: float) -> Tensor:
    """eps~ = (1 + w) eps(x_t, c) - w eps(x_t, null) (Ho & Salimans eq. 6)."""
    return (1.0 + w) * eps_cond - w * eps_uncond


def classifier_free_guidance(model_fn: ModelFn, w: float, null_class: int,
                             guided_at: Callable[[Tensor], bool] | None = None) -> ModelFn:
    """Wrap a class-conditional `model_fn(x, t, y=...)` into a guided one with weight w.

    The conditional and the unconditional pass run as one batched forward of 2B samples.
    With w == 0, or where `guided_at(t)` says no (the guidance interval), the wrapper is the conditional model
    itself (one forward of B samples).
    """

    def guided(x: Tensor, t: Tensor, y: Tensor | None = None, **kwargs: object) -> Tensor:
        if y is None:
            raise ValueError("classifier-free guidance needs class labels y")
        if w == 0 or (guided_at is not None and not guided_at(t)):
            return model_fn(x, t, y=y, **kwargs)
        null = torch.full_like(y, null_class)
        eps = model_fn(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]), **kwargs)  # [2B, C, H, W]
        eps_cond, eps_uncond = eps.chunk(2)  # [B, C, H, W] each
        return cfg_combine(eps_cond, eps_uncond, w)

    return guided


def autoguide_combine(out_main: Tensor, out_guide: Tensor, w: float) -> Tensor:
    """out~ = out_guide + w (out_main - out_guide) (Karras et al. 2024, eq. 1); w = 1 is the main model."""
    return out_guide + w * (out_main - out_guide)


def autoguidance(model_fn: ModelFn, guide_fn: ModelFn, w: float,
                 guided_at: Callable[[Tensor], bool] | None = None) -> ModelFn:
    """Wrap `model_fn(x, t, **kwargs)` into one guided by the weaker `guide_fn` of the same task with weight w.

    Both see the same inputs (a conditional guide the same labels). With w == 1, or where `guided_at(t)` says no
    (the guidance interval), the guide is not evaluated.
    """

    def guided(x: Tensor, t: Tensor, **kwargs: object) -> Tensor:
        out = model_fn(x, t, **kwargs)
        if w == 1 or (guided_at is not None and not guided_at(t)):
            return out
        return autoguide_combine(out, guide_fn(x, t, **kwargs), w)

    return guided
