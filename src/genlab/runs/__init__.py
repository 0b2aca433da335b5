"""Run folders and what lives in them: the layout (RunDir), checkpoints, resume, run.json and provenance."""

from genlab.runs.folder import RUN_DIR_ENV, RunDir, make_run_dir

__all__ = ["RUN_DIR_ENV", "RunDir", "make_run_dir"]
