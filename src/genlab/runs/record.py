"""run.json in every run folder: how the run was launched and how it ended, for `genlab compare`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from genlab.runs.folder import RunDir

def read_record(run_dir: Path) -> dict[str, Any]:
    path = RunDir(Path(run_dir)).record
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def write_record(run_dir: Path, **fields: Any) -> None:
    """Merge `fields` into run.json (atomically: write beside it, then rename)."""
    record = read_record(run_dir)
    record.update(fields)
    path = RunDir(Path(run_dir)).record
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)


def record_start(run_dir: Path, experiment: str, overrides: dict[str, str], resumed_from: str | None) -> None:
    """Note the launch; on resume keep the first launch's overrides and add this one to `resumes`."""
    record = read_record(run_dir)
    if resumed_from is None or not record:
        write_record(run_dir, experiment=experiment, overrides=overrides, started=time.strftime("%Y-%m-%d %H:%M:%S"),
                     wall_seconds=0.0, resumes=[])
    else:
        write_record(run_dir, resumes=[*record.get("resumes", []), {"from": resumed_from, "overrides": overrides}])


def record_end(run_dir: Path, started: float, steps: int, status: str, metrics: dict[str, float]) -> None:
    """Add this process's wall time to the run's and store the final step, status and metrics."""
    previous = float(read_record(run_dir).get("wall_seconds", 0.0))
    write_record(run_dir, wall_seconds=round(previous + time.time() - started, 1), steps=steps, status=status,
                 final_metrics=metrics)
