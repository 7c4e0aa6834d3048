"""The run folder format: one folder per training run under the runs root.

A run folder holds:

* ``config.json``: every setting, written once when the run is created;
* ``status.json``: state, pid, host, device, heartbeat, times and error text, always replaced
  atomically (temp file + ``os.replace``) so a reader never sees half a file;
* ``metrics.csv``: append-only, one row per epoch with ``METRICS_COLUMNS``;
* ``model.keras``: the best model by validation accuracy;
* ``results.json``: test metrics, per-class accuracy and confusion matrix (when a test split exists);
* ``train.log``: the worker's log;
* ``cancel.request``: present once ``core.jobs.cancel`` was called.

State transitions follow MLflow/Sacred: QUEUED -> RUNNING -> COMPLETED | FAILED | CANCELLED.
Readers never crash on a malformed folder: ``list_runs`` reports it as broken instead.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core import files, paths
from core.files import json_default, write_json_atomic  # write_json_atomic: part of the run store API

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.csv"
MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"
LOG_FILE = "train.log"
CANCEL_FILE = "cancel.request"

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
TERMINAL_STATES = (COMPLETED, FAILED, CANCELLED)

METRICS_COLUMNS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "epoch_seconds",
)

_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_RUN_ID_CHARS = 200


class RunError(ValueError):
    """A run folder is missing, malformed or not a run at all."""


def utc_now() -> str:
    """Returns the current UTC time as an ISO-8601 string with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_time(text: str | None) -> _dt.datetime | None:
    """Parses a time written by ``utc_now``; returns None for empty or malformed text."""
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def read_json(path: Path) -> Any:
    """``core.files.read_json`` for run files: a missing or malformed file raises ``RunError``
    (a ``ValueError``) naming the file."""
    path = Path(path)
    try:
        return files.read_json(path)
    except FileNotFoundError as error:
        raise RunError(f"{path.name} is missing in {path.parent}") from error
    except ValueError as error:
        raise RunError(str(error)) from error


def new_run_id(config: dict) -> str:
    """Makes a sortable, unique, filesystem-safe run id such as ``20261127-101500-lenet5-gtsrb-1a2b``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parts = [stamp, str(config.get("model", "run")), str(config.get("dataset", ""))]
    slug = "-".join(part for part in parts if part)
    return f"{_RUN_ID_UNSAFE.sub('_', slug)}-{secrets.token_hex(2)}"


def create_run(config: dict, runs_root: str | os.PathLike | None = None) -> Path:
    """Creates a run folder with ``config.json`` (written once) and a QUEUED ``status.json``.

    Args:
        config: every setting of the run; must be JSON-serialisable.
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The new run folder.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    root = paths.runs_dir(runs_root)
    while True:
        run_id = new_run_id(config)
        run_dir = root / run_id
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    with open(run_dir / CONFIG_FILE, "x", encoding="utf-8") as stream:
        json.dump(config, stream, indent=2, sort_keys=True, default=json_default)
    now = utc_now()
    write_json_atomic(
        run_dir / STATUS_FILE,
        {"run_id": run_id, "state": QUEUED, "created_at": now, "updated_at": now},
    )
    return run_dir


def read_config(run_dir: str | os.PathLike) -> dict:
    """Reads ``config.json`` of a run."""
    config = read_json(Path(run_dir) / CONFIG_FILE)
    if not isinstance(config, dict):
        raise RunError(f"config.json in {run_dir} holds {type(config).__name__}, expected an object")
    return config


def read_status(run_dir: str | os.PathLike) -> dict:
    """Reads ``status.json`` of a run; raises ``RunError`` when missing, malformed or unknown state."""
    status = read_json(Path(run_dir) / STATUS_FILE)
    if not isinstance(status, dict) or status.get("state") not in STATES:
        raise RunError(f"status.json in {run_dir} has no valid state (expected one of {STATES})")
    return status


