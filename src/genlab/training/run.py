"""`genlab train`: build everything from the config, fit, and leave a complete run folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from genlab.build import build_datamodule, is_conditional, resolve_data_keys
from genlab.config import save_config, to_container
from genlab.data.base import ImageDataModule
from genlab.errors import GenlabError, first_line
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import extractor_spec
from genlab.models import ClassifierModule, build_module
from genlab.runs import RUN_DIR_ENV, RunDir, make_run_dir
from genlab.runs.checkpoint import checkpoint_kind, read_checkpoint, remove_stale_temporaries
from genlab.runs.lock import RunLock, launched_rank, refuse_existing_run
from genlab.runs.record import read_record, record_end, record_start, write_record
from genlab.runs.resume import (
    as_schema,
    check_same_run,
    find_resume_checkpoint,
    read_metrics_before,
    restore_csv_log,
)
from genlab.training.callbacks.class_accuracy import load_scorer
from genlab.training.callbacks.final_checkpoint import out_of_time
from genlab.training.callbacks.interrupt import SaveOnSignal
from genlab.training.callbacks.sample_grid import SampleGrid
from genlab.training.loggers import finish_wandb, summarise_best_fid
from genlab.training.trainer import build_trainer, lost_peer

SUMMARY_KEYS = ("train/loss", "val/loss", "val/acc_t0", "val/class_acc", "train/d_loss", "train/g_loss", "val/diversity")


def train(cfg: DictConfig, overrides: dict[str, str] | None = None) -> Path:
    """Train the configured model; return the run folder. `overrides` (the command line) go to run.json."""
    datamodule, model, scorer = prepare(cfg)  # everything that can fail on bad input, before a run folder exists
    resume_from, resume_step, kept_log = resume_point(cfg)
    run = make_run_dir(cfg.run_dir, cfg.runs_root, cfg.experiment)
    if launched_rank():  # rank 0 owns the folder and holds its lock
        return fit(cfg, run, datamodule, model, scorer, resume_from, resume_step, kept_log, overrides or {})
    with RunLock(run):  # first: a folder another process is writing is named as such, not as a finished run
        refuse_existing_run(run, cfg.resume)
        return fit(cfg, run, datamodule, model, scorer, resume_from, resume_step, kept_log, overrides or {})


def fit(cfg: DictConfig, run: RunDir, datamodule: ImageDataModule, model: L.LightningModule,
        scorer: ClassifierModule | None, resume_from: Path | None, resume_step: int,
        kept_log: tuple[list[str], list[dict[str, str]]], overrides: dict[str, str]) -> Path:
    """Write the config, fit, and record how the run ended in run.json."""
    remove_stale_temporaries(run.checkpoints)  # left by a process killed while saving
    save_config(cfg, run.config)
    trainer = build_trainer(cfg, run, scorer, read_record(run.root).get("wandb_id") if resume_from else None)
    rank_zero = trainer.is_global_zero
    if rank_zero:  # other ranks' loggers are stand-ins that write nothing
        restore_csv_log(trainer.loggers[0], *kept_log)
        start_record(cfg, run, trainer, overrides, resume_from, resume_step)
    started = time.time()
    os.environ[RUN_DIR_ENV] = str(run.root.resolve())
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    except SIGTERMException:
        if rank_zero:
            record_end(run.root, started, trainer.global_step, "stopped by SIGTERM", {})
        print(f"genlab: stopped by SIGTERM at step {trainer.global_step}; {run.last_ckpt} holds it. "
              f"Continue with the same command and resume=auto run_dir={run.root}.")
        return run.root
    except BaseException as exc:
        if rank_zero:
            record_end(run.root, started, trainer.global_step, "failed", {})
        if trainer.world_size > 1 and isinstance(exc, RuntimeError) and lost_peer(exc):
            raise GenlabError(
                f"another DDP process stopped answering at step {trainer.global_step} "
                f"({first_line(exc, 160)}); this one stopped too. See the other processes' logs. "
                f"The last checkpoint is {run.last_ckpt}: continue with resume=auto run_dir={run.root}."
            ) from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        if rank_zero:
            finish_wandb(trainer.loggers)
    if rank_zero:
        finish_record(cfg, run, trainer, started)
    return run.root


def prepare(cfg: DictConfig) -> tuple[ImageDataModule, L.LightningModule, ClassifierModule | None]:
    """The DataModule, the model and the class-accuracy scorer; fails on a missing dataset, a bad network config or
    a missing classifier or weights file, before anything is written."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.check_available()
    resolve_data_keys(cfg, datamodule)
    needs_labels = cfg.model.conditional or cfg.model.kind == "classifier"
    if needs_labels and cfg.data.num_classes is None:
        raise GenlabError(
            f"this model needs class labels, but dataset {cfg.data.name!r} at {cfg.data.root} has none. "
            "Use a folder with one subfolder per class, or set model.conditional=false."
        )
    model = build_module(to_container(cfg))
    scorer = None
    if cfg.callbacks.class_accuracy.classifier:
        scorer = load_scorer(cfg.callbacks.class_accuracy.classifier, cfg.data.num_classes, is_conditional(cfg))
    if cfg.eval.enabled:  # missing weights or classifier fail now, not after the first validation
        spec = extractor_spec(cfg.eval.features, cfg.eval.inception_weights, cfg.eval.domain_classifier)
        if spec.features == "domain":
            check_domain_classifier(spec.weights_path, cfg.data, "eval.domain_classifier")
    return datamodule, model, scorer


