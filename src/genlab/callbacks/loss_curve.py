"""Render the training and validation loss curves to a PNG in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402



class LossCurve(L.Callback):
    """Keeps the logged `train/*` and `val/loss` values and redraws `loss_curve.png` at each validation."""

    def __init__(self, path: Path, every_n_steps: int = 50) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.history: dict[str, list[tuple[int, float]]] = {}

    def _record(self, trainer: L.Trainer, prefix: str) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix) and value.numel() == 1 and key != "train/lr":
                self.history.setdefault(key, []).append((trainer.global_step, float(value)))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer, "train/")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._record(trainer, "val/")
        self.draw(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer)

    def draw(self, trainer: L.Trainer) -> None:
        """Write the PNG (rank 0 only): total loss on the left, loss per timestep quarter on the right."""
        if not trainer.is_global_zero or not self.history:
            return
        fig, (ax_total, ax_quarters) = plt.subplots(1, 2, figsize=(11, 4))
        for key in ("train/loss", "val/loss"):
            if key in self.history:
                steps, values = zip(*self.history[key])
                ax_total.plot(steps, values, marker="o" if key.startswith("val") else None, ms=3, label=key)
        for key in sorted(k for k in self.history if "loss_q" in k and k.startswith("train/")):
            steps, values = zip(*self.history[key])
            ax_quarters.plot(steps, values, label=key.replace("train/loss_", "t in quarter "))
        for ax, title in ((ax_total, "epsilon-MSE loss"), (ax_quarters, "train loss per quarter of [0, T)")):
            ax.set(xlabel="step", title=title, yscale="log")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend()
        fig.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path, dpi=100)
        plt.close(fig)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [tuple(p) for p in v] for k, v in state_dict["history"].items()}
