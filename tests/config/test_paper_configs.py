"""Paper-scale experiments: every experiment resolves, and the paper's hyper-parameters and network sizes stay put.

The tables below are the papers' values (sources in each experiment's header and docs/paper_numbers.md);
an edit that changes one of them must change this file too, on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO
from genlab.build import build_unet
from genlab.cli import main
from genlab.config import load_config

EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_resolves_with_genlab_config(experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", f"experiment={experiment}"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.experiment == experiment


PAPER_EXPERIMENTS = {"ddpm_cifar10", "ddpm_celeba64", "cfg_cifar10", "flow_cifar10", "edm_cifar10"}  # the papers' EMA


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - PAPER_EXPERIMENTS))
def test_every_other_recipe_averages_with_the_power_ema(experiment: str) -> None:
    ema = load_config({"experiment": experiment}).model.ema
    assert not ema.enabled or (ema.kind == "power" and ema.start_step == 0), (experiment, ema)


def test_paper_experiments_are_among_those_checked() -> None:
    assert PAPER_EXPERIMENTS <= set(EXPERIMENTS)


# Key (dotted path) -> paper value. DDPM: Ho et al. 2020 sec. 4 and appendix B. DDIM CelebA: ermongroup/ddim
# configs/celeba.yml. CFG CIFAR-10: the DDPM recipe plus p_uncond (Ho & Salimans).
DDPM_CIFAR10 = {
    "data.name": "cifar10",
    "data.resolution": 32,
    "data.batch_size": 128,
    "data.hflip": True,
    "unet.base_channels": 128,
    "unet.channel_mult": [1, 2, 2, 2],
    "unet.num_res_blocks": 2,
    "unet.attention_resolutions": [16],
    "unet.dropout": 0.1,
    "diffusion.timesteps": 1000,
    "diffusion.schedule": "linear",
    "diffusion.beta_start": 1e-4,
    "diffusion.beta_end": 0.02,
    "diffusion.variance": "beta",
    "model.conditional": False,
    "model.optim.lr": 2e-4,
    "model.optim.weight_decay": 0.0,
    "model.optim.warmup_steps": 5000,
    "model.ema.enabled": True,
    "model.ema.decay": 0.9999,
    "trainer.accelerator": "gpu",
    "trainer.devices": 1,
    "trainer.max_steps": 800_000,
    "trainer.gradient_clip_val": 1.0,
    "callbacks.checkpoint.every_n_steps": 10_000,
    "eval.enabled": True,
    "eval.features": "inception",
    "eval.split": "train",
}
DDPM_CELEBA64 = {
    "data.name": "celeba",
    "data.resolution": 64,
    "data.batch_size": 128,
    "data.hflip": True,
    "unet.base_channels": 128,
    "unet.channel_mult": [1, 2, 2, 2, 4],
    "unet.num_res_blocks": 2,
    "unet.attention_resolutions": [16],
    "unet.dropout": 0.1,
    "diffusion.timesteps": 1000,
    "diffusion.schedule": "linear",
    "diffusion.beta_start": 1e-4,
    "diffusion.beta_end": 0.02,
    "model.conditional": False,
    "model.optim.lr": 2e-4,
    "model.optim.betas": [0.9, 0.999],
    "model.optim.weight_decay": 0.0,
    "model.optim.warmup_steps": 0,
    "model.ema.decay": 0.9999,
    "trainer.accelerator": "gpu",
    "trainer.devices": 1,
    "trainer.max_steps": 5_000_000,
    "trainer.gradient_clip_val": 1.0,
    "callbacks.checkpoint.every_n_steps": 5000,
    "eval.enabled": True,
    "eval.features": "inception",
}
CFG_CIFAR10 = {
    **{k: v for k, v in DDPM_CIFAR10.items() if k not in ("diffusion.variance", "model.conditional")},
    "model.conditional": True,
    "model.p_uncond": 0.1,
    "sampler.guidance": 0.3,
}
# flow_matching's examples/image CIFAR-10 run (README: FID 2.07; models/model_configs.py "cifar10",
# train_arg_parser.py, training/train_loop.py's skewed times, models/ema.py): 8 GPUs x 64.
FLOW_CIFAR10 = {
    "data.name": "cifar10",
    "data.batch_size": 512,
    "data.hflip": True,
    "unet.base_channels": 128,
    "unet.channel_mult": [2, 2, 2],
    "unet.num_res_blocks": 4,
    "unet.attention_resolutions": [16],
    "unet.dropout": 0.3,
    "unet.num_heads": 1,
    "diffusion.process": "flow",
    "diffusion.flow_time": "logit_normal",
    "diffusion.logit_mean": -1.2,
    "diffusion.logit_std": 1.2,
    "model.conditional": False,
    "model.optim.lr": 1e-4,
    "model.optim.betas": [0.9, 0.95],
    "model.optim.weight_decay": 0.01,
    "model.ema.kind": "ema",
    "model.ema.decay": 0.999,
    "trainer.max_steps": 175_781,  # 1,800 epochs of 50,000 images at 512
    "sampler.name": "heun",
    "sampler.steps": 50,
    "sampler.spacing": "karras",
    "eval.split": "train",
}
# EDM (Karras et al. 2022) config F, DDPM++ unconditional (FID 1.97): NVlabs/edm train.py defaults.
EDM_CIFAR10 = {
    "data.name": "cifar10",
    "data.batch_size": 512,
    "unet.base_channels": 128,
    "unet.channel_mult": [2, 2, 2],
    "unet.num_res_blocks": 4,
    "unet.attention_resolutions": [16],
    "unet.dropout": 0.13,
    "diffusion.process": "edm",
    "diffusion.edm_sigma_min": 0.002,
    "diffusion.edm_sigma_max": 80.0,
    "diffusion.edm_sigma_data": 0.5,
    "diffusion.edm_p_mean": -1.2,
    "diffusion.edm_p_std": 1.2,
    "diffusion.edm_rho": 7.0,
    "model.conditional": False,
    "model.optim.lr": 1e-3,
    "model.optim.betas": [0.9, 0.999],
    "model.optim.weight_decay": 0.0,
    "model.optim.warmup_steps": 19_531,  # 10 Mimg at 512
    "model.ema.kind": "ema",
    "model.ema.decay": 0.5 ** (512 / 500_000),  # half-life 0.5 Mimg
    "trainer.max_steps": 390_625,  # 200 Mimg at 512
    "sampler.name": "heun",
    "sampler.steps": 18,  # 35 NFE
    "sampler.spacing": "karras",
    "eval.split": "train",
}


def _value(cfg: object, key: str) -> object:
    value = OmegaConf.select(cfg, key)
    value = getattr(value, "value", value)  # enums compare by their string
    return list(value) if OmegaConf.is_list(value) else value


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [("ddpm_cifar10", DDPM_CIFAR10), ("ddpm_celeba64", DDPM_CELEBA64), ("cfg_cifar10", CFG_CIFAR10),
     ("flow_cifar10", FLOW_CIFAR10), ("edm_cifar10", EDM_CIFAR10)],
)
def test_paper_hyperparameters(experiment: str, expected: dict[str, object]) -> None:
    cfg = load_config({"experiment": experiment})
    wrong = {k: (_value(cfg, k), v) for k, v in expected.items() if _value(cfg, k) != pytest.approx(v)}
    assert not wrong, f"{experiment}: (configured, paper) differ for {wrong}"
    assert cfg.eval.every_n_steps % cfg.trainer.val_every_n_steps == 0
    assert cfg.eval.num_samples >= 10_000


@pytest.mark.parametrize(
    ("experiment", "channels", "classes", "params"),
    [
        ("ddpm_cifar10", 3, None, 35_746_307),  # Ho et al.: 35.7M
        ("cfg_cifar10", 3, 10, 35_746_307 + 11 * 512),  # + the class embedding (10 classes and null, 4 x 128 wide)
        ("ddpm_celeba64", 3, None, 78_700_803),  # DDIM's CelebA model (ch_mult 1,2,2,2,4)
        ("flow_cifar10", 3, None, 53_634_563),  # genlab's U-Net at ADM's CIFAR-10 sizes (theirs: ADM blocks)
        ("edm_cifar10", 3, None, 53_634_563),  # genlab's U-Net at DDPM++'s sizes (DDPM++ itself: 55.7M)
    ],
)
def test_paper_unet_parameter_counts(experiment: str, channels: int, classes: int | None, params: int) -> None:
    cfg = load_config({"experiment": experiment})
    cfg.data.channels, cfg.data.num_classes = channels, classes
    assert sum(p.numel() for p in build_unet(cfg).parameters()) == params


def test_multi_gpu_keeps_the_paper_global_batch() -> None:
    cfg = load_config({"experiment": "ddpm_cifar10", "trainer.devices": "8", "data.batch_size": "16"})
    assert cfg.trainer.devices * cfg.trainer.num_nodes * cfg.data.batch_size == 128
    assert not cfg.trainer.scale_lr
