"""Render the training curves of a run (losses, and for GANs the adversarial dynamics) to a PNG in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from genlab.images import FIGURE_MARK  # noqa: E402
from genlab.models import MODEL_KINDS  # noqa: E402



def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average, so a curve logged every step stays readable."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class LossCurve(L.Callback):
    """Keeps the logged `train/*` and `val/*` scalars and redraws the kind's panels to a PNG at each validation."""

    def __init__(self, path: Path, every_n_steps: int = 50, kind: str = "ddpm") -> None:
        if kind not in MODEL_KINDS:
            raise ValueError(f"no loss-curve panels for model kind {kind!r}; known: {sorted(MODEL_KINDS)}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.panels = MODEL_KINDS[kind].panels
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
        """Write the PNG (rank 0 only), one panel per entry of the kind's panels (models/registry.py)."""
        if not trainer.is_global_zero or not self.history:
            return
        fig, axes = plt.subplots(1, len(self.panels), figsize=(5.5 * len(self.panels), 4))
        for ax, panel in zip(axes, self.panels):
            for key in sorted(k for k in self.history if panel.matches(k)):
                steps, values = zip(*self.history[key])
                label = key.replace("train/loss_", "t in quarter ")
                if key.startswith("val/"):
                    ax.plot(steps, values, marker="o", ms=3, label=label)
                    continue
                window = max(1, len(values) // 50)
                if window > 1:  # noisy per-step values faint, their moving average on top
                    (line,) = ax.plot(steps, values, alpha=0.25, lw=0.8)
                    ax.plot(steps, smooth(list(values), window), color=line.get_color(), label=label)
                else:
                    ax.plot(steps, values, label=label)
            ax.set(xlabel="step", title=panel.title, yscale=panel.yscale)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path, dpi=100, metadata=FIGURE_MARK)
        plt.close(fig)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [tuple(p) for p in v] for k, v in state_dict["history"].items()}
