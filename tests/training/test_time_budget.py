"""trainer.max_time: a run stops at its time budget with its checkpoint, final grid and status; a resumed run
spends only what is left of the budget (Lightning's Timer stores the time spent in the checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY
from genlab.cli import main
from genlab.runs.checkpoint import read_checkpoint

BUDGET = ["trainer.max_steps=100000", "trainer.val_every_n_steps=100000", "callbacks.checkpoint.every_n_steps=100000",
          "model.ema.posthoc=true", "model.ema.posthoc_every_n_steps=100000"]


def record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_run_stops_at_its_budget_and_a_resumed_one_spends_only_the_rest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, *BUDGET, "trainer.max_time=0.05",
                 "callbacks.checkpoint.every_n_minutes=0.02", f"run_dir={run}"]) == 0
    first = record(run)
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert not [name for name in ckpts if name.startswith("last-")], ckpts  # one last.ckpt, no last-v1 beside it
    timed = [read_checkpoint(run / "checkpoints" / name)["global_step"] for name in ckpts if name.startswith("time-")]
    assert len(timed) >= 1 and all(0 < step <= first["steps"] for step in timed), ckpts  # every 1.2 s of a 3 s run
    assert first["status"] == "stopped at its time budget (trainer.max_time=0.05 min)" and first["steps"] > 0
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == first["steps"]  # saved at the step it stopped
    assert (run / "samples" / "final.png").is_file()
    # post-hoc EMA snapshots of the step it stopped at, though it is no multiple of posthoc_every_n_steps
    assert sorted(p.name for p in (run / "ema_snapshots").glob("*.pt")) == [
        f"step{first['steps']:07d}-sigma0.050.pt", f"step{first['steps']:07d}-sigma0.100.pt"]
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    assert timer["time_elapsed"]["train"] >= 3.0  # 0.05 min, spent and stored

    # The same budget again: nothing is left, so the resumed run stops at once.
    assert main(["train", "experiment=ddpm_digits", *TINY, *BUDGET, "trainer.max_time=0.05", "resume=auto",
                 f"run_dir={run}"]) == 0
    assert record(run)["steps"] <= first["steps"] + 1
    # A larger budget: the run goes on for what the new budget leaves (9 s: several steps even on a busy machine).
    assert main(["train", "experiment=ddpm_digits", *TINY, *BUDGET, "trainer.max_time=0.2", "resume=auto",
                 f"run_dir={run}"]) == 0
    assert record(run)["steps"] > first["steps"] + 1
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == record(run)["steps"]


def test_a_gan_run_keeps_its_time_checkpoints_too(tmp_path: Path) -> None:
    """Manual optimisation (the GAN): Lightning's ModelCheckpoint saves by steps only there, so the time-step
    checkpoints of callbacks.checkpoint.every_n_minutes come from genlab's own TimeCheckpoint."""
    run = tmp_path / "gan"
    assert main(["train", "experiment=gan_digits", "gan.latent_dim=8", "gan.g_channels=8", "gan.d_channels=8",
                 "data.batch_size=16", *BUDGET[:3], "trainer.max_time=0.05", "callbacks.checkpoint.every_n_minutes=0.02",
                 f"run_dir={run}"]) == 0
    steps = record(run)["steps"]
    timed = [read_checkpoint(p)["global_step"] for p in sorted((run / "checkpoints").glob("time-step*.ckpt"))]
    assert len(timed) >= 1 and all(0 < step <= steps for step in timed), timed
