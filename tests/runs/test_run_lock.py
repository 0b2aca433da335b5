"""The run folder's lock at the moment of its creation: a lock file exists before its owner has written who it is."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from genlab.errors import GenlabError
from genlab.runs import RunDir
from genlab.runs import lock as lock_module
from genlab.runs.lock import WRITE_GRACE_S, RunLock


def test_an_empty_lock_being_written_is_waited_for_not_taken_over(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Two trainings started together into one folder both trained: the second read the first's lock in the moment
    # between its creation and its JSON, called it unreadable, and took it over.
    monkeypatch.setattr(lock_module, "WRITE_GRACE_S", 60.0)  # a writer thread starved on a busy machine still fits
    lock = tmp_path / ".lock"
    lock.touch()  # another process has just created it (O_EXCL) and is about to write its owner

    def owner_writes() -> None:
        time.sleep(0.3)
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": "now"}))

    writer = threading.Thread(target=owner_writes)
    writer.start()
    try:
        with pytest.raises(GenlabError, match="is in use by another genlab process"):
            RunLock(RunDir(tmp_path)).acquire()
    finally:
        writer.join()
    assert json.loads(lock.read_text())["pid"] == os.getpid()  # the owner's lock is left in place


def test_an_empty_lock_older_than_the_grace_is_a_killed_writers_and_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    lock.touch()
    old = time.time() - WRITE_GRACE_S - 1
    os.utime(lock, (old, old))
    held = RunLock(RunDir(tmp_path)).acquire()
    assert held.held and json.loads(lock.read_text())["pid"] == os.getpid()
    held.release()
    assert not lock.exists()
