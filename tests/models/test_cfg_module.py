"""The CFG model is the DDPM module with conditioning on: label dropout and p_uncond edge cases."""

from __future__ import annotations

import torch

from conftest import TINY
from genlab.config import load_config, parse_overrides, to_container
from genlab.models import DiffusionModule


def tiny_module(*overrides: str) -> DiffusionModule:
    cfg = load_config(parse_overrides(["experiment=cfg_digits", *TINY, *overrides]))
    cfg.data.channels, cfg.data.num_classes = 1, 10
    return DiffusionModule(to_container(cfg))


def test_share_of_null_labels_is_p_uncond() -> None:
    module = tiny_module("model.p_uncond=0.2")
    seen: list[torch.Tensor] = []
    forward = module.unet.forward
    module.unet.forward = lambda x, t, y=None: (seen.append(y), forward(x, t, y))[1]  # record what the U-Net gets
    torch.manual_seed(0)
    for _ in range(40):
        batch = (torch.rand(250, 1, 16, 16) * 2 - 1, torch.randint(0, 10, (250,)))
        module._losses(batch, generator=None)
    labels = torch.cat(seen)
    share = (labels == module.unet.null_class).float().mean().item()
    # 10,000 draws: the standard error of the share is 0.004
    assert abs(share - 0.2) < 0.016
    assert module.unet.null_class == 10 and labels.max() <= 10


def test_p_uncond_one_is_a_model_that_ignores_labels() -> None:
    module = tiny_module("model.p_uncond=1.0").eval()
    assert not module.conditional and module.unet.null_class is None
    for p in module.parameters():  # make the zero-initialised layers non-trivial
        torch.nn.init.normal_(p, std=0.05)
    settings = module.sampler_settings.override(steps=3)
    a = module.sample(4, settings, seed=0, labels=torch.tensor([0, 1, 2, 3]))
    b = module.sample(4, settings, seed=0, labels=torch.tensor([9, 8, 7, 6]))
    assert torch.equal(a, b)


def test_conditional_grid_has_a_row_per_class() -> None:
    module = tiny_module().eval()
    images, per_row = module.sample_grid(25, seed=0)
    assert per_row == 2 and images.shape == (20, 1, 16, 16)  # 10 classes x 2
