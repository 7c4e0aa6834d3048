"""Atomic file writes and a cross-process file lock, shared by the run store, the datasets and
the caches."""

from __future__ import annotations

import contextlib
import json
import os
import time
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON through a temp file in the same folder and ``os.replace``.

    Args:
        path: destination file.
        data: anything ``json.dumps`` accepts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True, default=json_default)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def json_default(value: Any) -> Any:
    """Converts NumPy scalars/arrays and paths for ``json.dump``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


LOCK_TIMEOUT_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.01


@contextlib.contextmanager
def file_lock(lock_path: str | os.PathLike, timeout: float | None = None):
    """Holds an exclusive ``fcntl.flock`` on ``lock_path`` (created if needed) for the block.

    Used for read-modify-write updates of shared JSON files (e.g. the bottleneck cache's
    ``meta.json``) by several processes. The kernel drops the lock when its holder dies.

    Args:
        lock_path: the lock file, normally beside the file it protects (``.meta.json.lock``).
        timeout: seconds to wait for the lock; default ``LOCK_TIMEOUT_SECONDS``.

    Raises:
        TimeoutError: when another holder keeps the lock for ``timeout`` seconds; the block is
            then not run, so nothing is written without the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else float(timeout)
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + float(timeout)
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"could not lock {lock_path} within {float(timeout):g} s (another process "
                        "holds it); nothing was written"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing releases the flock
