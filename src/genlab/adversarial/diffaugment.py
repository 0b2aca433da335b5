"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same random,
differentiable augmentations applied to the real and the fake images that the discriminator sees, in both the
discriminator's and the generator's steps, so D cannot memorise a small training set and G still gets gradients
through the augmentation.

The three policies of the paper, each drawn per image: `color` (brightness, saturation and contrast), `translation`
(shift by up to 1/8 of the size, zero padded) and `cutout` (a zeroed square of half the size).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class DiffAugmentOp(StrEnum):
    """gan.diffaugment: the policies, applied in this order."""

    color = "color"
    translation = "translation"
    cutout = "cutout"


def _rand(x: Tensor, generator: torch.Generator | None, *shape: int) -> Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype, generator=generator)


def color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Brightness + U(-0.5, 0.5), saturation x U(0, 2) and contrast x U(0.5, 1.5), per image, on [-1, 1] images."""
    x = x + (_rand(x, generator, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, generator, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, generator, 1, 1, 1) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to `ratio` of its size in each direction, filling with zeros (differentiable: a
    gather from the zero-padded image)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    rows = (rows + dy + 1).clamp(0, h + 1)  # [B, H, 1] in the padded image
    cols = (cols + dx + 1).clamp(0, w + 1)  # [B, 1, W]
    padded = F.pad(x, (1, 1, 1, 1))
    index = (rows * (w + 2) + cols).flatten(1)  # [B, H W]
    flat = padded.flatten(2)  # [B, C, (H + 2)(W + 2)]
    out = flat.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))
    return out.view_as(x)


def cutout(x: Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Zero one square of `ratio` of the size per image, at a random centre (clipped at the borders)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows - cy + ch // 2) >= 0) & ((rows - cy + ch // 2) < ch) & ((cols - cx + cw // 2) >= 0) & (
        (cols - cx + cw // 2) < cw)  # [B, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """x [B, C, H, W] through the named policies (DiffAugmentOp), in the paper's order; an empty policy is x."""
    ops = {str(p) for p in policy}
    unknown = ops - {op.value for op in DiffAugmentOp}
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {sorted(unknown)}: expected {[op.value for op in DiffAugmentOp]}")
    if "color" in ops:
        x = color(x, generator)
    if "translation" in ops:
        x = translation(x, generator=generator)
    if "cutout" in ops:
        x = cutout(x, generator=generator)
    return x
