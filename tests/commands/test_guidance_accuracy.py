"""Guidance raises class accuracy on small models trained in the test (slow: run with `make test-slow`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY
from genlab.runs.checkpoint import load_classifier, load_diffusion
from genlab.cli import main
from genlab.metrics.class_accuracy import class_accuracy
from genlab.diffusion import SamplerSettings


@pytest.mark.slow
def test_classifier_guidance_raises_class_accuracy(tmp_path: Path) -> None:
    steps = ["trainer.max_steps=300", "trainer.val_every_n_steps=300", "callbacks.checkpoint.every_n_steps=300"]
    assert main(["train", "experiment=classifier_digits", *TINY, *steps, "unet.base_channels=16",
                 f"run_dir={tmp_path / 'clf'}"]) == 0
    assert main(["train", "experiment=ddpm_digits", *TINY, *steps, "unet.base_channels=16",
                 f"run_dir={tmp_path / 'ddpm'}"]) == 0
    classifier = load_classifier(tmp_path / "clf" / "checkpoints" / "last.ckpt")
    diffusion = load_diffusion(tmp_path / "ddpm" / "checkpoints" / "last.ckpt")
    labels = torch.arange(10).repeat_interleave(10)
    accuracy = {}
    for scale in (0.0, 5.0):
        settings = SamplerSettings(name="ddim", steps=20, eta=0.0, classifier_scale=scale)
        images = diffusion.sample(len(labels), settings, labels=labels, classifier=classifier, seed=0)
        accuracy[scale] = class_accuracy(classifier, images, labels)
    print("class accuracy by classifier_scale:", accuracy)
    assert accuracy[5.0] > accuracy[0.0] + 0.2, accuracy
