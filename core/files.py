"""Atomic file writes shared by the run store, the datasets and the caches."""

from __future__ import annotations

import json
import os
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
