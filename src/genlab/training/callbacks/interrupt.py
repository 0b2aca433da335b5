"""Save a checkpoint and stop cleanly on SIGTERM or SIGUSR1 (what SLURM sends before pre-emption)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SaveOnSignal(L.Callback):
    """On SIGTERM or SIGUSR1, finish the current batch, save `last.ckpt` and stop.

    SIGTERM: Lightning's own handler marks the trainer and raises SIGTERMException after the batch; this callback
    saves first, in on_train_batch_end. SIGUSR1: when nothing else handles it (Lightning's SLURM auto-requeue
    installs its own), this callback's handler sets a flag, and the run saves and stops at the end of the batch.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.received: str | None = None
        self.saved_step: int | None = None
        self._installed_sigusr1 = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGUSR1, self._on_signal)
            self._installed_sigusr1 = True
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            self._on_signal(signum, frame)
            if callable(previous):
                previous(signum, frame)  # Lightning's handler: it raises SIGTERMException after the batch

        signal.signal(signal.SIGTERM, on_sigterm)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning restores its own SIGTERM handlers after fit; put SIGUSR1 back too, so that a later run in this
        # process installs its own handler instead of finding this finished run's.
        if self._installed_sigusr1:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            self._installed_sigusr1 = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.received is None or self.saved_step == trainer.global_step:
            return
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step
        trainer.should_stop = True
        print(f"genlab: {self.received} at step {trainer.global_step}: saved {self.path}; resume with resume=auto.")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            trainer.save_checkpoint(self.path)
            self.saved_step = trainer.global_step
