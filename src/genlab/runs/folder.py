"""The run folder: the only place that names the files a run writes.

    <run>/config.yaml             the resolved config
    <run>/run.json                launch, resumes, wall time, status, final metrics (runs/record.py)
    <run>/checkpoints/last.ckpt   and best-*.ckpt, hpc_ckpt_*.ckpt (SLURM requeue) in the run folder itself
    <run>/logs/metrics.csv        every logged value (Lightning's CSVLogger, version "logs")
    <run>/samples/step_*.png      validation grids, and samples/final.png
    <run>/loss_curve.png
    <run>/ema_snapshots/          model.ema.posthoc: power-EMA snapshots for `genlab ema`
    <run>/tensorboard/            logger=tensorboard
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from genlab.errors import GenlabError

# Set by rank 0 while it trains: the processes that Lightning launches for the other devices inherit it, so that
# every rank writes to the same run folder instead of stamping one of its own.
RUN_DIR_ENV = "GENLAB_RUN_DIR"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def logs_version(self) -> str:
        """CSVLogger's version folder: a folder of its own, since CSVLogger clears files in a non-empty log dir."""
        return "logs"

    @property
    def metrics_csv(self) -> Path:
        return self.root / self.logs_version / "metrics.csv"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def grid(self, step: int) -> Path:
        """The validation grid at `step`."""
        return self.samples / f"step_{step:07d}.png"

    @property
    def final_grid(self) -> Path:
        return self.samples / "final.png"

    @property
    def ema_snapshots(self) -> Path:
        """Power-EMA snapshots of model.ema.posthoc, from which `genlab ema` rebuilds any EMA length."""
        return self.root / "ema_snapshots"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss_curve.png"

    @property
    def tensorboard_version(self) -> str:
        return "tensorboard"

    def hpc_checkpoints(self) -> list[Path]:
        """Lightning's SLURM auto-requeue checkpoints, saved in the run folder on SIGUSR1."""
        return sorted(self.root.glob("hpc_ckpt_*.ckpt"))

    def training_checkpoints(self) -> list[Path]:
        """Every checkpoint of the run that holds its whole training state, from which it can resume: last.ckpt,
        SLURM's hpc_ckpt_N.ckpt, best-*.ckpt and time-step*.ckpt (not genlab ema's posthoc-*.ckpt)."""
        saved = [*sorted(self.checkpoints.glob("best-*.ckpt")), *sorted(self.checkpoints.glob("time-step*.ckpt"))]
        return [p for p in (self.last_ckpt, *self.hpc_checkpoints(), *saved) if p.is_file()]

    def is_run(self) -> bool:
        """A genlab run folder: it holds config.yaml."""
        return self.config.is_file()

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> "RunDir":
        """<run>/checkpoints/last.ckpt (or <run>/hpc_ckpt_N.ckpt) -> the run folder, which must hold config.yaml."""
        parent = Path(checkpoint).resolve().parent
        run = cls(parent if (parent / "config.yaml").is_file() else parent.parent)
        if not run.is_run():
            raise GenlabError(
                f"{checkpoint} is not inside a genlab run folder (no {run.config}); resume needs the run's folder, "
                "e.g. resume=runs/<experiment>/<time>/checkpoints/last.ckpt."
            )
        return run


def run_of(checkpoint: str | Path) -> RunDir | None:
    """The run folder that holds a checkpoint, or None for a checkpoint outside any run folder."""
    try:
        return RunDir.of_checkpoint(Path(checkpoint))
    except GenlabError:
        return None


def default_output(checkpoint: str | Path, folder: str, name: str, fallback: str) -> str:
    """Where a command writes by default: <run>/<folder>/<name> for a checkpoint inside a run folder (results stay
    with the run), else `fallback` in the working directory."""
    run = run_of(checkpoint)
    return str(run.root / folder / name) if run is not None else fallback


def make_run_dir(run_dir: str | None, runs_root: str, experiment: str) -> RunDir:
    """runs/<experiment>/<time>/, or the folder named by run_dir=PATH (or by rank 0, in a launched DDP process)."""
    if run_dir or os.environ.get(RUN_DIR_ENV):
        path = Path(run_dir or os.environ[RUN_DIR_ENV])
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(runs_root) / experiment / stamp
        suffix = 1
        while path.exists():  # two runs started in the same second
            path = path.with_name(f"{stamp}-{suffix}")
            suffix += 1
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenlabError(f"cannot create the run folder {path}: {exc.strerror}. Choose another with run_dir=PATH.")
    return RunDir(path)
