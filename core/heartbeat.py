"""The worker's heartbeat: a thread stamping ``status.json`` so watchers can tell it is alive.

Shared by the job queue (``core.jobs``, which judges heartbeats) and the trainer (which beats
while a run trains in the foreground); it depends only on ``core.runs`` and
``core.environment``.
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path

from core import environment, runs

HEARTBEAT_SECONDS_ENV = "TLLAB_HEARTBEAT_SECONDS"
HEARTBEAT_TIMEOUT_ENV = "TLLAB_HEARTBEAT_TIMEOUT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 5.0
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 30.0
ACTIVE_STATES = (runs.QUEUED, runs.RUNNING)


def heartbeat_seconds() -> float:
    """Seconds between heartbeats (``TLLAB_HEARTBEAT_SECONDS``, default 5)."""
    return environment.positive_float_env(HEARTBEAT_SECONDS_ENV, DEFAULT_HEARTBEAT_SECONDS, "seconds")


def heartbeat_timeout_seconds() -> float:
    """Heartbeat age after which a worker counts as dead (``TLLAB_HEARTBEAT_TIMEOUT_SECONDS``, 30)."""
    return environment.positive_float_env(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT_SECONDS, "seconds")


def heartbeat_now() -> str:
    """The current UTC time with milliseconds, as written to ``status.json["heartbeat"]``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class Heartbeat:
    """A daemon thread writing ``status.json["heartbeat"]`` every ``interval`` seconds.

    It only writes files (through ``core.runs.update_status``), never touches Streamlit.

    Args:
        run_dir: the run folder.
        interval: seconds between beats; default ``heartbeat_seconds()``.
    """

    def __init__(self, run_dir, interval: float | None = None):
        self.run_dir = Path(run_dir)
        self.interval = float(interval or heartbeat_seconds())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_dir.name}",
                                        daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        """Writes one heartbeat now (only while the run is QUEUED or RUNNING)."""
        try:
            runs.update_status(self.run_dir, only_if_state=ACTIVE_STATES, heartbeat=heartbeat_now())
        except OSError:
            pass  # a full or vanished disk must not kill training; the watcher will notice

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
