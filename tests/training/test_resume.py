"""Crash and resume: a run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted run;
SIGTERM and SIGUSR1 save and stop cleanly; checkpoint writes are atomic."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, subprocess_env
from genlab.runs.checkpoint import AtomicCheckpointIO, remove_stale_temporaries

# 25 batches of 64 per digits epoch: 60 steps cross two epoch boundaries; checkpoints every 10 steps.
ARGS = ["experiment=ddpm_digits", *TINY, "data.batch_size=64", "trainer.max_steps=60", "trainer.val_every_n_steps=20",
        "callbacks.checkpoint.every_n_steps=10", "trainer.log_every_n_steps=1"]


def genlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "genlab", "train", *args]


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return -1


def run_until(args: list[str], ckpt: Path, min_step: int, sig: int, timeout: float = 240) -> subprocess.Popen:
    """Start a training subprocess and send it `sig` once its last.ckpt has reached `min_step`."""
    proc = subprocess.Popen(genlab(*args), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + timeout
    while checkpoint_step(ckpt) < min_step:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.time() < deadline, "training never reached the checkpoint"
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc


def logged_losses(run_dir: Path) -> list[tuple[str, str]]:
    """(step, loss) rows of metrics.csv: train/loss for diffusion, train/d_loss for a GAN."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    key = "train/loss" if "train/loss" in rows[0] else "train/d_loss"
    return [(row["step"], row[key]) for row in rows if row.get(key)]


def assert_same_tensors(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


GAN_ARGS = [*ARGS, "experiment=gan_digits", "gan.latent_dim=16", "gan.g_channels=8", "gan.d_channels=8",
            "model.ema.decay=0.9"]


# The LR decaying over the last half of the 60 steps: the resumed run picks the schedule up where it was killed.
DECAY_ARGS = [*ARGS, "model.optim.decay=linear", "model.optim.decay_fraction=0.5"]


@pytest.mark.parametrize("args", [ARGS, GAN_ARGS, DECAY_ARGS], ids=["ddpm", "gan", "ddpm-lr-decay"])
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path, args: list[str]) -> None:
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    subprocess.run(genlab(*args, f"run_dir={reference}"), env=subprocess_env(), check=True, capture_output=True)

    ckpt = crashed / "checkpoints" / "last.ckpt"
    proc = run_until([*args, f"run_dir={crashed}"], ckpt, min_step=30, sig=signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(ckpt)
    assert 30 <= killed_at < 60 and killed_at % 25 != 0  # mid-epoch, before the end

    resumed = subprocess.run(genlab(*args, f"run_dir={crashed}", "resume=auto"), env=subprocess_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"from {ckpt}" in resumed.stdout or "resuming" in resumed.stdout

    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["global_step"] == b["global_step"] == 60
    assert_same_tensors(a["state_dict"], b["state_dict"], "EMA weights")
    assert_same_tensors(a["current_model_state"], b["current_model_state"], "raw weights")
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer")
    assert logged_losses(reference) == logged_losses(crashed)  # the whole loss curve, rows and values
    assert len(logged_losses(reference)) == 60


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, sig: int) -> None:
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    args = [*ARGS, "trainer.max_steps=100000", f"run_dir={run_dir}"]  # would run for a long time
    proc = run_until(args, ckpt, min_step=10, sig=sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"stopped by {signal.Signals(sig).name}" in out
    step = checkpoint_step(ckpt)
    assert step >= 10 and f"at step {step}" in out  # saved at the step it stopped, not only at the last multiple


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    good = path.read_bytes()

    def dies_midway(obj: object, f: object, *args: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left behind


def test_temporaries_of_a_killed_save_are_removed(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"good")
    stale = tmp_path / f".last.ckpt.tmp-{os.getpid() + 1}"
    stale.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
