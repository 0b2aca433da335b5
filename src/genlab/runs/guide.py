"""Autoguidance's guide (`guide=` of the sampler settings): a checkpoint path, or `time-step:<minutes>min`, the
state that the main checkpoint's own run kept after that many minutes of training (its time-step*.ckpt, written
every callbacks.checkpoint.every_n_minutes). Guides are loaded once per main model, with the same EMA choice."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from genlab.errors import GenlabError
from genlab.runs.folder import RunDir

TIME_STEP = "time-step:"


def time_step_checkpoints(run: RunDir) -> list[Path]:
    """The run's time-step checkpoints in training order (their names carry the step, zero-padded)."""
    return sorted(run.checkpoints.glob("time-step*.ckpt"))


def resolve_guide(spec: str, main_ckpt: str | Path | None, every_n_minutes: float | None) -> Path:
    """The checkpoint file that `guide=spec` names for the model of `main_ckpt` (None: a model being trained, which
    has no time-step checkpoints to name yet)."""
    spec = str(spec).strip()
    if not spec.startswith(TIME_STEP):
        path = Path(spec).expanduser()
        if not path.is_file():
            what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
            raise GenlabError(f"guide={spec} {what}: give a checkpoint of the same data and objective, or "
                              f"{TIME_STEP}<minutes>min for the run's own state after that many minutes.")
        return path
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:min)?", spec[len(TIME_STEP):].strip())
    if match is None:
        raise GenlabError(f"guide={spec}: write the minutes of training as {TIME_STEP}5min.")
    minutes = float(match.group(1))
    run = RunDir(Path(main_ckpt).resolve().parent.parent) if main_ckpt is not None else None
    saved = time_step_checkpoints(run) if run is not None and run.is_run() else []
    if not saved or not every_n_minutes:
        raise GenlabError(f"guide={spec}: {main_ckpt} has no time-step checkpoints beside it (its run kept none; "
                          "train with callbacks.checkpoint.every_n_minutes=5 to keep them), so pass the guide's path.")
    index = minutes / float(every_n_minutes)
    choices = ", ".join(f"{TIME_STEP}{(i + 1) * every_n_minutes:g}min ({p.name})" for i, p in enumerate(saved))
    if not math.isclose(index, round(index)) or not 1 <= round(index) <= len(saved):
        raise GenlabError(f"guide={spec}: the run of {main_ckpt} kept a checkpoint every {every_n_minutes:g} minutes "
                          f"of training; choose one of {choices}.")
    return saved[round(index) - 1]


def guide_source(main_ckpt: str | Path | None, every_n_minutes: float | None,
                 load: Callable[[Path], Any]) -> Callable[[str], Any]:
    """`spec -> guide module` for the model of `main_ckpt`: each file is loaded once (`load`), whatever the number
    of rows or batches that use it."""
    loaded: dict[Path, Any] = {}

    def source(spec: str) -> Any:
        path = resolve_guide(spec, main_ckpt, every_n_minutes).resolve()
        if main_ckpt is not None and path == Path(main_ckpt).resolve():
            raise GenlabError(f"guide={spec} is the main checkpoint itself: the guide must be a weaker model.")
        if path not in loaded:
            loaded[path] = load(path)
        return loaded[path]

    return source
