"""model.optim.decay: the learning rate falls to zero over the end of the run's budget, counted in steps or in
trainer.max_time, and a GAN (its own optimisers) refuses it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from conftest import TINY
from genlab.cli import main
from genlab.models.optim import decay_factor
from genlab.runs.checkpoint import read_checkpoint

BASE_LR = 2e-4


def test_decay_factor_is_flat_then_falls_to_zero_over_the_last_fraction() -> None:
    assert [decay_factor(p, "none", 0.2) for p in (0.0, 0.9, 1.0)] == [1.0, 1.0, 1.0]
    assert [decay_factor(p, "linear", 0.2) for p in (0.0, 0.5, 0.8)] == [1.0, 1.0, 1.0]
    assert decay_factor(0.9, "linear", 0.2) == pytest.approx(0.5)
    assert decay_factor(1.0, "linear", 0.2) == pytest.approx(0.0)
    assert decay_factor(0.25, "linear", 1.0) == pytest.approx(0.75)  # fraction 1: from the first step
    assert decay_factor(0.9, "cosine", 0.2) == pytest.approx(0.5)  # half-way down the half cosine
    assert decay_factor(0.85, "cosine", 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert decay_factor(1.0, "cosine", 0.2) == pytest.approx(0.0, abs=1e-12)
    assert decay_factor(1.5, "linear", 0.2) == 0.0  # past the budget it stays at zero


def logged_lrs(run: Path) -> list[float]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [float(row["train/lr"]) for row in csv.DictReader(f) if row.get("train/lr")]


def test_a_step_budget_decays_the_lr_linearly_over_its_last_half(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=20", "trainer.val_every_n_steps=100",
                 "trainer.log_every_n_steps=1", "model.optim.warmup_steps=0", f"model.optim.lr={BASE_LR}",
                 "model.optim.decay=linear", "model.optim.decay_fraction=0.5", f"run_dir={run}"]) == 0
    lrs = logged_lrs(run)
    assert len(lrs) == 20
    # Step k trains at the LR set after step k - 1, from the budget spent then: (k - 1) / 20.
    expected = [BASE_LR] + [BASE_LR * decay_factor((k - 1) / 20, "linear", 0.5) for k in range(1, 20)]
    assert lrs == pytest.approx(expected, rel=1e-5)
    assert lrs[10] == pytest.approx(BASE_LR) and lrs[-1] == pytest.approx(0.2 * BASE_LR)
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.1 * BASE_LR)  # for a step 21


def test_a_time_budget_decays_the_lr_by_the_clock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=100000", "trainer.max_time=0.05",
                 "trainer.val_every_n_steps=100000", "callbacks.checkpoint.every_n_steps=100000",
                 "trainer.log_every_n_steps=1", "model.optim.warmup_steps=0", f"model.optim.lr={BASE_LR}",
                 "model.optim.decay=cosine", "model.optim.decay_fraction=1.0", f"run_dir={run}"]) == 0
    lrs = logged_lrs(run)
    assert len(lrs) >= 5, lrs  # a 3-second budget of tiny steps
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), lrs  # it only falls
    assert lrs[0] == pytest.approx(BASE_LR, rel=0.05)
    assert lrs[-1] < 0.1 * BASE_LR  # the clock, not the 100,000-step budget, sets the pace


def test_a_gan_refuses_the_decay_and_a_zero_fraction_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "experiment=gan_digits", "model.optim.decay=linear"]) == 2
    assert "gan.g_optim" in capsys.readouterr().err
    assert main(["train", "experiment=ddpm_digits", "model.optim.decay=linear", "model.optim.decay_fraction=0"]) == 2
    assert "model.optim.decay_fraction" in capsys.readouterr().err
    assert main(["train", "experiment=ddpm_digits", "model.optim.decay=step"]) == 2
    assert "model.optim.decay" in capsys.readouterr().err
