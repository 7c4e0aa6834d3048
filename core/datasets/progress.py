"""Progress of a running ``get`` (download or import), shared through a small JSON file.

The process doing the work (the CLI, started in the background by the Datasets page) writes
``<root>/.progress/<name>.json``; the page polls it. Fields: ``state`` (``running``, ``done``,
``failed``), ``pid``, ``phase``, ``done``, ``total``, ``message``, ``started_at``,
``updated_at`` (epoch seconds). A ``running`` file whose process is gone counts as failed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core import paths
from core.datasets import base
from core.processes import pid_alive

WRITE_INTERVAL_SECONDS = 0.25
STARTING_GRACE_SECONDS = 60  # a "running" record without pid (process starting) expires after this


def progress_path(name: str) -> Path:
    """``<root>/.progress/<name>.json``."""
    return paths.data_dir() / base.PROGRESS_FOLDER / f"{base.check_name(name)}.json"



def read(name: str) -> dict | None:
    """The last progress record of ``name`` (``None`` if none); a dead ``running`` becomes
    ``failed`` with an explanation."""
    record = base.read_json(progress_path(name))
    if record is None:
        return None
    if record.get("state") == "running":
        pid = record.get("pid")
        if pid is None:
            dead = time.time() - float(record.get("updated_at", 0)) > STARTING_GRACE_SECONDS
        else:
            dead = not pid_alive(pid)
        if dead:
            record = dict(record, state="failed",
                          message="the download/import process stopped before finishing "
                                  "(killed or crashed); nothing was installed")
    return record


def is_running(name: str) -> bool:
    record = read(name)
    return bool(record and record.get("state") == "running")


def clear(name: str) -> None:
    progress_path(name).unlink(missing_ok=True)


class ProgressWriter:
    """A ``callback(phase, done, total)`` that writes the progress file (throttled) and also
    calls an optional extra callback (e.g. the CLI's progress line)."""

    def __init__(self, name: str, echo=None):
        self.name = name
        self.echo = echo
        self.started_at = time.time()
        self._last_write = 0.0
        self._last_phase = None
        self.record = {"state": "running", "pid": os.getpid(), "phase": "starting", "done": 0,
                       "total": None, "message": "", "started_at": self.started_at,
                       "updated_at": self.started_at}
        self._write()

    def _write(self) -> None:
        self.record["updated_at"] = time.time()
        try:
            base.write_json_atomic(progress_path(self.name), self.record)
        except OSError:
            pass  # progress is informative only
        self._last_write = time.monotonic()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        self.record.update(phase=phase, done=int(done), total=None if total is None else int(total))
        if self.echo is not None:
            self.echo(phase, done, total)
        if phase != self._last_phase or time.monotonic() - self._last_write >= WRITE_INTERVAL_SECONDS:
            self._last_phase = phase
            self._write()

    def finish(self, message: str = "") -> None:
        self.record.update(state="done", message=message)
        self._write()

    def fail(self, message: str) -> None:
        self.record.update(state="failed", message=message)
        self._write()
