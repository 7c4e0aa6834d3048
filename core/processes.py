"""Is a process still alive? Shared by the job system and the datasets' background imports."""

from __future__ import annotations

import os
from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks from ``/proc`` (guards against pid reuse), or None."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Tells whether a process exists on this host and is not a zombie.

    Args:
        pid: the process id; anything that is not a positive integer counts as dead (``os.kill``
            with pid 0 or below would signal a whole process group).
        start_ticks: the recorded start time; when given and different, the pid was reused.
    """
    if isinstance(pid, bool):
        return False
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): os.kill said it exists
    state = text[text.rfind(")") + 2:].split()[0]
    if state in ("Z", "X"):
        return False
    if start_ticks is not None:
        current = process_start_ticks(pid)
        if current is not None and current != int(start_ticks):
            return False
    return True