def resume_point(cfg: DictConfig) -> tuple[Path | None, int, tuple[list[str], list[dict[str, str]]]]:
    """The checkpoint to resume from (None: a fresh run), its step, and the metrics.csv rows logged before it.
    Sets cfg.run_dir to the checkpoint's run folder."""
    resume_from = find_resume_checkpoint(cfg)
    if resume_from is None:
        return None, 0, ([], [])
    ckpt = read_checkpoint(resume_from)
    kind = checkpoint_kind(ckpt)
    if kind != cfg.model.kind:
        raise GenlabError(f"resume: {resume_from} holds a {kind!r} model, but this config trains a {cfg.model.kind!r}.")
    run = RunDir.of_checkpoint(resume_from)
    # The checkpoint's own config, not config.yaml: a file the user can edit must not decide what may change.
    check_same_run(to_container(cfg), as_schema(ckpt["hyper_parameters"]["config"]), resume_from)
    step = int(ckpt.get("global_step", 0))
    cfg.run_dir = str(run.root)
    return resume_from, step, read_metrics_before(run.metrics_csv, step)


def start_record(cfg: DictConfig, run: RunDir, trainer: L.Trainer, overrides: dict[str, str],
                 resume_from: Path | None, resume_step: int) -> None:
    """run.json's launch fields, and the lines that say what this run is."""
    if resume_from is None:
        print(f"genlab: run folder {run.root}")
    else:
        print(f"genlab: resuming {run.root} from {resume_from} (step {resume_step})")
    record_start(run.root, cfg.experiment, overrides, str(resume_from) if resume_from else None)
    global_batch = cfg.data.batch_size * trainer.world_size
    write_record(run.root, global_batch=global_batch, world_size=trainer.world_size)
    scaling = f", learning rates x {global_batch / cfg.trainer.reference_batch_size:g}" if cfg.trainer.scale_lr else ""
    print(f"genlab: global batch {global_batch} = {cfg.data.batch_size} per device x {trainer.world_size}{scaling}")
    wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
    if wandb is not None:
        write_record(run.root, wandb_id=wandb.experiment.id, wandb_project=cfg.logger.project,
                     wandb_entity=cfg.logger.entity)  # so that resume=auto and genlab eval continue this W&B run
        if cfg.eval.enabled:
            summarise_best_fid(trainer.loggers, str(cfg.eval.features))


def finish_record(cfg: DictConfig, run: RunDir, trainer: L.Trainer, started: float) -> None:
    """run.json's end fields (status, wall time, final metrics) and the one-line summary."""
    metrics = trainer.callback_metrics
    final: dict[str, Any] = {k: float(v) for k, v in metrics.items() if v.numel() == 1}
    interrupted = next((cb for cb in trainer.callbacks if isinstance(cb, SaveOnSignal) and cb.received), None)
    if interrupted is not None:
        record_end(run.root, started, trainer.global_step, f"stopped by {interrupted.received}", final)
        print(f"genlab: stopped by {interrupted.received} at step {trainer.global_step}; resume with resume=auto "
              f"run_dir={run.root}.")
        return
    on_time = out_of_time(trainer) and trainer.global_step < trainer.max_steps
    status = f"stopped at its time budget (trainer.max_time={cfg.trainer.max_time:g} min)" if on_time else "finished"
    record_end(run.root, started, trainer.global_step, status, final)
    summary = f"genlab: trained {trainer.global_step} steps in {time.time() - started:.0f} s"
    if on_time:
        summary += f", {status}"
    shown = [k for k in SUMMARY_KEYS if k in metrics] + [k for k in metrics if k.startswith("val/fid_")]
    if shown:
        summary += " (" + ", ".join(f"{k} {float(metrics[k]):.4f}" for k in shown) + ")"
    grid = next((cb.final_path for cb in trainer.callbacks if isinstance(cb, SampleGrid) and cb.final_path), None)
    if grid is not None:
        summary += f"; final sample grid {grid}"
    print(summary)