def write_status(run_dir: str | os.PathLike, **updates: Any) -> dict:
    """Merges ``updates`` into ``status.json`` and replaces it atomically.

    Args:
        run_dir: the run folder.
        **updates: fields to set, e.g. ``state=RUNNING, pid=123``.

    Returns:
        The status as written.
    """
    run_dir = Path(run_dir)
    state = updates.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {STATES}, received {state!r}")
    try:
        status = read_json(run_dir / STATUS_FILE)
        if not isinstance(status, dict):
            status = {}
    except RunError:
        status = {}
    status.update(updates)
    status["updated_at"] = utc_now()
    write_json_atomic(run_dir / STATUS_FILE, status)
    return status


def append_metrics(run_dir: str | os.PathLike, row: dict) -> None:
    """Appends one epoch row to ``metrics.csv`` (header written on first append).

    Args:
        run_dir: the run folder.
        row: values keyed by ``METRICS_COLUMNS``; missing ones are left empty, extras ignored.
    """
    path = Path(run_dir) / METRICS_FILE
    write_header = not path.exists() or path.stat().st_size == 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if write_header:
        writer.writerow(METRICS_COLUMNS)
    writer.writerow([_format_metric(row.get(column)) for column in METRICS_COLUMNS])
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(buffer.getvalue())
        stream.flush()
        os.fsync(stream.fileno())


