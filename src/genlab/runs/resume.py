"""`resume=auto|PATH`: find the checkpoint to continue from, check it fits the config, keep the run's logs."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genlab.config import from_container, to_container
from genlab.errors import GenlabError, first_line
from genlab.runs.checkpoint import checkpoint_kind, read_checkpoint
from genlab.runs.folder import RunDir

# Keys that may differ between the first run and its resumption: they change how long or how visibly the run
# goes on, not what it computes.
# Speed levers (perf.*, DataLoader flags) change how fast, not what, a run computes: they may change on resume,
# and runs saved before these keys existed resume too.
# The sampler blocks only choose how grids and FID samples are drawn, never what training computes.
MAY_CHANGE = ("resume", "run_dir", "runs_root", "trainer.max_steps", "trainer.max_time", "trainer.enable_progress_bar",
              "logger.",
              "perf.", "data.pin_memory", "data.persistent_workers", "sampler.", "eval.sampler", "eval.steps",
              "callbacks.checkpoint.every_n_minutes")


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: its checkpoint, that checkpoint's step, and the metrics.csv rows (and header)
    logged before it, which the resumed run keeps."""

    checkpoint: Path
    step: int
    header: list[str]
    rows: list[dict[str, str]]


def resume_point(cfg: DictConfig) -> ResumePoint | None:
    """Where `resume` continues, checked against the config; None for a fresh run. Sets cfg.run_dir to the
    checkpoint's run folder."""
    resume_from = find_resume_checkpoint(cfg)
    if resume_from is None:
        return None
    ckpt = read_checkpoint(resume_from)
    kind = checkpoint_kind(ckpt)
    if kind != cfg.model.kind:
        raise GenlabError(f"resume: {resume_from} holds a {kind!r} model, but this config trains a {cfg.model.kind!r}.")
    run = RunDir.of_checkpoint(resume_from)
    # The checkpoint's own config, not config.yaml: a file the user can edit must not decide what may change.
    check_same_run(to_container(cfg), as_schema(ckpt["hyper_parameters"]["config"]), resume_from)
    step = int(ckpt.get("global_step", 0))
    cfg.run_dir = str(run.root)
    return ResumePoint(resume_from, step, *read_metrics_before(run.metrics_csv, step))


def find_resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint named by `resume`: a path, or for `auto` the run folder's last.ckpt (run_dir=PATH, else the
    newest run of the experiment). None when `auto` finds nothing, so a requeued job can start fresh."""
    if not cfg.resume:
        return None
    if cfg.resume != "auto":
        path = Path(cfg.resume)
        if not path.is_file():
            raise GenlabError(f"resume={cfg.resume}: no such checkpoint. Give a .ckpt path, or resume=auto.")
        return path
    # Lightning's SLURM auto-requeue saves hpc_ckpt_N.ckpt in the run folder on SIGUSR1: take whichever is newest.
    if cfg.run_dir:
        folders = [RunDir(Path(cfg.run_dir))]
    else:
        folders = [RunDir(p) for p in sorted((Path(cfg.runs_root) / cfg.experiment).glob("*")) if p.is_dir()]
    existing = [c for run in folders for c in run.training_checkpoints()]
    where = cfg.run_dir or Path(cfg.runs_root) / cfg.experiment
    if not existing:
        print(f"genlab: resume=auto found no last.ckpt under {where}; starting a new run.")
        return None
    return newest_intact(existing, where)


def newest_intact(checkpoints: list[Path], where: str | Path) -> Path:
    """The newest of `checkpoints` that reads whole, naming each newer one skipped (cut short by a full disk or a
    copy); a GenlabError when none does."""
    skipped = []
    for path in sorted(checkpoints, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            read_checkpoint(path, mmap=True)
        except GenlabError as exc:
            skipped.append(path)
            print(f"genlab: resume=auto skips {path}: {first_line(exc).split('. ')[0]}")
            continue
        if skipped:
            print(f"genlab: resume=auto continues from {path}, the newest intact checkpoint")
        return path
    raise GenlabError(f"resume=auto found no intact checkpoint under {where} ({', '.join(map(str, skipped[:4]))} "
                      "cannot be read); resume=PATH from a copy, or start a new run in another folder.")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def check_same_run(cfg: dict[str, Any], saved: dict[str, Any], path: Path) -> None:
    """Refuse to resume with settings that would change the computation (model, data, seed, optimiser...)."""
    now, before = _flatten(cfg), _flatten(saved)
    changed = sorted(
        k for k in set(now) | set(before)
        if now.get(k) != before.get(k) and not any(k == m or (m.endswith(".") and k.startswith(m)) for m in MAY_CHANGE)
    )
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:8])
        raise GenlabError(
            f"cannot resume from {path}: this command's config differs from the run's in {shown}. "
            "Resume with the run's settings (only trainer.max_steps and logging may change), or start a new run."
        )


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder (with config.yaml) that holds a checkpoint."""
    return RunDir.of_checkpoint(checkpoint).root


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as a plain dict in today's schema (see as_schema)."""
    return as_schema(OmegaConf.to_container(OmegaConf.load(RunDir(run_dir).config)))  # type: ignore[arg-type]


def as_schema(config: dict[str, Any]) -> dict[str, Any]:
    """A config saved by any genlab version as today's plain dict: renamed keys migrated, and keys added since then
    at their defaults (a setting that did not exist yet behaved as its default does)."""
    return to_container(from_container(config))


def read_metrics_before(metrics_csv: Path, step: int) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a metrics.csv logged before `step`: what a resumed run keeps of its old log."""
    if not metrics_csv.is_file():
        return [], []
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if row.get("step") not in (None, "") and int(row["step"]) < step]
        return list(reader.fieldnames or []), rows


def restore_csv_log(csv_logger: Any, header: list[str], rows: list[dict[str, str]]) -> None:
    """Put the kept rows back: Lightning's CSV writer deletes an existing metrics.csv when it starts."""
    if not header:
        return
    writer = csv_logger.experiment  # creating the writer is what deletes the old file
    with open(writer.metrics_file_path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = list(header)
