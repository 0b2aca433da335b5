"""What Lightning's checkpoints lack for an exact resume: the RNG streams, and logs flushed up to the checkpoint."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in types that torch.load(weights_only=True) reads."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every generator back to a `capture_rng` state."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(L.Callback):
    """Stores the RNG states in every checkpoint and restores them when training resumes from one; flushes the
    loggers at every save, so the logged curve on disk reaches the checkpoint's step.

    With Lightning's restored step, optimizer, EMA and callback states and the DataModule's position in its
    (seed, epoch)-determined order, a resumed run then draws the same batches, timesteps and noise as a run that
    was never interrupted.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab_rng"] = capture_rng()
        for logger in trainer.loggers:
            logger.save()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get("genlab_rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Restored here, not at load time: setting up the loop after loading may still draw random numbers.
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None
        else:
            # A fresh run starts its random stream here, so the first step does not depend on what came before
            # (weight init, or Lightning's DDP setup, which reseeds): one device and W devices draw alike.
            L.seed_everything(self.seed, workers=True, verbose=False)
