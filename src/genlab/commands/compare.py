"""`genlab compare runs/*`: one table of runs for people without W&B, and for quick terminal checks."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from genlab.commands.args import CompareArgs, parse_command_args
from genlab.commands.compare_plot import plot_runs
from genlab.errors import GenlabError
from genlab.outputs import check_file_out, first_line_of, free_name
from genlab.runs import RunDir
from genlab.runs.record import read_record

COLUMNS = ("run", "experiment", "overrides", "steps", "wall", "final loss", "best FID", "checkpoint")


def compare_table_mark(path: Path) -> str | None:
    """"genlab compare" when `path` is a table that genlab compare wrote (its header), else None."""
    line = first_line_of(path)
    return "genlab compare" if line is not None and line.startswith("| " + " | ".join(COLUMNS) + " |") else None


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    path = RunDir(run_dir).metrics_csv
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _last(rows: list[dict[str, str]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return values[-1] if values else None


def _best_fids(rows: list[dict[str, str]]) -> dict[str, float]:
    """The lowest value of every logged FID column, by extractor: val/fid_domain -> domain."""
    best: dict[str, float] = {}
    for key in (rows[0].keys() if rows else []):
        if key.startswith("val/fid"):
            values = [float(r[key]) for r in rows if r.get(key) not in (None, "") and math.isfinite(float(r[key]))]
            if values:
                best[key.removeprefix("val/fid").lstrip("_") or "fid"] = min(values)
    return best


def summarise(run_dir: Path, rows: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One table row for a run folder (it must hold config.yaml); `rows`: its metrics.csv, if already read."""
    record = read_record(run_dir)
    rows = _metrics(run_dir) if rows is None else rows
    loss_key = next((k for k in ("train/loss", "train/d_loss") if rows and k in rows[0]), None)
    steps = record.get("steps")
    if steps is None:
        steps_seen = [int(r["step"]) + 1 for r in rows if r.get("step") not in (None, "")]
        steps = max(steps_seen) if steps_seen else 0
    ckpt = RunDir(run_dir).last_ckpt
    overrides = record.get("overrides") or {}
    return {
        "run": str(run_dir),
        "experiment": record.get("experiment", run_dir.parent.name),
        "overrides": " ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("experiment", "run_dir")),
        "steps": steps,
        "wall": record.get("wall_seconds"),
        "final loss": (loss_key, _last(rows, loss_key)) if loss_key else None,
        "best FID": _best_fids(rows),
        "checkpoint": str(ckpt) if ckpt.is_file() else "",
    }


def _cell(column: str, value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "-"
    if column == "wall":
        return f"{float(value) / 60:.1f} min"
    if column == "final loss":
        key, number = value
        return "-" if number is None else f"{number:.4g} ({key.removeprefix('train/')})"
    if column == "best FID":
        return ", ".join(f"{name} {number:.2f}" for name, number in sorted(value.items()))
    return str(value)


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in summaries:
        lines.append("| " + " | ".join(_cell(c, s[c]).replace("|", "\\|") for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def compare_command(args: list[str]) -> None:
    """Run `genlab compare RUN_DIR ... [out=compare.md]`: print the table, save it and the curves beside it."""
    folders = [a for a in args if "=" not in a]
    a = parse_command_args(CompareArgs, [x for x in args if "=" in x], "compare", {})
    runs = [Path(f) for f in folders]
    missing = [str(r) for r in runs if not RunDir(r).is_run()]
    if not runs:
        raise GenlabError("give run folders to compare, e.g. genlab compare runs/*/* (each holds config.yaml).")
    if missing:
        raise GenlabError(f"not genlab run folders (no config.yaml): {', '.join(missing[:5])}.")
    logs = [_metrics(r) for r in runs]  # each metrics.csv read once, for the table and the curves
    summaries = [summarise(r, rows) for r, rows in zip(runs, logs)]
    out = Path(a.out)
    table_path, plot_path = out.with_suffix(".md"), out.with_suffix(".png")  # out=compare.md or out=compare.png
    hint = f"Choose another out=, e.g. out={free_name(table_path, lambda p: p.exists() or p.with_suffix('.png').exists())}."
    check_file_out(table_path, hint, mark=compare_table_mark)
    check_file_out(plot_path, hint)
    table = markdown_table(summaries)
    print(table, end="")
    table_path.write_text(table)
    labels = [f"{s['experiment']} ({Path(s['run']).name}) {s['overrides']}".strip() for s in summaries]
    drawn = plot_runs(list(zip(labels, logs)), plot_path)
    print(f"genlab: saved the table to {table_path}" + (f" and the curves ({', '.join(drawn)}) to {plot_path}"
                                                        if drawn else ""))
