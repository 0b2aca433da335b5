"""`eval_samples`, the contract the FID callback and `genlab eval` rely on: balanced classes when conditional."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY
from genlab.build import build_datamodule, resolve_data_keys
from genlab.config import load_config, parse_overrides, to_container
from genlab.models import DiffusionModule


def tiny_module(experiment: str) -> DiffusionModule:
    cfg = load_config(parse_overrides([f"experiment={experiment}", *TINY, "sampler.steps=2", "sampler.guidance=1.5"]))
    resolve_data_keys(cfg, build_datamodule(cfg))
    return DiffusionModule(to_container(cfg))


@pytest.mark.parametrize("experiment", ["ddpm_digits", "cfg_digits"])
def test_eval_samples_are_the_configured_samplers_images(experiment: str) -> None:
    module = tiny_module(experiment)
    images = module.eval_samples(12, seed=3, batch_size=5)
    assert images.shape == (12, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    labels = None
    if module.conditional:  # labels 0..9, 0, 1: every class once before any repeats; the configured CFG weight
        labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
        assert module.sampler_settings.guidance == 1.5
    assert torch.equal(images, module.sample(12, seed=3, batch_size=5, labels=labels))
