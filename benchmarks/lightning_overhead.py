"""Section 2 of issue 9: genlab's DDPM training step inside Trainer.fit (EMA, logging, every callback of a real
run) against a bare PyTorch loop doing the same forward, backward, clipping and AdamW step on the same data."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from bench_config import Bench
from report import Section, Target
from genlab.build import build_datamodule, resolve_data_keys
from genlab.config import load_config, to_container
from genlab.models import DiffusionModule
from genlab.models.optim import adamw_with_warmup
from genlab.runs import RunDir
from genlab.runs.record import RunRecord
from genlab.training.trainer import build_trainer


class StepClock(L.Callback):
    """Seconds between consecutive training-batch ends: a whole step, data loading and callbacks included."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args: object) -> None:
        self.ends.append(time.perf_counter())


def digits_config(b: Bench, steps: int) -> DictConfig:
    """The `make train` recipe (experiment=ddpm_digits), validation and checkpoints pushed past the timed steps."""
    overrides = {"experiment": "ddpm_digits", "trainer.max_steps": str(steps), "trainer.enable_progress_bar": "false",
                 "trainer.val_every_n_steps": str(steps), "trainer.limit_val_batches": "1",
                 "trainer.log_every_n_steps": "1", "callbacks.sample_grid.enabled": "false",
                 "callbacks.loss_curve": "false", "callbacks.checkpoint.every_n_steps": str(steps),
                 "trainer.accelerator": b.device.type}
    if b.quick:
        overrides.update({"data.batch_size": "16", "unet.base_channels": "8"})
    return load_config(overrides)


def fit_step_times(cfg: DictConfig, warmup: int) -> list[float]:
    """Per-step seconds of Trainer.fit after `warmup` steps, built as `genlab train` builds it."""
    datamodule = build_datamodule(cfg)
    resolve_data_keys(cfg, datamodule)
    torch.manual_seed(0)
    module = DiffusionModule(to_container(cfg))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, RunRecord(RunDir(Path(run_dir)), "lightning_overhead", {}))
        clock = StepClock()
        trainer.callbacks.append(clock)
        trainer.fit(module, datamodule=datamodule)
    return [b - a for a, b in zip(clock.ends[warmup:], clock.ends[warmup + 1:])]


def bare_step_times(cfg: DictConfig, warmup: int, device: torch.device) -> list[float]:
    """Per-step seconds of a plain loop over the same DataLoader: losses, backward, clip, AdamW, LR schedule."""
    datamodule = build_datamodule(cfg)
    resolve_data_keys(cfg, datamodule)
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = DiffusionModule(to_container(cfg)).to(device).train()
    optim = adamw_with_warmup(module.parameters(), cfg.model.optim, cfg.model.optim.lr)
    optimizer, schedule = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    ends, steps = [], cfg.trainer.max_steps
    while len(ends) < steps:
        for x0, y in datamodule.train_dataloader():
            x0, y = x0.to(device), y.to(device)
            terms, _ = module._losses((x0, y), generator=None)  # the training step's own losses, minus the logging
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].mean().backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.trainer.gradient_clip_val)
            optimizer.step()
            schedule.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ends.append(time.perf_counter())
            if len(ends) == steps:
                break
    return [b - a for a, b in zip(ends[warmup:], ends[warmup + 1:])]


def run(b: Bench) -> Section:
    warmup, timed = (2, 6) if b.quick else (3, 20)
    rounds = 1 if b.quick else 2
    cfg = digits_config(b, warmup + timed + 1)
    no_ema = cfg.copy()
    no_ema.model.ema.enabled = False
    fit, fit_no_ema, bare = [], [], []
    for _ in range(rounds):  # alternate whole runs: a step of one cannot be interleaved with a step of the other
        fit += fit_step_times(cfg.copy(), warmup)
        fit_no_ema += fit_step_times(no_ema.copy(), warmup)
        bare += bare_step_times(cfg.copy(), warmup, b.device)
    fit_s, no_ema_s, bare_s = statistics.median(fit), statistics.median(fit_no_ema), statistics.median(bare)
    overhead = fit_s / bare_s - 1
    section = Section("2. Lightning overhead: Trainer.fit vs a bare PyTorch loop")
    section.lines += [f"experiment=ddpm_digits (U-Net {cfg.unet.base_channels} base channels, batch "
                      f"{cfg.data.batch_size}, {cfg.data.resolution}x{cfg.data.resolution}) on {b.device}. "
                      f"Trainer.fit is built by genlab.training.trainer.build_trainer with every callback of a real run "
                      f"(EMA every step, loss logging every step, non-finite guard, checkpoint bookkeeping); sample "
                      f"grids are off, and validation and the checkpoint come after the timed steps. The bare loop "
                      f"does the same losses, backward, gradient clipping, AdamW and LR schedule on the same "
                      f"DataLoader. Medians of "
                      f"{len(fit)} and {len(bare)} steps over {rounds} alternating runs.", ""]
    section.table(["loop", "ms/step", "images/s"], [
        ["Trainer.fit (genlab)", f"{fit_s * 1000:.1f}", f"{cfg.data.batch_size / fit_s:.0f}"],
        ["Trainer.fit, model.ema.enabled=false", f"{no_ema_s * 1000:.1f}", f"{cfg.data.batch_size / no_ema_s:.0f}"],
        ["bare PyTorch", f"{bare_s * 1000:.1f}", f"{cfg.data.batch_size / bare_s:.0f}"],
        ["overhead of Trainer.fit (of which EMA)",
         f"{100 * overhead:+.1f}% ({100 * (fit_s - no_ema_s) / bare_s:+.1f}%)", ""]])
    section.targets.append(Target("Lightning overhead, % of the bare step time", 100 * overhead, 3.0,
                                  "a fixed cost per step (the EMA update, whose share section 2 shows; per-step "
                                  "logging of seven metrics; callbacks) that is large against a small U-Net's step",
                                  lower_is_better=True))
    return section
