"""End to end: a tiny `genlab train` on digits, then `genlab sample` from its checkpoint."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, subprocess_env
from genlab.images import load_png
from genlab.runs.checkpoint import load_diffusion
from genlab.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run shared by the tests of this file (train once: it is the slow part)."""
    run_dir = tmp_path_factory.mktemp("run")
    assert main(["train", "experiment=ddpm_digits", *TINY, f"run_dir={run_dir}", "seed=7"]) == 0
    return run_dir


def test_train_writes_the_run_folder(trained_run: Path) -> None:
    saved = OmegaConf.load(trained_run / "config.yaml")
    assert saved.experiment == "ddpm_digits" and saved.seed == 7
    assert saved.data.channels == 1 and saved.data.num_classes == 10  # resolved from the dataset
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "checkpoints").glob("best-*.ckpt"))
    # a grid at each validation (steps 3 and 6) and a final one: 4 samples of 16x16 in a 2x2 grid
    for name in ("step_0000003.png", "step_0000006.png", "final.png"):
        grid = load_png(trained_run / "samples" / name)
        assert grid.shape == (1, 2 + 2 * 18, 2 + 2 * 18)
        assert grid.float().std() > 0
    assert (trained_run / "loss_curve.png").stat().st_size > 1000
    with open(trained_run / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train_losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(train_losses) == 6 and all(0 < v < 10 for v in train_losses)
    assert any(r.get("val/loss") for r in rows)
    assert any(r.get("train/loss_q1") or r.get("train/loss_q4") for r in rows)


def test_checkpoint_holds_ema_and_raw_weights(trained_run: Path) -> None:
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["experiment"] == "ddpm_digits"
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert ema.keys() == raw.keys()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # EMA lags the raw weights
    module = load_diffusion(trained_run / "checkpoints" / "last.ckpt", ema=True)
    assert all(torch.equal(v, ema[k]) for k, v in module.state_dict().items())
    module = load_diffusion(trained_run / "checkpoints" / "last.ckpt", ema=False)
    assert all(torch.equal(v, raw[k]) for k, v in module.state_dict().items())


def test_sample_grid_and_folder(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    grid_path = tmp_path / "grid.png"
    args = ["sample", f"ckpt={ckpt}", "sampler=ddim", "steps=5", "eta=0", "n=6", "seed=0"]
    assert main([*args, f"out={grid_path}", "nrow=3"]) == 0
    assert load_png(grid_path).shape == (1, 2 + 2 * 18, 2 + 3 * 18)
    assert main([*args, f"out={tmp_path / 'each'}/"]) == 0
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(6)]
    assert load_png(files[0]).shape == (1, 16, 16)
    # same seed, same images: the grid tiles equal the single PNGs
    grid = load_png(grid_path)
    assert torch.equal(grid[:, 2:18, 2:18], load_png(files[0]))
    assert torch.equal(grid[:, 20:36, 38:54], load_png(files[5]))


def test_sample_ddpm_sampler(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddpm.png"
    assert main(["sample", f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}", "sampler=ddpm", "n=2", f"out={out}"]) == 0
    assert load_png(out).shape == (1, 2 + 18, 2 + 2 * 18)


def test_same_seed_same_weights(trained_run: Path, tmp_path: Path) -> None:
    assert main(["train", "experiment=ddpm_digits", *TINY, f"run_dir={tmp_path}", "seed=7"]) == 0
    a = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sample", "ckpt=/nonexistent/last.ckpt", "out=OUT"], "does not exist"),
        (["sample", "ckpt=CKPT", "n=0", "out=OUT"], "positive"),
        (["sample", "ckpt=CKPT", "steps=5000", "out=OUT"], "out of range"),
        (["sample", "ckpt=CKPT", "eta=-1", "out=OUT"], "out of range"),
        (["sample", "ckpt=CKPT", "stepz=5", "out=OUT"], "Valid arguments"),
        (["sample", "ckpt=CORRUPT", "out=OUT"], "cannot be read"),
        (["sample", "ckpt=CKPT", "out=/proc/forbidden/grid.png"], "cannot write"),
        (["train", "trainer.max_stepz=3"], "max_steps"),
        (["train", "experiment=ddpm_mnist", "data.root=/nonexistent"], "/nonexistent"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    args: list[str], expected: str, trained_run: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    replacements = {
        "CKPT": str(trained_run / "checkpoints" / "last.ckpt"),
        "CORRUPT": str(corrupt),
        "OUT": str(tmp_path / "x.png"),
    }
    for placeholder, value in replacements.items():
        args = [a.replace(placeholder, value) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "genlab", *args, *([f"runs_root={tmp_path}"] if args[0] == "train" else [])],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()  # nothing half-written


def test_missing_dataset_stops_before_a_run_folder_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "experiment=ddpm_mnist", f"data.root={tmp_path / 'nowhere'}", f"runs_root={tmp_path / 'runs'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "MNIST/raw" in err and "data.root=PATH" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
