"""DiffAugment (Zhao et al. 2020): each policy does what the paper's does, per image, differentiably."""

from __future__ import annotations

import pytest
import torch

from genlab.adversarial import diff_augment
from genlab.adversarial.diffaugment import color, cutout, translation


def test_translation_shifts_whole_images_with_zero_fill() -> None:
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(50, 2, 1, 1) + 1  # no zeros inside
    out = translation(x, generator=torch.Generator().manual_seed(0))
    for image, shifted in zip(x, out):
        found = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                 if torch.equal(shifted, torch.roll(image, (dy, dx), (1, 2)) * _inside(dy, dx))]
        assert len(found) == 1  # one shift of at most 1/8 of 8 pixels, the uncovered rows and columns zero
    assert len({tuple(o[0, 4, 4:6].tolist()) for o in out}) > 3  # drawn per image


def _inside(dy: int, dx: int) -> torch.Tensor:
    mask = torch.ones(8, 8)
    if dy > 0:
        mask[:dy] = 0
    if dy < 0:
        mask[dy:] = 0
    if dx > 0:
        mask[:, :dx] = 0
    if dx < 0:
        mask[:, dx:] = 0
    return mask


def test_cutout_zeroes_one_square_of_half_the_size() -> None:
    x = torch.ones(200, 1, 8, 8)
    out = cutout(x, generator=torch.Generator().manual_seed(0))
    zeroed = (out == 0).flatten(1).sum(1)
    assert zeroed.max() == 16 and zeroed.min() >= 4  # a 4 x 4 square, clipped at the borders
    assert ((out == 0) | (out == 1)).all()


def test_color_moves_brightness_and_contrast_per_image() -> None:
    x = torch.linspace(-1, 1, 64).view(1, 1, 8, 8).repeat(100, 1, 1, 1)
    out = color(x, generator=torch.Generator().manual_seed(0))
    shift = out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.std() > 0.1  # brightness U(-0.5, 0.5)
    ratio = out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert 0.5 - 1e-6 <= ratio.min() and ratio.max() <= 1.5 + 1e-6  # contrast U(0.5, 1.5) (gray: saturation is 1)


def test_the_policies_are_differentiable_and_reproducible() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    policy = ["color", "translation", "cutout"]
    out = diff_augment(x, policy, torch.Generator().manual_seed(1))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = diff_augment(x.detach(), policy, torch.Generator().manual_seed(1))
    assert torch.equal(out.detach(), again)
    assert diff_augment(x, []) is x
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(x, ["flip"])
