"""`genlab compare` on two tiny runs shows both, with the numbers their run folders hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY
from genlab.cli import main
from genlab.images import load_png


def last_logged(run_dir: Path, key: str) -> float:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)][-1]


def test_compare_two_tiny_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ddpm, gan = tmp_path / "ddpm", tmp_path / "gan"
    assert main(["train", "experiment=ddpm_digits", *TINY, f"run_dir={ddpm}"]) == 0
    gan_args = [*TINY, "gan.latent_dim=8", "gan.g_channels=8", "gan.d_channels=8", "trainer.max_steps=4"]
    assert main(["train", "experiment=gan_digits", *gan_args, f"run_dir={gan}"]) == 0
    record = json.loads((ddpm / "run.json").read_text())
    assert record["experiment"] == "ddpm_digits" and record["steps"] == 6 and record["status"] == "finished"
    assert record["overrides"]["trainer.max_steps"] == "6" and record["wall_seconds"] > 0
    capsys.readouterr()

    out = tmp_path / "table.md"
    assert main(["compare", str(ddpm), str(gan), f"out={out}"]) == 0
    printed = capsys.readouterr().out
    table = out.read_text()
    assert table in printed
    rows = table.splitlines()
    assert rows[0].startswith("| run | experiment | overrides | steps | wall |") and len(rows) == 4
    ddpm_row = next(r for r in rows if "ddpm_digits" in r).split(" | ")
    gan_row = next(r for r in rows if "gan_digits" in r).split(" | ")
    assert ddpm_row[3] == "6" and gan_row[3] == "4"
    assert f"{last_logged(ddpm, 'train/loss'):.4g} (loss)" in ddpm_row[5]
    assert f"{last_logged(gan, 'train/d_loss'):.4g} (d_loss)" in gan_row[5]
    assert str(ddpm / "checkpoints" / "last.ckpt") in ddpm_row[7] and "trainer.max_steps=4" in gan_row[2]
    # the curves beside the table: train loss (the GAN's d_loss) and val loss, a line per run
    curves = load_png(tmp_path / "table.png")
    assert curves.shape[1] > 300 and curves.shape[2] > 2 * curves.shape[1]  # two or more panels side by side
    assert "the curves (train loss, val loss)" in printed


def test_compare_refuses_folders_that_are_not_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_best_fid_is_the_lowest_per_extractor(tmp_path: Path) -> None:
    from genlab.commands.compare import summarise

    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: x\n")
    (run / "logs" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/fid_domain,val/fid_inception\n"
        "0,9,0.5,,\n0,9,,30.0,80.5\n0,19,0.25,,\n0,19,,12.5,90.0\n"
    )
    summary = summarise(run)
    assert summary["best FID"] == {"domain": 12.5, "inception": 80.5}
    assert summary["final loss"] == ("train/loss", 0.25) and summary["steps"] == 20
