"""Shared fixtures: tiny real configs that train in seconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Overrides that shrink the real ddpm_digits experiment to a seconds-long CPU run.
TINY = [
    "unet.base_channels=8",
    "unet.channel_mult=[1,2]",
    "unet.num_res_blocks=1",
    "unet.attention_resolutions=[8]",
    "diffusion.timesteps=50",
    "data.batch_size=16",
    "trainer.max_steps=6",
    "trainer.val_every_n_steps=3",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "callbacks.checkpoint.every_n_steps=3",
    "callbacks.sample_grid.num_images=4",
    "sampler.steps=5",
    "model.optim.warmup_steps=2",
]


@pytest.fixture(autouse=True)
def _offline_and_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("GENLAB_HOME", str(REPO))


# Runs shared by the evaluation tests (session-scoped: trained once for every file that uses them).
@pytest.fixture(scope="session")
def classifier_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("clf_run")
    from genlab.cli import main

    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={run_dir}"]) == 0
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def fid_run(classifier_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DDPM run with FID every 3 steps; 7 steps, so the end-of-training FID is not at a validation."""
    run_dir = tmp_path_factory.mktemp("ddpm_run")
    args = ["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=7", "eval.enabled=true",
            "eval.features=domain", f"eval.domain_classifier={classifier_ckpt}", "eval.num_samples=12",
            "eval.every_n_steps=3", f"eval.cache_dir={run_dir / 'cache'}", f"run_dir={run_dir}"]
    from genlab.cli import main

    assert main(args) == 0
    return run_dir


def random_dinov2(path: Path, seed: int, width: int = 64) -> Path:
    """A tiny DINOv2 state dict in the official hub format (37 x 37 position grid of 518 px, a mask token)."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    net = VisionTransformer(img_size=518, patch_size=14, embed_dim=width, depth=2, num_heads=width // 64,
                            init_values=1.0, num_classes=0)
    state = {k: v + 0.05 * torch.randn_like(v) for k, v in net.state_dict().items()}  # layer scales off 1.0 too
    state["mask_token"] = torch.zeros(1, width)
    torch.save(state, path)
    return path


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def subprocess_env() -> dict[str, str]:
    """Environment for `python -m genlab` subprocesses: offline, repo configs, few threads."""
    env = dict(os.environ, WANDB_MODE="offline", GENLAB_HOME=str(REPO), OMP_NUM_THREADS="2")
    return env


# The orders the ODE solvers reach on a toy whose exact ODE solution is known (UniC-2 lifts UniP-2 to order 3).
SOLVER_ORDERS = {"euler": 1, "heun": 2, "dpmpp_2m": 2, "unipc": 3}


def assert_solver_order(name: str, process: object, net: object, x_T: object, target: object, spacing: str) -> None:
    """Sampler `name` with 32, 64 and 128 steps: the max error against `target` halves at its order's rate (within
    0.3): each doubling of the steps divides it by about 2^order."""
    import math

    from genlab.diffusion import run_sampler

    errors = [float((run_sampler(name, process, net, x_T, steps=steps, spacing=spacing, clip=False) - target)
                    .abs().max()) for steps in (32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) > SOLVER_ORDERS[name] - 0.3, (name, errors, rates)
