"""The run's own record, kept by a callback on rank 0: run.json's launch when the fit sets up, and how it ended
(status, steps, wall time, final metrics) when it returns or raises."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab.runs.record import RunRecord
from genlab.runs.resume import restore_csv_log
from genlab.training.callbacks.final_checkpoint import out_of_time, time_budget_minutes
from genlab.training.callbacks.interrupt import SaveOnSignal
from genlab.training.callbacks.sample_grid import SampleGrid

SUMMARY_KEYS = ("train/loss", "val/loss", "val/acc_t0", "val/class_acc", "train/d_loss", "train/g_loss", "val/diversity")


class KeepRunRecord(L.Callback):
    """Starts and ends `record` (runs/record.py) on rank 0, and prints the lines that say what the run is and how it
    ended. `batch_size`: per device; `lr_reference_batch`: the batch the learning rates are written for when
    trainer.scale_lr is on, else None; `wandb_project`, `wandb_entity`: where a W&B run goes, kept in run.json so that
    resume=auto and genlab eval continue it."""

    def __init__(self, record: RunRecord, batch_size: int, lr_reference_batch: int | None = None,
                 wandb_project: str | None = None, wandb_entity: str | None = None) -> None:
        self.record = record
        self.batch_size = batch_size
        self.lr_reference_batch = lr_reference_batch
        self.wandb_project = wandb_project
        self.wandb_entity = wandb_entity

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The first hook of a fit, so that a run failing in any later one still ends its record.
        if stage != "fit" or not trainer.is_global_zero:  # other ranks' loggers are stand-ins that write nothing
            return
        record, resumed = self.record, self.record.resumed
        if resumed is None:
            print(f"genlab: run folder {record.run.root}")
        else:
            print(f"genlab: resuming {record.run.root} from {resumed.checkpoint} (step {resumed.step})")
        world = trainer.world_size
        global_batch = self.batch_size * world
        scaling = "" if self.lr_reference_batch is None else f", learning rates x {global_batch / self.lr_reference_batch:g}"
        print(f"genlab: global batch {global_batch} = {self.batch_size} per device x {world}{scaling}")
        wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        ids = {}
        if wandb is not None:
            ids = dict(wandb_id=wandb.experiment.id, wandb_project=self.wandb_project, wandb_entity=self.wandb_entity)
        if resumed is not None:
            restore_csv_log(trainer.loggers[0], resumed.header, resumed.rows)
        record.start(global_batch, world, **ids)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero:
            status = "stopped by SIGTERM" if isinstance(exception, SIGTERMException) else "failed"
            self.record.end(trainer.global_step, status, {})

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # After on_fit_end, so the final checkpoint, sample grid and FID are done; only a fit that returned gets here.
        if stage != "fit" or not trainer.is_global_zero or self.record.ended:
            return
        status = how_it_ended(trainer)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.record.end(trainer.global_step, status, final)
        print(summary(trainer, self.record, status))


def how_it_ended(trainer: L.Trainer) -> str:
    """run.json's status of a fit that returned: stopped by a signal (SIGUSR1, or SIGTERM where Lightning's handler
    did not raise), stopped at its time budget, or finished."""
    interrupted = next((cb for cb in trainer.callbacks if isinstance(cb, SaveOnSignal) and cb.received), None)
    if interrupted is not None:
        return f"stopped by {interrupted.received}"
    if out_of_time(trainer) and trainer.global_step < trainer.max_steps:
        return f"stopped at its time budget (trainer.max_time={time_budget_minutes(trainer):g} min)"
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
