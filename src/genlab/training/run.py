"""`genlab train`: build everything from the config, fit, and leave a complete run folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from genlab.build import build_datamodule, is_conditional, resolve_data_keys
from genlab.config import kind_facts, save_config, to_container
from genlab.data.base import ImageDataModule
from genlab.errors import GenlabError, first_line
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import ExtractorSpec, extractor_spec
from genlab.models import ClassifierModule, DiffusionModule, build_module
from genlab.runs import RUN_DIR_ENV, make_run_dir
from genlab.runs.checkpoint import load_module, load_scorer, remove_stale_temporaries
from genlab.runs.guide import TIME_STEP, guide_source
from genlab.runs.lock import own_run
from genlab.runs.record import RunRecord
from genlab.runs.resume import resume_point
from genlab.training.loggers import finish_wandb
from genlab.training.trainer import build_trainer, lost_peer


@dataclass
class Prepared:
    """What a run is built from, made and checked before its run folder exists."""

    datamodule: ImageDataModule
    model: L.LightningModule
    scorer: ClassifierModule | None  # the class-accuracy callback's classifier
    fid_spec: ExtractorSpec | None  # the FID callback's feature extractor


def train(cfg: DictConfig, overrides: dict[str, str] | None = None) -> Path:
    """Train the configured model; return the run folder. `overrides` (the command line) go to run.json."""
    ready = prepare(cfg)  # everything that can fail on bad input, before a run folder exists
    resumed = resume_point(cfg)
    record = RunRecord(make_run_dir(cfg.run_dir, cfg.runs_root, cfg.experiment), cfg.experiment, overrides or {},
                       resumed)
    with own_run(record.run, cfg.resume):
        return fit(cfg, record, ready)


def fit(cfg: DictConfig, record: RunRecord, ready: Prepared) -> Path:
    """Write the config and fit; the trainer's KeepRunRecord callback starts and ends the run's record."""
    run = record.run
    remove_stale_temporaries(run.checkpoints)  # left by a process killed while saving
    save_config(cfg, run.config)
    trainer = build_trainer(cfg, record, scorer=ready.scorer, fid_spec=ready.fid_spec)
    os.environ[RUN_DIR_ENV] = str(run.root.resolve())
    try:
        trainer.fit(ready.model, datamodule=ready.datamodule, ckpt_path=record.resume_checkpoint)
    except SIGTERMException:
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
        if trainer.is_global_zero:
            finish_wandb(trainer.loggers)  # Lightning leaves the W&B run open
    return run.root


def prepare(cfg: DictConfig) -> Prepared:
    """The DataModule, the model, and the files its callbacks read; fails on a missing dataset, a bad network config
    or a missing classifier or weights file, before anything is written."""
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
    guide = cfg.sampler.get("guide") if "sampler" in cfg else None
    if guide is not None and isinstance(model, DiffusionModule):  # the grids' and FID's autoguidance
        if str(guide).startswith(TIME_STEP):
            raise GenlabError(f"sampler.guide={guide}: a run's time-step checkpoints exist only once it has trained; "
                              "guide its grids with a checkpoint path, or use time-step guides with genlab sample, "
                              "eval or table afterwards.")
        model.guide_source = guide_source(None, None, lambda path: load_module(path, ema=True))
        model.guide_for(str(guide))  # a missing or mismatched guide fails now, not at the first validation
    fid_spec = None
    if cfg.eval.enabled:  # missing weights or classifier fail now, not after the first validation
        fid_spec = extractor_spec(cfg.eval)
        if fid_spec.features == "domain":
            check_domain_classifier(fid_spec.weights_path, cfg.data, "eval.domain_classifier")
    scorer = None
    if cfg.callbacks.class_accuracy.classifier:
        scorer = load_scorer(cfg.callbacks.class_accuracy.classifier, cfg.data.num_classes, is_conditional(cfg))
    return Prepared(datamodule, model, scorer, fid_spec)
