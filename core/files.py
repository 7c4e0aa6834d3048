"""Atomic file writes and a cross-process file lock, shared by the run store, the datasets and
the caches."""

from __future__ import annotations

import contextlib
import json
import os
import time
import tempfile
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Writes a file through a temp file in the same folder and ``os.replace``: the one atomic
    writer of the project (JSON, model files, NumPy caches), so readers never see half a file.

    Args:
        path: destination file.
        write: called with the temp file's path (same folder, name ending in ``path``'s
            suffix, so ``np.save`` and ``model.save`` keep it) and writes the content there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                         dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON atomically (see ``write_atomic``), flushed to disk before the rename.

    Args:
        path: destination file.
        data: anything ``json.dumps`` accepts (NumPy values and paths too).
    """
    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True, default=json_default)
            stream.flush()
            os.fsync(stream.fileno())

    write_atomic(path, write)


def read_json(path: Path) -> Any:
    """Reads a JSON file: the one JSON reader, with one error policy.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when it cannot be read or is not valid JSON (the message names the file).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise ValueError(f"{path.name} in {path.parent} is not valid JSON: {error}") from error


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
def file_lock(lock_path: str | os.PathLike, timeout: float | None = None, create: bool = True,
              on_timeout: Callable[[TimeoutError], BaseException] | None = None):
    """Holds an exclusive ``fcntl.flock`` on ``lock_path`` for the block: the project's one lock loop.

    Used for read-modify-write updates of shared JSON files (e.g. the bottleneck cache's
    ``meta.json``) by several processes, for the run folders (``core.runs.run_lock``), the weights
    installs and the job slots. The kernel drops the lock when its holder dies.

    Args:
        lock_path: the lock file, normally beside the file it protects (``.meta.json.lock``).
        timeout: seconds to wait for the lock; default ``LOCK_TIMEOUT_SECONDS``. ``0`` tries once
            without waiting.
        create: True creates the lock file (and its folder) when missing; False locks an existing
            file or folder as it is (a run folder locks itself), creating nothing.
        on_timeout: given the ``TimeoutError``, returns the exception to raise instead (a
            caller's own error class); it is raised by the lock itself, never for an error
            inside the block.

    Raises:
        TimeoutError: (or what ``on_timeout`` returns) when another holder keeps the lock for
            ``timeout`` seconds; the block is then not run, so nothing is written without the lock.
        FileNotFoundError: with ``create=False``, when ``lock_path`` does not exist.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else float(timeout)
    lock_path = Path(lock_path)
    if create:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    else:
        descriptor = os.open(str(lock_path), os.O_RDONLY)  # read-only opens folders too
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    error = TimeoutError(f"could not lock {lock_path} within {timeout:g} s (another "
                                         "process holds it); nothing was written")
                    raise (error if on_timeout is None else on_timeout(error)) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing releases the flock
