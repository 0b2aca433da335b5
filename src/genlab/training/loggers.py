"""Build the experiment loggers: CSV always, plus W&B or TensorBoard when chosen."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig

from genlab.errors import GenlabError
from genlab.models.lightning_compat import wandb_run_started
from genlab.runs import RunDir


def wandb_has_credentials() -> bool:
    """True when wandb can log in without a prompt: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_must_go_offline() -> bool:
    """True (and says so) when nothing sets WANDB_MODE and there are no credentials: wandb would prompt on a TTY
    and hang, so the run goes offline instead (`wandb sync` later)."""
    if "WANDB_MODE" in os.environ or wandb_has_credentials():
        return False
    print("genlab: no W&B credentials found, logging offline; upload later with `wandb sync`.")
    return True


def build_loggers(cfg: DictConfig, run_dir: Path, wandb_id: str | None = None) -> list[Logger]:
    """CSV into the run folder (always), and the logger named by `logger.name`; `wandb_id` continues a W&B run."""
    run = RunDir(run_dir)
    loggers: list[Logger] = [CSVLogger(save_dir=str(run.root), name="", version=run.logs_version)]
    kind = cfg.logger.name
    if kind == "wandb":
        loggers.append(_wandb_logger(cfg, run_dir, wandb_id))
    elif kind == "tensorboard":
        try:
            loggers.append(TensorBoardLogger(save_dir=str(run.root), name="", version=run.tensorboard_version))
        except ModuleNotFoundError:
            raise GenlabError("logger=tensorboard needs the tensorboard package: pip install tensorboard.") from None
    return loggers


def _wandb_logger(cfg: DictConfig, run_dir: Path, wandb_id: str | None) -> Logger:
    kwargs: dict[str, Any] = {}
    if wandb_must_go_offline():
        kwargs["offline"] = True
    if wandb_id:
        # A resumed genlab run continues its W&B run: same id, wandb's resume="allow".
        kwargs.update(id=wandb_id, resume="allow")
    log = cfg.logger
    return WandbLogger(
        project=log.project,
        entity=log.entity,
        group=log.group,
        tags=list(log.tags),
        name=log.run_name or cfg.experiment,
        save_dir=str(run_dir),
        log_model="all" if log.log_checkpoints else False,
        **kwargs,
    )


def finish_wandb(loggers: list[Logger]) -> None:
    """End the W&B run of this process: wandb.finish() waits until everything logged is written (offline: the
    run file is complete when genlab exits) or uploaded. Lightning leaves the run open."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and wandb_run_started(logger):
            logger.experiment.finish()
