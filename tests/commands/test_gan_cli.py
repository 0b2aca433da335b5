"""`genlab train experiment=gan_digits`, then `genlab sample` and `genlab invert` on its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY
from genlab.images import load_png
from genlab.runs.checkpoint import load_gan
from genlab.cli import main

TINY_GAN = [*TINY, "gan.latent_dim=16", "gan.g_channels=8", "gan.d_channels=8"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("gan_run")
    assert main(["train", "experiment=gan_digits", *TINY_GAN, f"run_dir={run_dir}"]) == 0
    return run_dir


def test_training_writes_grids_dynamics_and_checkpoint(gan_run: Path) -> None:
    assert (gan_run / "checkpoints" / "last.ckpt").is_file()
    grids = sorted(p.name for p in (gan_run / "samples").glob("*.png"))
    assert grids == ["final.png", "step_0000003.png", "step_0000006.png"]
    assert load_png(gan_run / "samples" / "step_0000003.png").shape == (1, 2 + 2 * 18, 2 + 2 * 18)  # 4 images
    assert (gan_run / "loss_curve.png").is_file()
    header = (gan_run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/d_grad_norm",
                "train/g_grad_norm", "train/diversity", "val/diversity"):
        assert key in header, key


def test_sample_uses_the_ema_generator_by_default(gan_run: Path, tmp_path: Path) -> None:
    ckpt = gan_run / "checkpoints" / "last.ckpt"
    assert main(["sample", f"ckpt={ckpt}", "n=6", f"out={tmp_path / 'ema.png'}"]) == 0
    assert main(["sample", f"ckpt={ckpt}", "n=6", "ema=false", f"out={tmp_path / 'raw.png'}"]) == 0
    assert load_png(tmp_path / "ema.png").shape == (1, 2 + 2 * 18, 2 + 3 * 18)
    assert (tmp_path / "ema.png").read_bytes() != (tmp_path / "raw.png").read_bytes()
    ema, raw = load_gan(ckpt), load_gan(ckpt, ema=False)
    saved = torch.load(ckpt, weights_only=True)
    for name, value in ema.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name])
    assert any(not torch.equal(v, saved["state_dict"][k]) for k, v in raw.state_dict().items())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["guidance=2"], "diffusion models"), (["classes=1,2"], "unconditional")],
)
def test_diffusion_only_arguments_are_refused_for_a_gan(
    gan_run: Path, tmp_path: Path, extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", f"ckpt={gan_run / 'checkpoints' / 'last.ckpt'}", *extra, f"out={tmp_path / 'x.png'}"]) == 2
    assert expected in capsys.readouterr().err


def test_invert_a_generated_image_drives_the_error_far_down(gan_run: Path, tmp_path: Path) -> None:
    ckpt = gan_run / "checkpoints" / "last.ckpt"
    assert main(["sample", f"ckpt={ckpt}", "n=1", "seed=123", f"out={tmp_path / 'g.png'}"]) == 0
    out = tmp_path / "recon.png"
    args = ["invert", f"ckpt={ckpt}", f"image={tmp_path / 'g.png'}", "steps=150", "restarts=2", "lr=0.1",
            f"out={out}"]
    assert main(args) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["kind"] == "gan" and len(record["mse_per_step"]) == 151
    assert record["mse"] < 0.2 * record["mse_start"], record  # far below its starting value
    assert load_png(out).shape == (1, 2 + 18, 2 + 3 * 18)  # target | start | reconstruction
    assert (tmp_path / "recon_error.png").is_file()


def test_invert_a_training_image_with_discriminator_features(gan_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "real.png"
    args = ["invert", f"ckpt={gan_run / 'checkpoints' / 'last.ckpt'}", "image=index:5", "steps=20",
            "feature_weight=0.1", f"out={out}"]
    assert main(args) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["feature_weight"] == 0.1 and record["mse"] <= record["mse_start"]


def test_wasserstein_without_a_lipschitz_constraint_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["config", "experiment=gan_digits", "gan.loss=wasserstein", "gan.spectral_norm=false"]
    assert main(args) == 2
    assert "lambda_gp" in capsys.readouterr().err
