"""Two DDP processes on CPU (gloo) with batch b train exactly like one process with batch 2b.

How the two runs become comparable: genlab shards the data itself (the Trainer has use_distributed_sampler=False).
Each epoch's permutation depends only on (seed, epoch) and is dealt round-robin, so at step k rank 0 and rank 1
together hold positions [2kb, 2kb + 2b) of the permutation, the batch the single process draws at step k. The
timesteps and noise are drawn for the whole global batch from the same stream on every rank, each rank keeping its
rows (genlab.models.timesteps). DDP averages the two ranks' gradients, which equals the gradient of the mean loss
over 2b samples. What remains is floating-point summation order.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch

from conftest import TINY, subprocess_env
from genlab.images import load_png

COMMON = ["experiment=ddpm_digits", *TINY, "trainer.accelerator=cpu", "trainer.max_steps=8",
          "trainer.val_every_n_steps=8", "callbacks.checkpoint.every_n_steps=8", "trainer.log_every_n_steps=1",
          "unet.dropout=0.0"]


def train(run_dir: Path, *extra: str) -> dict:
    args = [sys.executable, "-m", "genlab", "train", *COMMON, *extra, f"run_dir={run_dir}"]
    done = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


# Not slow (about 70 s on 2 cores): the only check that DDP's data and noise sharding matches one device (no unit test).
def test_two_devices_with_batch_b_match_one_device_with_batch_2b(tmp_path: Path) -> None:
    single = train(tmp_path / "single", "data.batch_size=32")
    double = train(tmp_path / "ddp", "data.batch_size=16", "trainer.devices=2", "trainer.strategy=ddp")
    assert single["global_step"] == double["global_step"] == 8
    diffs = {k: (single["current_model_state"][k] - double["current_model_state"][k]).abs().max().item()
             for k in single["current_model_state"]}
    worst = max(diffs.values())
    print(f"max |weight difference| after 8 steps: {worst:.3g}")
    assert worst < 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(a) == len(b) == 8
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)

    # The grid at step 8 is sampled in two shares: rank 0's (the first 2 of 4 images, seed 0) is the single run's
    # first 2 images; rank 1's comes from seed 1. Rank 0 gathers them into one grid of the same size.
    grid_1, grid_2 = (load_png(tmp_path / run / "samples" / "step_0000008.png") for run in ("single", "ddp"))
    assert grid_1.shape == grid_2.shape
    top = grid_1.shape[1] // 2  # a 2 x 2 grid: the first row holds images 0 and 1
    assert (grid_1[:, :top].int() - grid_2[:, :top].int()).abs().max() <= 2
    assert (grid_1[:, top:].int() - grid_2[:, top:].int()).abs().max() > 2
