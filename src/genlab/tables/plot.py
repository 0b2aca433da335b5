"""The plot of a sweep (PNG): lines over the column values, metrics against a swept setting, or bars per row.

plot.kind in the spec:
  lines  one line per row against the column values (DDIM: FID against S, a line per eta); `log_x`, `y: [METRIC]`,
         `log_y: true` or a list of the metrics to draw on a log scale
  sweep  each metric of `y: [...]` against the setting `x` that the rows sweep, and with `tradeoff: [MX, MY]` a
         panel of MY against MX, points labelled by row (CFG: FID against accuracy, one point per w)
  bars   a bar per row for each metric of `y` (a model comparison)
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogFormatter, NullLocator, ScalarFormatter  # noqa: E402

from genlab.images import FIGURE_MARK  # noqa: E402
from genlab.tables.spec import METRICS, TableSpec  # noqa: E402


def _mean(entry: dict[str, Any] | None, metric: str) -> float:
    if entry is None or metric not in entry["metrics"]:
        return float("nan")
    return entry["metrics"][metric][0]


def _std(entry: dict[str, Any] | None, metric: str) -> float:
    if entry is None or metric not in entry["metrics"] or entry["metrics"][metric][1] is None:
        return 0.0
    return entry["metrics"][metric][1]


def wrapped_title(title: str, width_inches: float) -> str:
    """The title in lines that fit a figure of that width at 10 pt (about 12 characters an inch): a one-panel
    figure is narrower than a long title, which matplotlib would cut at both edges."""
    return textwrap.fill(title, width=max(30, int(width_inches * 12)))


def plot_table(spec: TableSpec, entries: list[dict[str, Any]], path: Path) -> None:
    """Draw the spec's plot of these aggregated entries to `path`."""
    by_cell = {(e["row"], e["column"]): e for e in entries}
    p = spec.plot
    kind = p.get("kind", "lines" if spec.columns is not None else "bars")
    ys = p.get("y", spec.metrics[:1] if kind == "lines" else spec.metrics)
    ys = [ys] if isinstance(ys, str) else list(ys)
    if kind == "lines":
        fig, axes = plt.subplots(1, len(ys), figsize=(5.5 * len(ys), 4), squeeze=False)
        heads = [spec.columns.title(v) for v in spec.columns.values]
        for ax, metric in zip(axes[0], ys):
            for row in spec.rows:
                cells = [by_cell.get((row.label, h)) for h in heads]
                # An NFE column is drawn at each cell's actual NFE (heun reaches odd counts only).
                xs = [c["nfe"] if spec.columns.key == "nfe" and c and c.get("nfe") else v
                      for c, v in zip(cells, spec.columns.values)]
                ax.errorbar(xs, [_mean(c, metric) for c in cells],
                            yerr=[_std(c, metric) for c in cells], marker="o", capsize=3, label=row.label)
            ax.set_xlabel(spec.columns.key)
            ax.set_ylabel(METRICS[metric][0])
            if p.get("log_x"):
                ax.set_xscale("log")
            log_y = p.get("log_y", False)
            if log_y is True or (isinstance(log_y, list) and metric in log_y):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                # minor ticks as plain numbers, labelled only when the axis spans under a decade (where it may hold no
                # major tick at all: FID 1.4-3.1); the default would print them as 6x10^0
                ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
            ax.set_xticks(spec.columns.values, [str(v) for v in spec.columns.values])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
    elif kind == "sweep":
        x_key = p["x"]
        tradeoff = p.get("tradeoff")
        panels = len(ys) + (1 if tradeoff else 0)
        fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4), squeeze=False)
        entries_in_order = [by_cell.get((r.label, None)) for r in spec.rows]
        xs = [e["settings"].get(x_key, 0.0) if e else float("nan") for e in entries_in_order]
        for ax, metric in zip(axes[0], ys):
            ax.errorbar(xs, [_mean(e, metric) for e in entries_in_order],
                        yerr=[_std(e, metric) for e in entries_in_order], marker="o", capsize=3)
            ax.set_xlabel(x_key)
            ax.set_ylabel(METRICS[metric][0])
            if p.get("log_x"):
                ax.set_xscale("symlog", linthresh=0.1)
            ax.grid(alpha=0.3)
        if tradeoff:
            mx, my = tradeoff
            ax = axes[0][-1]
            px = [_mean(e, mx) for e in entries_in_order]
            py = [_mean(e, my) for e in entries_in_order]
            ax.plot(px, py, marker="o")
            for label, x, y in zip([r.label for r in spec.rows], px, py):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set_xlabel(METRICS[mx][0])
            ax.set_ylabel(METRICS[my][0])
            ax.set_title("trade-off")
            ax.grid(alpha=0.3)
    elif kind == "tradeoffs":  # one panel per metric pair, one line per group of rows (e.g. a guidance method)
        pairs = p["pairs"]
        fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
        for ax, (mx, my) in zip(axes[0], pairs):
            for name, labels in p["lines"].items():
                cells = [by_cell.get((label, None)) for label in labels]
                ax.plot([_mean(c, mx) for c in cells], [_mean(c, my) for c in cells], marker="o", label=name)
            ax.set_xlabel(METRICS[mx][0])
            ax.set_ylabel(METRICS[my][0])
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
    else:  # bars
        fig, axes = plt.subplots(1, len(ys), figsize=(max(4.0, 1.2 * len(spec.rows)) * len(ys) / 1.5, 4),
                                 squeeze=False)
        labels = [r.label for r in spec.rows]
        for ax, metric in zip(axes[0], ys):
            cells = [by_cell.get((label, None)) for label in labels]
            ax.bar(range(len(labels)), [_mean(c, metric) for c in cells], yerr=[_std(c, metric) for c in cells],
                   capsize=3)
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
            ax.set_ylabel(METRICS[metric][0])
            ax.grid(alpha=0.3, axis="y")
    fig.suptitle(wrapped_title(spec.title, fig.get_figwidth()), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=FIGURE_MARK)
    plt.close(fig)
