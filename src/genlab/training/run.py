"""`genlab train`: build everything from the config, fit, and leave a complete run folder."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from genlab.build import build_datamodule, is_conditional, resolve_data_keys
from genlab.config import kind_facts, save_config, to_container
from genlab.data.base import ImageDataModule
from genlab.errors import GenlabError, first_line
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import extractor_spec
from genlab.models import ClassifierModule, build_module
from genlab.runs import RUN_DIR_ENV, make_run_dir
from genlab.runs.checkpoint import remove_stale_temporaries
from genlab.runs.lock import own_run
from genlab.runs.record import RunRecord
from genlab.runs.resume import restore_csv_log, resume_point
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
    resumed = resume_point(cfg)
    record = RunRecord(make_run_dir(cfg.run_dir, cfg.runs_root, cfg.experiment), overrides or {}, resumed)
    with own_run(record.run, cfg.resume):
        return fit(cfg, record, datamodule, model, scorer)


def fit(cfg: DictConfig, record: RunRecord, datamodule: ImageDataModule, model: L.LightningModule,
        scorer: ClassifierModule | None) -> Path:
    """Write the config, fit, and end the run's record with how the run ended."""
    run = record.run
    remove_stale_temporaries(run.checkpoints)  # left by a process killed while saving
    save_config(cfg, run.config)
    trainer = build_trainer(cfg, run, scorer, record.wandb_id())
    rank_zero = trainer.is_global_zero
    if rank_zero:  # other ranks' loggers are stand-ins that write nothing
        start_run(cfg, record, trainer)
    raised: str | None = "failed"  # run.json's status if trainer.fit raises; None once it has returned
    os.environ[RUN_DIR_ENV] = str(run.root.resolve())
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=record.resume_checkpoint)
        raised = None
    except SIGTERMException:
        raised = "stopped by SIGTERM"
        print(f"genlab: stopped by SIGTERM at step {trainer.global_step}; {run.last_ckpt} holds it. "
              f"Continue with the same command and resume=auto run_dir={run.root}.")
    except BaseException as exc:
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
            end_run(cfg, record, trainer, raised)
    return run.root


def prepare(cfg: DictConfig) -> tuple[ImageDataModule, L.LightningModule, ClassifierModule | None]:
    """The DataModule, the model and the class-accuracy scorer; fails on a missing dataset, a bad network config or
    a missing classifier or weights file, before anything is written."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.check_available()
    resolve_data_keys(cfg, datamodule)
    needs_labels = cfg.model.conditional or kind_facts(cfg.model.kind).needs_labels
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


def start_run(cfg: DictConfig, record: RunRecord, trainer: L.Trainer) -> None:
    """Rank 0's start of a run: the lines that say what it is, the log kept from before a resume, and run.json's
    launch fields."""
    resumed = record.resumed
    if resumed is None:
        print(f"genlab: run folder {record.run.root}")
    else:
        print(f"genlab: resuming {record.run.root} from {resumed.checkpoint} (step {resumed.step})")
    global_batch = cfg.data.batch_size * trainer.world_size
    scaling = f", learning rates x {global_batch / cfg.trainer.reference_batch_size:g}" if cfg.trainer.scale_lr else ""
    print(f"genlab: global batch {global_batch} = {cfg.data.batch_size} per device x {trainer.world_size}{scaling}")
    wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
    ids = {}
    if wandb is not None:  # so that resume=auto and genlab eval continue this W&B run
        ids = dict(wandb_id=wandb.experiment.id, wandb_project=cfg.logger.project, wandb_entity=cfg.logger.entity)
        if cfg.eval.enabled:
            summarise_best_fid(trainer.loggers, str(cfg.eval.features))
    if resumed is not None:
        restore_csv_log(trainer.loggers[0], resumed.header, resumed.rows)
    record.start(cfg.experiment, global_batch, trainer.world_size, **ids)


def end_run(cfg: DictConfig, record: RunRecord, trainer: L.Trainer, raised: str | None) -> None:
    """Rank 0's end of a run: W&B closed, run.json's end written and, after a fit that returned, the line that says
    how it ended. `raised`: the status of a fit that raised (failed, stopped by SIGTERM); None when it returned."""
    if raised is None:
        status = how_it_ended(cfg, trainer)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        line: str | None = summary(trainer, record, status)
    else:
        status, final, line = raised, {}, None
    finish_wandb(trainer.loggers)
    record.end(trainer.global_step, status, final)
    if line is not None:
        print(line)


def how_it_ended(cfg: DictConfig, trainer: L.Trainer) -> str:
    """run.json's status of a fit that returned: stopped by a signal (SIGUSR1, or SIGTERM where Lightning's handler
    did not raise), stopped at its time budget, or finished."""
    interrupted = next((cb for cb in trainer.callbacks if isinstance(cb, SaveOnSignal) and cb.received), None)
    if interrupted is not None:
        return f"stopped by {interrupted.received}"
    if out_of_time(trainer) and trainer.global_step < trainer.max_steps:
        return f"stopped at its time budget (trainer.max_time={cfg.trainer.max_time:g} min)"
    return "finished"


def summary(trainer: L.Trainer, record: RunRecord, status: str) -> str:
    """The line that ends a fit that returned: how it stopped and how to resume it, or its steps, time, main metrics
    and final sample grid."""
    if status.startswith("stopped by"):
        return f"genlab: {status} at step {trainer.global_step}; resume with resume=auto run_dir={record.run.root}."
    metrics = trainer.callback_metrics
    line = f"genlab: trained {trainer.global_step} steps in {record.seconds():.0f} s"
    if status != "finished":
        line += f", {status}"
    shown = [k for k in SUMMARY_KEYS if k in metrics] + [k for k in metrics if k.startswith("val/fid_")]
    if shown:
        line += " (" + ", ".join(f"{k} {float(metrics[k]):.4f}" for k in shown) + ")"
    grid = next((cb.final_path for cb in trainer.callbacks if isinstance(cb, SampleGrid) and cb.final_path), None)
    if grid is not None:
        line += f"; final sample grid {grid}"
    return line
