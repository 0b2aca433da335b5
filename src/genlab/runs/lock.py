"""A run folder belongs to one run: a lock file held for the run's lifetime keeps a second process out.

The lock is `<run>/.lock`, created atomically (O_EXCL) and holding the owner's host, pid and SLURM job id. It is
released when the run ends in any way Python sees (normal end, error, signal handled by genlab). A lock left by a
process that was killed outright is stale, and taken over, when its owner is gone: the same host and no process with
that pid, or the same SLURM job id (a requeued job: SLURM ends the old allocation before it starts the new one).
DDP ranks belong to the run of rank 0, which holds the lock for them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Any, Iterator

from genlab.errors import GenlabError
from genlab.runs.folder import RUN_DIR_ENV, RunDir
from genlab.runs.record import read_record


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def owner_gone(owner: dict[str, Any]) -> bool:
    """The process that wrote the lock cannot be running any more."""
    me = _me()
    if owner.get("slurm_job_id") and owner.get("slurm_job_id") == me["slurm_job_id"]:
        return True  # this job's earlier run, before SLURM requeued it
    return owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1)))


# How long an empty lock file counts as being written: its owner fills it microseconds after creating it.
WRITE_GRACE_S = 2.0


class RunLock:
    """Held while a run writes its folder; `release` (or leaving the `with` block) gives it up."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.root / ".lock"
        self.held = False

    def acquire(self) -> "RunLock":
        for _ in range(3):  # a stale lock is removed, then taken: a race with another taker ends here
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner_once_written()
                if owner is not None and not owner_gone(owner):
                    raise GenlabError(
                        f"run folder {self.path.parent} is in use by another genlab process (pid {owner.get('pid')} "
                        f"on {owner.get('host')}, since {owner.get('since')}). Wait for it to end, or choose another "
                        f"folder with run_dir=PATH. If that process is gone, delete {self.path}."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale, or unreadable (a writer killed mid-write)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_me(), f)
            self.held = True
            return self
        raise GenlabError(f"cannot take the lock {self.path}: other processes keep taking it. Choose another run_dir.")

    def owner_once_written(self) -> dict[str, Any] | None:
        """The owner, read after its writer had time to fill the file: a lock is created empty and written a moment
        later, so an empty lock younger than WRITE_GRACE_S is another process's, in that moment. Older, it is a
        writer killed mid-write (None)."""
        give_up = time.monotonic() + WRITE_GRACE_S  # also bounds the wait when another host's clock runs ahead
        while True:
            owner = self.owner()
            if owner is not None or self.age() > WRITE_GRACE_S or time.monotonic() > give_up:
                return owner
            time.sleep(0.05)

    def age(self) -> float:
        """Seconds since the lock file was last written; infinite when it is gone."""
        try:
            return time.time() - os.stat(self.path).st_mtime
        except OSError:
            return float("inf")

    def owner(self) -> dict[str, Any] | None:
        """Who holds the lock; None when the file is gone or unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            owner = self.owner()
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def launched_rank() -> bool:
    """This process is a DDP rank other than the first: the run, its folder and its lock are rank 0's."""
    if os.environ.get(RUN_DIR_ENV):  # started by rank 0's Lightning launcher
        return True
    from_env = [os.environ.get(k) for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")]
    return any(v not in (None, "", "0") for v in from_env)


@contextmanager
def own_run(run: RunDir, resume: str | None) -> Iterator[None]:
    """Rank 0 holds the run folder while it trains: its lock first, then the refusal of a fresh run in a folder that
    holds another (in that order, so that a folder another process is writing is named as such, not as a finished
    run). The other DDP ranks belong to rank 0's run and take nothing."""
    if launched_rank():
        yield
        return
    with RunLock(run):
        refuse_existing_run(run, resume)
        yield


def refuse_existing_run(run: RunDir, resume: str | None) -> None:
    """A fresh run never writes into a folder that holds another run: name it, and say how to continue it."""
    if resume or not run.is_run():
        return
    record = read_record(run.root)
    known = [str(record["experiment"])] if "experiment" in record else []
    known += [f"{name} {record[key]}" for key, name in (("steps", "step"), ("status", "status")) if key in record]
    what = ", ".join(known) if known else "a config.yaml without run.json: it stopped before training began"
    raise GenlabError(
        f"run folder {run.root} already holds a run ({what}); a new run would overwrite its checkpoints, config and "
        "logs. "
        f"Continue it with resume=auto run_dir={run.root}, or choose another folder with run_dir=PATH."
    )
