"""Detect a NaN or inf in the gradients at the step it happens: skip that update, or stop the run."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from genlab.config.schema import NonFinitePolicy
from genlab.errors import GenlabError


def nonfinite_message(trainer: L.Trainer, what: str) -> str:
    """Names the step and the loss terms logged at it."""
    terms = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and v.numel() == 1}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(terms.items()) if k != "train/lr")
    return f"non-finite {what} at step {trainer.global_step}" + (f" (logged terms: {shown})" if shown else "")


class NonFiniteGuard(L.Callback):
    """Checks the gradients before every optimizer step (automatic and manual optimisation alike).

    policy "skip": drop those gradients, so the optimizer leaves the weights as they are; the count is logged as
    train/skipped_steps. A run that skips more than `max_share` of the steps in any `window` steps (or of all its
    steps, checked at the end of a shorter run) is a dead model, not a run with a few bad batches: it stops with an
    error. policy "stop": raise an error naming the step and the loss terms; the run stops and its last good
    checkpoint stays as it is.
    """

    def __init__(self, policy: str = "stop", window: int = 100, max_share: float = 0.5) -> None:
        if policy not in tuple(NonFinitePolicy):
            raise ValueError(f"policy must be one of {[str(p) for p in NonFinitePolicy]}, got {policy!r}")
        self.policy = str(policy)
        self.window, self.max_share = int(window), float(max_share)
        self.skipped = 0
        self._last_warning = -math.inf
        self._recent: deque[bool] = deque(maxlen=self.window)  # per training batch: was an update skipped
        self._skipped_now = False
        self._batches = 0
        self._skipped_batches = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._recent.append(self._skipped_now)
        self._batches += 1
        self._skipped_batches += int(self._skipped_now)
        self._skipped_now = False
        if len(self._recent) == self.window and sum(self._recent) > self.max_share * self.window:
            self._too_many(trainer, sum(self._recent), self.window, f"the last {self.window}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._batches and self._skipped_batches > self.max_share * self._batches:
            self._too_many(trainer, self._skipped_batches, self._batches, "all")

    def _too_many(self, trainer: L.Trainer, skipped: int, of: int, which: str) -> None:
        raise GenlabError(
            f"trainer.on_nonfinite=skip skipped {skipped} of {which} {of} steps (more than trainer."
            f"nonfinite_max_share={self.max_share:g}) at step {trainer.global_step}: the model has diverged. The run "
            "stopped; its checkpoints are those of its last good steps. Lower the learning rate or raise "
            "trainer.gradient_clip_val, then resume=auto, or start again."
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.nonfinite_guard = self  # a module with manual optimisation reports non-finite losses here

    def nonfinite_loss(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str, value: float) -> None:
        """A module found a non-finite loss before its backward pass: stop, or count the skipped update and warn
        (at most once per 100 steps)."""
        message = f"non-finite {what} ({value}) at step {trainer.global_step}"
        if self.policy == "stop":
            raise GenlabError(f"{message}. The run stopped; its last checkpoint is unchanged. Lower the learning "
                              "rate (gan.*_optim.lr), or set trainer.on_nonfinite=skip to skip such steps.")
        self.skipped += 1
        self._skipped_now = True
        if trainer.global_step - self._last_warning >= 100:
            self._last_warning = trainer.global_step
            rank_zero_warn(f"genlab: {message}; its update was skipped.")
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One fused norm and one host sync per step: the norm is NaN or inf exactly when some entry is.
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        if self.policy == "stop":
            raise GenlabError(
                nonfinite_message(trainer, "gradients")
                + ". The run stopped; its last checkpoint is unchanged. Lower the learning rate, raise "
                "trainer.gradient_clip_val, or set trainer.on_nonfinite=skip to skip such steps."
            )
        optimizer.zero_grad(set_to_none=True)  # Adam and AdamW leave parameters without a gradient untouched
        self.skipped += 1
        self._skipped_now = True
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
