"""`eval_samples`, the contract the FID callback and `genlab eval` rely on: balanced classes when conditional."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY
from genlab.build import build_datamodule, resolve_data_keys
from genlab.cli import main
from genlab.config import load_config, parse_overrides, to_container
from genlab.errors import GenlabError
from genlab.images import load_png
from genlab.metrics.extractors import extractor_spec
from genlab.models import DiffusionModule
from genlab.training.callbacks.fid import FIDCallback


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


def test_fid_callback_samples_with_eval_sampler_over_the_sampler_block() -> None:
    cfg = load_config(parse_overrides(["experiment=ddpm_digits", *TINY, "eval.sampler=dpmpp_2m", "eval.steps=4",
                                       "eval.inception_weights=" + str(__file__)]))  # any file: not read here
    resolve_data_keys(cfg, build_datamodule(cfg))
    module = DiffusionModule(to_container(cfg))
    spec = extractor_spec(cfg.eval)
    settings = FIDCallback(cfg.eval, spec).sampler_kwargs(module)["settings"]
    assert (settings.name, settings.steps, settings.grid) == ("dpmpp_2m", 4, "uniform")
    assert module.sampler_settings.name == "ddim"  # the grids keep the sampler block's


@pytest.mark.parametrize("bad, key", [("eval.steps=0", "eval.steps=0 must lie in"),
                                      ("eval.sampler=heun", None), ("sampler.spacing=karras", "sampler.spacing=karras")])
def test_eval_and_grid_samplers_are_checked_when_the_config_loads(bad: str, key: str | None) -> None:
    overrides = parse_overrides(["experiment=ddpm_digits", *TINY, bad])
    if key is None:
        assert load_config(overrides).eval.sampler == "heun"
        return
    with pytest.raises(GenlabError, match=key):
        load_config(overrides)


def test_validation_grids_use_a_solver_from_the_sampler_block(tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=3", "sampler.name=heun",
                 "sampler.steps=2", "callbacks.sample_grid.num_images=4", f"run_dir={run}"]) == 0
    grid = load_png(run / "samples" / "step_0000003.png")
    assert grid.shape == (1, 2 * 18 + 2, 2 * 18 + 2) and grid.float().std() > 0
