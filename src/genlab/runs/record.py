"""run.json in every run folder: how the run was launched and how it ended, for `genlab compare`, resume and W&B.

One training run's run.json is owned by one `RunRecord`, from launch to end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.runs.folder import RunDir
from genlab.runs.resume import ResumePoint


def read_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a run folder as a dict; empty when it is missing or unreadable."""
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


@dataclass
class RunRecord:
    """The run.json of one training run, fresh or resumed at `resumed`: `start` writes the launch, `end` the status,
    steps, wall time and final metrics, once. Only DDP rank 0 starts it; a record never started writes nothing."""

    run: RunDir
    experiment: str
    overrides: dict[str, str]
    resumed: ResumePoint | None = None
    started: float | None = None  # time.time() at `start`
    ended: bool = False

    @property
    def resume_checkpoint(self) -> str | None:
        """The checkpoint that this run continues from (Lightning's ckpt_path); None for a fresh run."""
        return str(self.resumed.checkpoint) if self.resumed else None

    def wandb_id(self) -> str | None:
        """The W&B run that a resumed run continues."""
        return read_record(self.run.root).get("wandb_id") if self.resumed else None

    def start(self, global_batch: int, world_size: int, **wandb: Any) -> None:
        """Note the launch; a resume keeps the first launch's fields and adds itself to `resumes`. `wandb`: the W&B
        run's id, project and entity, so that resume=auto and genlab eval continue it."""
        previous = read_record(self.run.root)
        if self.resumed is None or not previous:
            launch: dict[str, Any] = dict(experiment=self.experiment, overrides=self.overrides,
                                          started=time.strftime("%Y-%m-%d %H:%M:%S"), wall_seconds=0.0, resumes=[])
        else:
            launch = dict(resumes=[*previous.get("resumes", []),
                                   {"from": self.resume_checkpoint, "overrides": self.overrides}])
        write_record(self.run.root, **launch, global_batch=global_batch, world_size=world_size, **wandb)
        self.started = time.time()

    def seconds(self) -> float:
        """This process's wall time since `start`."""
        return time.time() - self.started if self.started is not None else 0.0

    def end(self, steps: int, status: str, metrics: dict[str, float]) -> None:
        """Add this process's wall time to the run's and store the final step, status and metrics; the first call
        decides, later ones change nothing."""
        if self.started is None or self.ended:
            return
        self.ended = True
        previous = float(read_record(self.run.root).get("wall_seconds", 0.0))
        write_record(self.run.root, wall_seconds=round(previous + self.seconds(), 1), steps=steps,
                     status=status, final_metrics=metrics)
