"""The Python API calls the command line's code: load + sample, evaluate, train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genlab
from conftest import TINY, subprocess_env
from genlab.diffusion import SamplerSettings
from genlab.errors import GenlabError

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_ddpm" / "checkpoints" / "last.ckpt"
SHORT = [*TINY, "trainer.max_steps=2", "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1",
         "callbacks.checkpoint.every_n_steps=2", "sampler.steps=2"]


def test_import_genlab_does_not_load_torch() -> None:
    code = "import sys, genlab; print(genlab.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()).stdout
    assert out.split() == [genlab.__version__, "False"]


def test_load_and_sample_equal_the_modules_own_sampling() -> None:
    model = genlab.load(LEGACY, device="cpu")
    assert model.kind == "ddpm" and "ddpm_digits" in repr(model)
    images = model.sample(5, sampler="unipc", steps=4, seed=3)
    assert images.shape == (5, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    expected = model.module.sample(5, SamplerSettings(name="unipc", steps=4, clip=True), seed=3)
    assert torch.equal(images, expected)
    assert not torch.equal(images, model.sample(5, sampler="unipc", steps=4, seed=4))


def test_sample_refuses_bad_classes_and_settings() -> None:
    model = genlab.load(LEGACY, device="cpu")
    with pytest.raises(GenlabError, match="guidance needs a class-conditional"):
        model.sample(2, guidance=1.0, classes=1)
    with pytest.raises(GenlabError, match="classes: give one class in 0..9 or 2 of them"):
        model.sample(2, classes=[1, 2, 3])
    with pytest.raises(GenlabError, match="spacing=karras does not apply to sampler=ddim"):
        model.sample(2, sampler="ddim", spacing="karras")


def test_train_then_evaluate(tmp_path: Path) -> None:
    clf = genlab.train("classifier_digits", [*TINY, f"run_dir={tmp_path / 'clf'}"])
    run = genlab.train("ddpm_digits", {**dict(a.split("=", 1) for a in SHORT), "run_dir": tmp_path / "ddpm"})
    assert run == tmp_path / "ddpm" and (run / "config.yaml").is_file()
    metrics = genlab.evaluate(run / "checkpoints" / "last.ckpt", n=12, features="domain", sampler="dpmpp_2m",
                              steps=3, domain_classifier=clf / "checkpoints" / "last.ckpt",
                              cache_dir=tmp_path / "cache", out=tmp_path / "e.json")
    assert metrics["fid_domain"] > 0 and set(metrics) >= {"kid_domain_mean", "precision_domain", "recall_domain"}
    written = json.loads((tmp_path / "e.json").read_text())
    assert written["metrics"] == metrics and written["sampler"]["name"] == "dpmpp_2m"