def _format_metric(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if hasattr(value, "item"):
        return _format_metric(value.item())
    return str(value)


def read_metrics(run_dir: str | os.PathLike):
    """Reads ``metrics.csv`` as a pandas DataFrame with ``METRICS_COLUMNS``.

    A missing file gives an empty frame; a half-written last line (a reader racing the writer) is
    dropped rather than raising.
    """
    import pandas as pd

    path = Path(run_dir) / METRICS_FILE
    empty = pd.DataFrame({column: pd.Series(dtype="float64") for column in METRICS_COLUMNS})
    if not path.exists():
        return empty
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return empty
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as error:
        raise RunError(f"metrics.csv in {run_dir} is malformed: {error}") from error
    for column in METRICS_COLUMNS:
        if column not in frame:
            frame[column] = float("nan")
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame[list(METRICS_COLUMNS)]


def write_results(run_dir: str | os.PathLike, results: dict) -> None:
    """Writes ``results.json`` atomically."""
    write_json_atomic(Path(run_dir) / RESULTS_FILE, results)


def read_results(run_dir: str | os.PathLike) -> dict | None:
    """Reads ``results.json``; returns None when the run has none (yet)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        return None
    results = read_json(path)
    return results if isinstance(results, dict) else None


def request_cancel(run_dir: str | os.PathLike) -> None:
    """Drops the cancel marker that the worker checks after every batch."""
    (Path(run_dir) / CANCEL_FILE).write_text(utc_now(), encoding="utf-8")


def cancel_requested(run_dir: str | os.PathLike) -> bool:
    """Tells whether ``request_cancel`` was called for this run."""
    return (Path(run_dir) / CANCEL_FILE).exists()


def check_run_id(run_id: str) -> str:
    """Returns ``run_id`` when it matches ``RUN_ID_PATTERN``, else raises ``RunError``.

    A run id is one folder name under the runs root: letters, digits, ``_``, ``.`` and ``-``,
    not starting with a dot, at most ``MAX_RUN_ID_CHARS`` long; no ``/``, no ``..``.
    """
    text = str(run_id)
    if len(text) > MAX_RUN_ID_CHARS or not RUN_ID_PATTERN.fullmatch(text):
        shown = text if len(text) <= MAX_RUN_ID_CHARS else text[:MAX_RUN_ID_CHARS] + "..."
        raise RunError(
            f"{shown!r} is not a run id; expected one folder name such as "
            "'20261127-101500-lenet5-gtsrb-1a2b' (letters, digits, '_', '.', '-'), or a run "
            "folder inside the runs root"
        )
    return text


def _looks_like_path(value: str | os.PathLike) -> bool:
    text = os.fspath(value)
    return isinstance(value, Path) or "/" in text or os.sep in text or text.startswith("~")


def run_path(run_id_or_dir: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """Resolves a run id or a run folder path to an existing run folder inside the runs root.

    Args:
        run_id_or_dir: a run id (one folder name, see ``check_run_id``) or a path to a run
            folder; a path is accepted only when it resolves (symbolic links followed) to a
            folder directly inside the runs root.
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The resolved run folder.

    Raises:
        RunError: (a ``ValueError``) for a malformed id (``../x``, ``/etc``, ``a/../../x``), a
            path outside the runs root, or a run that does not exist.
    """
    root = paths.runs_dir(runs_root)
    if isinstance(run_id_or_dir, str) and not run_id_or_dir.strip():
        raise RunError("no run given; expected a run id or a run folder inside the runs root")
    if _looks_like_path(run_id_or_dir):
        given = Path(run_id_or_dir).expanduser()
        candidate = (given if given.is_absolute() else Path.cwd() / given).resolve()
        if candidate.parent != root:
            raise RunError(
                f"{os.fspath(run_id_or_dir)!r} is outside the runs root {root}; expected a run id "
                "or a run folder directly inside it"
            )
        check_run_id(candidate.name)
    else:
        candidate = (root / check_run_id(os.fspath(run_id_or_dir))).resolve()
        if candidate.parent != root:  # a symbolic link leading out of the runs root
            raise RunError(f"run {os.fspath(run_id_or_dir)!r} points outside the runs root {root}")
    if not candidate.is_dir():
        raise RunError(f"No run named {candidate.name!r} in {root}")
    return candidate


@dataclass
class RunSummary:
    """What the Runs page and Compare page show about one run folder.

    ``broken`` is True (with ``error`` set) when the folder could not be read as a run.
    """

    run_id: str
    path: Path
    state: str = "broken"
    broken: bool = False
    error: str = ""
    config: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)
    results: dict | None = None
    epochs_done: int = 0
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    duration_seconds: float | None = None
    created_at: str = ""

    @property
    def model(self) -> str:
        return str(self.config.get("model", ""))

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", ""))

    @property
    def label(self) -> str:
        """Short human label: model, preset or strategy, dataset and id."""
        variant = self.config.get("preset") or self.config.get("strategy") or ""
        parts = [self.model, str(variant), self.dataset]
        return f"{' '.join(p for p in parts if p)} · {self.run_id}"


def summarize_run(run_dir: str | os.PathLike) -> RunSummary:
    """Reads one run folder into a ``RunSummary``; never raises for a malformed folder."""
    run_dir = Path(run_dir)
    summary = RunSummary(run_id=run_dir.name, path=run_dir)
    try:
        summary.config = read_config(run_dir)
        summary.status = read_status(run_dir)
        summary.state = summary.status["state"]
        summary.created_at = str(summary.status.get("created_at", ""))
        metrics = read_metrics(run_dir)
        summary.epochs_done = int(len(metrics))
        if len(metrics) and metrics["val_accuracy"].notna().any():
            summary.best_val_accuracy = float(metrics["val_accuracy"].max())
        summary.results = read_results(run_dir)
        if summary.results and summary.results.get("test_accuracy") is not None:
            summary.test_accuracy = float(summary.results["test_accuracy"])
        started = parse_time(summary.status.get("started_at"))
        ended = parse_time(summary.status.get("ended_at")) or parse_time(summary.status.get("heartbeat"))
        if started and ended:
            summary.duration_seconds = max(0.0, (ended - started).total_seconds())
    except (RunError, OSError, ValueError, KeyError, TypeError) as error:
        summary.broken = True
        summary.state = "broken"
        summary.error = str(error)
    return summary


def run_folders(root: str | os.PathLike) -> list[Path]:
    """The run folders directly in ``root``, in name order.

    Hidden folders (starting with ``.``) are internal (queue slots) and skipped, and so are
    symbolic links (``run_path`` refuses them when they lead out of the runs root). Every scan
    of a runs root (``list_runs``, ``run_statuses``) goes through this one filter.
    """
    return sorted(entry for entry in Path(root).iterdir()
                  if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."))


def list_runs(runs_root: str | os.PathLike | None = None) -> list[RunSummary]:
    """Lists every run folder under the runs root (``run_folders``), newest first; broken
    folders are included."""
    summaries = [summarize_run(entry) for entry in run_folders(paths.runs_dir(runs_root))]
    summaries.sort(key=lambda summary: (summary.created_at or "", summary.run_id), reverse=True)
    return summaries


def run_statuses(root: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Each run folder directly in ``root`` (``run_folders``) with its ``status.json``, in name order.

    Folders whose status cannot be read are passed over; each status is read when the caller
    reaches its folder.

    Args:
        root: the runs root (callers pass ``paths.runs_dir(...)`` or a run's parent folder).

    Yields:
        ``(run folder, status dict)`` pairs.
    """
    for entry in run_folders(root):
        try:
            current = read_status(entry)
        except (RunError, OSError):
            continue
        yield entry, current


def delete_run(run_dir: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> None:
    """Deletes a run folder (an id or a folder inside the runs root, see ``run_path``).

    Raises:
        RunError: for anything outside the runs root, or a folder that does not look like a run.
    """
    run_dir = run_path(run_dir, runs_root)
    if not (run_dir / CONFIG_FILE).exists() and not (run_dir / STATUS_FILE).exists():
        if any(run_dir.iterdir()):
            raise RunError(f"{run_dir} does not look like a run folder; not deleting it")
    shutil.rmtree(run_dir)


# --- Additions for the job system (cross-process locking and guarded state transitions). ---

CLASS_NAMES_FILE = "class_names.json"


RUN_LOCK_TIMEOUT_SECONDS = 5.0


class RunLockTimeout(RunError, TimeoutError):
    """``run_lock`` could not take the lock in time: the holder is hung; nothing was written."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, timeout: float | None = None):
    """Holds an exclusive ``fcntl.flock`` on the run folder itself for the ``with`` block.

    Every writer of ``status.json`` (worker, heartbeat thread, ``core.jobs``) takes this lock, so
    read-modify-write updates from different processes or threads never lose each other's fields.
    The lock lives on the folder's own file descriptor: no extra file is created, and the kernel
    drops it when a holder dies. Holders keep it for milliseconds, so a lock still held after
    ``timeout`` seconds means a hung holder (e.g. a stopped process): the block is then *not*
    run and ``RunLockTimeout`` is raised, so nothing is ever written without the lock. Where
    ``fcntl`` is unavailable (Windows) it is a no-op. The lock is ``core.files.file_lock``'s.

    Args:
        run_dir: the run folder.
        timeout: seconds to wait for the lock; default ``RUN_LOCK_TIMEOUT_SECONDS``.

    Raises:
        RunLockTimeout: (a ``TimeoutError`` and a ``RunError``) when the lock stays taken.
    """
    timeout = RUN_LOCK_TIMEOUT_SECONDS if timeout is None else float(timeout)
    def hung(error: TimeoutError) -> RunLockTimeout:
        return RunLockTimeout(
            f"could not lock run folder {Path(run_dir).name} within {timeout:g} s "
            "(another process holds it and seems hung); nothing was written")

    with files.file_lock(run_dir, timeout=timeout, create=False, on_timeout=hung):
        yield


def update_status(
    run_dir: str | os.PathLike, only_if_state: tuple[str, ...] | None = None, **updates: Any
) -> dict | None:
    """Merges ``updates`` into ``status.json`` under ``run_lock``; optionally only from some states.

    Args:
        run_dir: the run folder.
        only_if_state: when given, the update happens only if the current state is one of these
            (a guarded transition such as QUEUED -> CANCELLED).
        **updates: fields to set.

    Returns:
        The status as written, or None when ``only_if_state`` did not match (nothing written).
    """
    with run_lock(run_dir):
        if only_if_state is not None:
            try:
                current = read_status(run_dir).get("state")
            except RunError:
                current = None
            if current not in only_if_state:
                return None
        return write_status(run_dir, **updates)


def write_class_names(run_dir: str | os.PathLike, class_names: list[str]) -> None:
    """Writes ``class_names.json`` (a JSON list of strings, index = model output) atomically."""
    write_json_atomic(Path(run_dir) / CLASS_NAMES_FILE, [str(name) for name in class_names])


def read_class_names(run_dir: str | os.PathLike) -> list[str] | None:
    """Reads ``class_names.json``; None when the run has none yet."""
    path = Path(run_dir) / CLASS_NAMES_FILE
    if not path.exists():
        return None
    names = read_json(path)
    if not isinstance(names, list):
        raise RunError(f"{CLASS_NAMES_FILE} in {run_dir} holds {type(names).__name__}, expected a list")
    return [str(name) for name in names]
