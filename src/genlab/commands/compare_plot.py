"""The curves of `genlab compare`: train and val loss and FID against steps, one line per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from genlab.images import FIGURE_MARK  # noqa: E402
from genlab.training.callbacks.loss_curve import smooth  # noqa: E402  (one moving average for both plots)

# Panels: (title, the logged keys it may show: the first a run has is drawn), y scale.
PANELS = (
    ("train loss", ("train/loss", "train/d_loss"), "log"),
    ("val loss", ("val/loss",), "log"),
    ("FID", ("val/fid_inception", "val/fid_domain"), "log"),
)


def _series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]) + 1, float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("step")]
    return [s for s, _ in points], [v for _, v in points]


def plot_runs(runs: list[tuple[str, list[dict[str, str]]]], path: Path) -> list[str]:
    """Draw each panel that some run logged; return the panel titles drawn."""
    panels = [(t, keys, y) for t, keys, y in PANELS if any(k in (rows[0] if rows else {}) for _, rows in runs
                                                           for k in keys)]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4 + 0.25 * len(runs)), squeeze=False)
    for ax, (title, keys, yscale) in zip(axes[0], panels):
        for label, rows in runs:
            key = next((k for k in keys if rows and k in rows[0]), None)
            if key is None:
                continue
            steps, values = _series(rows, key)
            if not steps:
                continue
            shown: Any = smooth(values, 10) if key.startswith("train/") else values
            short = label if len(label) <= 90 else label[:87] + "..."
            ax.plot(steps, shown, marker=None if key.startswith("train/") else "o", markersize=3, label=short)
        ax.set(title=title, xlabel="step", yscale=yscale)
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=1, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07 * len(runs) / (1 + 0.06 * len(runs)), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata=FIGURE_MARK)
    plt.close(fig)
    return [t for t, _, _ in panels]
