"""The Lightning Trainer of a run and its callbacks, from the `trainer` and `callbacks` blocks."""

from __future__ import annotations

import datetime
import sys

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig

from genlab.config import kind_facts
from genlab.metrics.extractors import ExtractorSpec
from genlab.models import ClassifierModule, kind_info
from genlab.runs.record import RunRecord
from genlab.runs.checkpoint import AtomicCheckpointIO
from genlab.training.callbacks import ClassAccuracy, FinalCheckpoint, LossCurve, ProgressBar, SampleGrid
from genlab.training.callbacks.best_checkpoint import FiniteModelCheckpoint
from genlab.training.callbacks.budget_progress import BudgetProgress
from genlab.training.callbacks.final_checkpoint import StepCheckpoint
from genlab.training.callbacks.fid import FIDCallback
from genlab.training.callbacks.interrupt import SaveOnSignal
from genlab.training.callbacks.nonfinite import NonFiniteGuard
from genlab.training.callbacks.posthoc_ema import PostHocEMA
from genlab.training.callbacks.power_ema import PowerEMAWeightAveraging
from genlab.training.callbacks.resume_state import ResumeState
from genlab.training.callbacks.run_record import KeepRunRecord
from genlab.training.callbacks.time_checkpoint import TimeCheckpoint
from genlab.training.loggers import build_loggers


def build_callbacks(cfg: DictConfig, record: RunRecord, scorer: ClassifierModule | None = None,
                    fid_spec: ExtractorSpec | None = None) -> list[L.Callback]:
    """Sample grid, class accuracy, FID and loss curve first, then EMA (so they see its weights), then checkpoints.
    `scorer` and `fid_spec`: the class-accuracy classifier and FID extractor, checked before the run (training.run)."""
    cb = cfg.callbacks
    run = record.run
    callbacks: list[L.Callback] = []
    if cb.sample_grid.enabled and kind_info(cfg.model.kind).generates:
        callbacks.append(SampleGrid(run, num_images=cb.sample_grid.num_images, seed=cb.sample_grid.seed))
    if scorer is not None:
        callbacks.append(ClassAccuracy(scorer, per_class=cb.class_accuracy.per_class, seed=cb.class_accuracy.seed))
    if fid_spec is not None:
        callbacks.append(FIDCallback(cfg.eval, fid_spec))
    if cb.loss_curve:
        callbacks.append(LossCurve(run.loss_curve, every_n_steps=cfg.trainer.log_every_n_steps, kind=cfg.model.kind))
    ema = cfg.model.ema
    if ema.enabled and ema.kind == "power":
        callbacks.append(PowerEMAWeightAveraging(sigma_rel=ema.sigma_rel))
    elif ema.enabled:
        callbacks.append(
            EMAWeightAveraging(
                decay=ema.decay, update_every_n_steps=ema.every_n_steps, update_starting_at_step=ema.start_step
            )
        )
    if ema.posthoc:
        callbacks.append(PostHocEMA(run.ema_snapshots, ema.posthoc_sigma_rels, ema.posthoc_every_n_steps))
    if cfg.model.optim.decay != "none":
        callbacks.append(BudgetProgress())
    callbacks.append(ResumeState(cfg.seed))
    callbacks.append(NonFiniteGuard(cfg.trainer.on_nonfinite, cfg.trainer.nonfinite_window,
                                    cfg.trainer.nonfinite_max_share))
    callbacks.append(SaveOnSignal(run.last_ckpt))
    # `last.ckpt` every N steps; the best by val/loss at each validation.
    callbacks.append(StepCheckpoint(dirpath=run.checkpoints, save_last=True, save_top_k=0,
                                    every_n_train_steps=cb.checkpoint.every_n_steps))
    callbacks.append(FinalCheckpoint(run.last_ckpt, every_n_steps=cb.checkpoint.every_n_steps))
    if cb.checkpoint.every_n_minutes is not None:  # kept, not rotated: the states at 5, 10, 20 minutes
        callbacks.append(TimeCheckpoint(run.checkpoints, cb.checkpoint.every_n_minutes))
    if cb.checkpoint.save_top_k != 0:
        callbacks.append(
            FiniteModelCheckpoint(
                dirpath=run.checkpoints,
                filename="best-step{step:07d}",
                monitor=cb.checkpoint.monitor,
                mode="min",
                save_top_k=cb.checkpoint.save_top_k,
                auto_insert_metric_name=False,
            )
        )
    lr_reference_batch = cfg.trainer.reference_batch_size if cfg.trainer.scale_lr else None
    callbacks.append(KeepRunRecord(record, cfg.data.batch_size, lr_reference_batch, cfg.logger.project,
                                   cfg.logger.entity))
    if show_progress(cfg):
        callbacks.append(ProgressBar())
    return callbacks


def show_progress(cfg: DictConfig) -> bool:
    """A progress bar only on a terminal (not in CI logs or redirected output) and when the config allows it."""
    return bool(cfg.trainer.enable_progress_bar) and sys.stderr.isatty()


def build_strategy(cfg: DictConfig) -> str | DDPStrategy:
    """trainer.strategy, with trainer.ddp_timeout_s for DDP: a rank that crashed or hangs ends the run with an error
    after that long instead of leaving the others waiting in a collective."""
    name = cfg.trainer.strategy
    if name in ("ddp", "ddp_find_unused_parameters_true"):
        return DDPStrategy(
            timeout=datetime.timedelta(seconds=cfg.trainer.ddp_timeout_s),
            find_unused_parameters=name.endswith("true"),
        )
    return name


def lost_peer(exc: BaseException) -> bool:
    """A collective failed because another process died or stopped answering."""
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "timed out", "Timed out",
                                   "NCCL communicator was aborted", "DistBackendError"))


def build_trainer(cfg: DictConfig, record: RunRecord, *, scorer: ClassifierModule | None = None,
                  fid_spec: ExtractorSpec | None = None) -> L.Trainer:
    """A Lightning Trainer from the `trainer` block, validating every `val_every_n_steps` steps, that keeps `record`
    (run.json) of the run."""
    strategy = build_strategy(cfg)
    callbacks = build_callbacks(cfg, record, scorer, fid_spec)
    run = record.run
    t = cfg.trainer
    adversarial = kind_facts(cfg.model.kind).adversarial
    # A GAN step is a generator step, taken every gan.d_steps batches; Lightning's validation interval counts batches.
    batches_per_step = cfg.gan.d_steps if adversarial else 1
    return L.Trainer(
        max_steps=t.max_steps,
        max_time=datetime.timedelta(minutes=t.max_time) if t.max_time is not None else None,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        # Manual optimisation (the GAN) clips inside the module: Lightning refuses gradient_clip_val there.
        gradient_clip_val=None if adversarial else t.gradient_clip_val,
        val_check_interval=min(t.val_every_n_steps, t.max_steps) * batches_per_step,  # a short run validates once
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=show_progress(cfg),
        logger=build_loggers(cfg, run.root, record.wandb_id()),
        callbacks=callbacks,
        default_root_dir=str(run.root),
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the DataModule shards by rank itself (genlab.data.sampler)
    )
