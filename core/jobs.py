"""Training jobs: submit, status, cancel, a FIFO queue with GPU slots, and death detection.

Everything lives on disk, so any process (a Streamlit session, a restarted server, the CLI)
sees the same truth:

* ``submit(config)`` resolves the config with its family's ``resolve_config``, creates the run
  folder (QUEUED, with ``submitted_at``) and starts a detached worker
  (``python -m core.worker RUN_DIR``, new session, ``TLLAB_*`` roots passed in the environment).
  It returns at once; the worker outlives the page that started it.
* The worker waits for a free slot: the queue is FIFO by ``submitted_at``; there is one slot per
  visible GPU (the job is pinned to it through ``CUDA_VISIBLE_DEVICES`` before TensorFlow is
  imported), or one slot on a CPU-only machine; ``TLLAB_MAX_CONCURRENT_JOBS`` (or the
  ``max_jobs`` argument) overrides. Slots are ``fcntl`` locks on ``RUNS_ROOT/.slots/slot-N.lock``,
  held by the worker process, so the kernel frees a slot the moment its worker dies. A job with
  ``"distribute": "mirrored"`` takes every slot (all GPUs).
* ``status(run_id)`` reads ``status.json`` and detects dead workers: a QUEUED or RUNNING run whose
  pid is gone (same host), or whose heartbeat is older than ``heartbeat_timeout_seconds()``
  (``TLLAB_HEARTBEAT_TIMEOUT_SECONDS``, default 30), is marked FAILED with the reason.
* ``cancel(run_id)``: a queued run is CANCELLED at once (its waiting worker exits); a running
  run gets ``cancel.request`` and its worker stops after the current batch, ending CANCELLED.
* GPU memory is freed by the worker process exiting.
* Backends: ``TLLAB_JOB_BACKEND=ray`` (``core.job_backends``) sends new jobs to a Ray cluster
  instead (``core.job_backends.ray_backend``: one detached actor per job, Ray's own queue).
  ``status.json["backend"]`` records where each run went, and ``status``/``cancel`` follow it;
  the slots and the FIFO here only concern ``local`` runs.

This module imports no framework, so the Streamlit process and a waiting worker stay light.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core import environment, files, job_backends, paths, runs
from core.heartbeat import (  # noqa: F401 - public via core.jobs
    ACTIVE_STATES,
    HEARTBEAT_SECONDS_ENV,
    HEARTBEAT_TIMEOUT_ENV,
    Heartbeat,
    heartbeat_now,
    heartbeat_seconds,
    heartbeat_timeout_seconds,
)
from core.processes import pid_alive, process_start_ticks  # noqa: F401 - public via core.jobs

MAX_CONCURRENT_JOBS_ENV = "TLLAB_MAX_CONCURRENT_JOBS"
QUEUE_POLL_SECONDS = 0.5
DEPENDS_ON_KEY = "depends_on"
SLOTS_FOLDER = ".slots"


# --- settings -----------------------------------------------------------------------------

def visible_gpu_ids() -> list[str]:
    """GPU ids a job may be pinned to (``CUDA_VISIBLE_DEVICES`` entries or ``0..n-1``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [item.strip() for item in visible.split(",") if item.strip() and item.strip() != "-1"]
    return [str(index) for index in range(environment.visible_gpu_count())]


def max_concurrent_jobs(max_jobs: int | None = None) -> int:
    """How many jobs may run at once.

    Args:
        max_jobs: explicit limit; default ``TLLAB_MAX_CONCURRENT_JOBS``, else one per visible GPU,
            else 1 on a CPU-only machine.

    Returns:
        A positive integer.
    """
    if max_jobs is None:
        text = os.environ.get(MAX_CONCURRENT_JOBS_ENV)
        if text:
            try:
                max_jobs = int(text)
            except ValueError as error:
                raise ValueError(
                    f"{MAX_CONCURRENT_JOBS_ENV} must be a positive integer, received {text!r}"
                ) from error
        else:
            max_jobs = max(1, len(visible_gpu_ids()))
    if int(max_jobs) < 1:
        raise ValueError(f"max_jobs must be a positive integer, received {max_jobs!r}")
    return int(max_jobs)


def on_this_host(status: dict) -> bool:
    """Whether a run's worker process (``pid`` in its status) runs on this host.

    A status without ``host`` (written before hosts were recorded) counts as this host's.
    """
    host = status.get("host")
    return host is None or host == socket.gethostname()


def death_reason(status: dict, timeout: float | None = None) -> str | None:
    """Why a QUEUED/RUNNING run's worker counts as dead, or None while it looks alive.

    Args:
        status: the run's ``status.json`` dict.
        timeout: heartbeat timeout in seconds; default ``heartbeat_timeout_seconds()``.
    """
    if status.get("state") not in ACTIVE_STATES:
        return None
    if status.get("state") == runs.QUEUED and job_backends.run_backend(status) != job_backends.LOCAL:
        return None  # waiting in Ray's queue: no process yet; ray_backend.status asks Ray
    timeout = heartbeat_timeout_seconds() if timeout is None else float(timeout)
    pid = status.get("pid")
    host = status.get("host")
    if pid and on_this_host(status):
        if not pid_alive(pid, status.get("pid_start_ticks")):
            return f"worker process {pid} exited without finishing (killed, out of memory or crashed?)"
    last = (runs.parse_time(status.get("heartbeat")) or runs.parse_time(status.get("started_at"))
            or runs.parse_time(status.get("created_at")))
    if last is None:
        return None
    age = (_dt.datetime.now(_dt.timezone.utc) - last).total_seconds()
    if age > timeout:
        who = f"worker process {pid}" if pid else "the worker (never started)"
        where = f" on {host}" if host else ""
        return f"no heartbeat from {who}{where} for {age:.0f} s (hung, suspended or killed?)"
    return None


# --- public API ------------------------------------------------------------------------------

def resolve_config(config: dict, runs_root=None) -> dict:
    """Fills defaults and validates through the config's model family.

    ``depends_on`` (a run id or a list of them) is the queue's own key: the job waits, queued,
    until those runs complete, and fails if one of them fails or is cancelled.

    Raises:
        ValueError: for a config that is not a dict, has no model, or has bad values.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, received {type(config).__name__}")
    if not config.get("model"):
        raise ValueError("config needs a 'model' key, e.g. {'model': 'lenet5', ...}")
    from core.training.families import family_module

    settings = dict(config)
    depends_on = _check_depends_on(settings.pop(DEPENDS_ON_KEY, None), runs_root)
    resolved = family_module(str(config["model"])).resolve_config(settings, runs_root)
    if depends_on:
        resolved[DEPENDS_ON_KEY] = depends_on
    return resolved


def _check_depends_on(value, runs_root=None) -> list[str]:
    """Validates ``depends_on``: run ids (or folders) of runs that must complete first."""
    if value in (None, "", []):
        return []
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{DEPENDS_ON_KEY} must be a run id or a list of run ids, received {value!r}")
    resolved = []
    for item in items:
        run_dir = runs.run_path(str(item), runs_root)
        if not (run_dir / runs.STATUS_FILE).is_file():
            raise ValueError(f"{DEPENDS_ON_KEY} names run {item!r}, which does not exist")
        resolved.append(run_dir.name)
    return resolved


def dependencies_state(run_dir) -> tuple[list[str], str | None]:
    """Which of a run's ``depends_on`` runs are still active, and why it can never start.

    Returns:
        ``(active run ids, reason)``: reason is None unless a dependency ended without
        completing (or vanished), in which case this run must fail.
    """
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    active = []
    for run_id in config.get(DEPENDS_ON_KEY) or []:
        state = status(run_id, run_dir.parent).get("state")
        if state == runs.COMPLETED:
            continue
        if state in ACTIVE_STATES:
            active.append(run_id)
        else:
            return active, f"run {run_id}, which this run depends on, ended {state or 'missing'}"
    return active, None


def create_job(config: dict, runs_root=None, backend: str = job_backends.LOCAL) -> Path:
    """Resolves ``config`` and creates its QUEUED run folder (no worker started).

    Args:
        config: the job's settings.
        runs_root: the runs root; default ``core.paths.runs_dir()``.
        backend: ``"local"`` or ``"ray"``, recorded as ``status.json["backend"]``.

    Returns:
        The run folder.
    """
    resolved = resolve_config(config, runs_root)
    run_dir = runs.create_run(resolved, runs_root)
    runs.update_status(run_dir, submitted_at=time.time(), heartbeat=heartbeat_now(), backend=backend)
    return run_dir


def worker_environment(runs_root=None) -> dict:
    """The environment for a worker: this one plus absolute ``TLLAB_*`` roots."""
    environment_vars = dict(os.environ)
    environment_vars[paths.RUNS_DIR_ENV] = str(paths.runs_dir(runs_root))
    environment_vars[paths.DATA_DIR_ENV] = str(paths.data_dir())
    python_path = environment_vars.get("PYTHONPATH", "")
    repo = str(paths.REPO_ROOT)
    if repo not in python_path.split(os.pathsep):
        environment_vars["PYTHONPATH"] = os.pathsep.join(p for p in (repo, python_path) if p)
    environment_vars.setdefault("PYTHONUNBUFFERED", "1")
    environment_vars.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.prefer_onednn_kernels(environment_vars)
    return environment_vars


def start_worker(run_dir, runs_root=None) -> int:
    """Launches the detached worker process for a QUEUED run; returns its pid.

    The worker runs in a new session (a closed browser tab or a Streamlit restart does not stop
    it); its stdout/stderr go to ``train.log``. A daemon thread reaps it so it never lingers as
    a zombie in a long-lived server process.
    """
    run_dir = Path(run_dir)
    log = open(run_dir / runs.LOG_FILE, "ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.worker", str(run_dir)],
            cwd=str(paths.REPO_ROOT), env=worker_environment(runs_root),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    except OSError as error:
        runs.update_status(run_dir, only_if_state=ACTIVE_STATES, state=runs.FAILED,
                           error=f"could not start the worker process: {error}",
                           ended_at=runs.utc_now())
        raise
    finally:
        log.close()
    runs.update_status(run_dir, only_if_state=ACTIVE_STATES, pid=process.pid,
                       host=socket.gethostname(), pid_start_ticks=process_start_ticks(process.pid))
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process.pid


def submit(config: dict, runs_root=None) -> str:
    """Queues a training job and starts its worker; returns the run id at once.

    Args:
        config: settings keyed by the CLI option names, e.g. ``{"model": "lenet5", "preset":
            "seed", "dataset": "synthetic-signs", "epochs": 2}``; defaults filled by the family.
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The run id (the run folder's name).

    Raises:
        ValueError: when the config does not validate, or the backend cannot take the job
            (``TLLAB_JOB_BACKEND=ray`` without Ray or a reachable cluster: the run is FAILED).
    """
    backend = job_backends.backend_name()
    run_dir = create_job(config, runs_root, backend=backend)
    if backend == job_backends.RAY:
        from core.job_backends import ray_backend

        ray_backend.submit(run_dir, runs_root)
    else:
        start_worker(run_dir, runs_root)
    return run_dir.name


RESUMABLE_STATES = (runs.FAILED, runs.CANCELLED)


def prepare_resume(run_id, runs_root=None) -> Path:
    """Turns a failed or cancelled run back into a QUEUED one that continues where it stopped.

    The run keeps its folder, ``config.json`` and ``metrics.csv``; ``status.json`` gets
    ``state=queued``, ``resumed_at`` and ``resume_count``, and its error is cleared; a cancel
    request is removed. The trainer then restores every stage's ``BackupAndRestore`` state
    (``RUN_DIR/backup``), so training continues after the last finished epoch.

    Args:
        run_id: a run id under the runs root, or a run folder (resolved by
            ``core.runs.run_path``).
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The run folder, now QUEUED (no worker started).

    Raises:
        ValueError: (``core.runs.RunError``) when the run does not exist, or is not failed or
            cancelled (a queued, running or completed run cannot be resumed).
    """
    run_dir = runs.run_path(run_id, runs_root)
    status(run_dir, runs_root)  # a worker killed without a trace is marked FAILED first
    with runs.run_lock(run_dir):
        current = runs.read_status(run_dir)
        state = current.get("state")
        if state not in RESUMABLE_STATES:
            raise runs.RunError(
                f"run {run_dir.name} is {state}; only a failed or cancelled run can be resumed "
                f"(expected a state in {RESUMABLE_STATES})"
            )
        (run_dir / runs.CANCEL_FILE).unlink(missing_ok=True)
        for leftover in run_dir.glob(".*.tmp*"):  # a save cut off by the kill
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        _drop_partial_metrics_line(run_dir)
        runs.write_status(
            run_dir, state=runs.QUEUED, error=None, warning=None, ended_at=None,
            failure_detected_by=None, pid=None, pid_start_ticks=None,
            resumed_at=runs.utc_now(), resume_count=int(current.get("resume_count") or 0) + 1,
            resumed_from_state=state, submitted_at=time.time(), heartbeat=heartbeat_now(),
        )
    return run_dir


def _drop_partial_metrics_line(run_dir: Path) -> None:
    """Cuts a half-written last row (a worker killed mid-write) off ``metrics.csv``."""
    path = Path(run_dir) / runs.METRICS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if not data or data.endswith(b"\n"):
        return
    temporary = path.with_name(f".{path.name}.repair")
    temporary.write_bytes(data[: data.rfind(b"\n") + 1])
    os.replace(temporary, path)


def resume(run_id, runs_root=None) -> str:
    """Resumes a failed or cancelled run in a new detached worker; returns its run id.

    See ``prepare_resume``; the worker then queues like a new job (FIFO, free slot).

    Raises:
        ValueError: when the run cannot be resumed (see ``prepare_resume``).
    """
    run_dir = prepare_resume(run_id, runs_root)
    start_worker(run_dir, runs_root)
    return run_dir.name


def status(run_id: str, runs_root=None) -> dict:
    """Returns ``status.json`` of a run, first marking a dead worker's run FAILED.

    Args:
        run_id: a run id under the runs root, or a run folder path.
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The status dict: ``state`` (queued, running, completed, failed, cancelled), ``backend``
        (``local`` or ``ray``; ``node`` for Ray), ``pid`` while running, and the fields the
        worker writes (``epoch``, ``batch``, ...).

    Raises:
        core.runs.RunError: when the run does not exist or its status is unreadable.
    """
    run_dir = runs.run_path(run_id, runs_root)
    current = runs.read_status(run_dir)
    if job_backends.run_backend(current) == job_backends.RAY:
        from core.job_backends import ray_backend

        return ray_backend.status(run_dir, current, death_reason)
    current.setdefault("backend", job_backends.LOCAL)
    reason = death_reason(current)
    if reason is None:
        return current
    updated = mark_failed(run_dir, reason)
    return updated if updated is not None else runs.read_status(run_dir)


WATCHER_END_STATES = (runs.FAILED, runs.CANCELLED)


def mark_ended(run_dir, state: str, reason: str, expected: tuple[str, ...] = ACTIVE_STATES,
               still_applies: Callable[[dict], bool] | None = None) -> dict | None:
    """Ends a run from outside its worker (a watcher): the status under the run lock, then a log line.

    Used by ``mark_failed`` and by the Ray backend (dead actors, overdue cancels).

    Args:
        run_dir: the run folder.
        state: ``runs.FAILED`` (recorded with ``failure_detected_by="watcher"``) or
            ``runs.CANCELLED``.
        reason: why, stored as the status' ``error`` and written to the run's log.
        expected: the states the run may be in; in any other nothing is written.
        still_applies: re-checked on the status read under the lock (the run may have moved on
            since the caller looked); False writes nothing.

    Returns:
        The status as written, or None when nothing was written.

    Raises:
        ValueError: for a ``state`` other than failed or cancelled.
    """
    if state not in WATCHER_END_STATES:
        raise ValueError(f"state must be one of {', '.join(WATCHER_END_STATES)}, received {state!r}")
    with runs.run_lock(run_dir):
        current = runs.read_status(run_dir)
        if current.get("state") not in expected:
            return None
        if still_applies is not None and not still_applies(current):
            return None
        written = runs.write_status(run_dir, state=state, error=reason, ended_at=runs.utc_now(),
                                    failure_detected_by="watcher" if state == runs.FAILED else None)
    try:
        with open(Path(run_dir) / runs.LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"{runs.utc_now()} ERROR marked {state}: {reason}\n")
    except OSError:
        pass
    return written


HUNG_WORKER_EXIT_SECONDS = 5.0


def mark_failed(run_dir, reason: str) -> dict | None:
    """Marks a QUEUED/RUNNING run FAILED by a watcher (its death re-checked under the run lock).

    A worker whose heartbeat is stale may have hung *while holding* the run lock (stopped by
    SIGSTOP, stuck in a write): no one could ever write its status again. Holders keep that lock
    for milliseconds, so a lock still held after ``runs.RUN_LOCK_TIMEOUT_SECONDS`` together with a
    stale heartbeat means the worker is hung; it is then killed (SIGKILL, on this host only, its
    process start time checked so a reused pid is never hit), which drops its lock, and the run is
    marked FAILED with that in its reason.

    Returns:
        The status as written, or None when nothing was written (the run moved on, or a hung
        holder could not be killed from here: another host, or not our process).
    """
    still_dead = lambda current: death_reason(current) is not None  # noqa: E731
    try:
        return mark_ended(run_dir, runs.FAILED, reason, still_applies=still_dead)
    except runs.RunLockTimeout:
        if not _kill_hung_lock_holder(run_dir):
            return None
    try:
        return mark_ended(run_dir, runs.FAILED, f"{reason}; it held the run lock while hung and was killed",
                          still_applies=still_dead)
    except runs.RunLockTimeout:  # another process holds it now: the next watcher tries again
        return None


def _kill_hung_lock_holder(run_dir) -> bool:
    """SIGKILLs a run's live local worker whose heartbeat is stale; True once it is gone."""
    current = runs.read_status(run_dir)
    pid = current.get("pid")
    if not pid or not on_this_host(current) or death_reason(current) is None:
        return False
    start_ticks = current.get("pid_start_ticks")
    if not pid_alive(pid, start_ticks):  # gone, and its lock with it: another process holds it
        return False
    # Alive with a death reason: its heartbeat is stale (a live worker's only reason).
    try:
        os.kill(int(pid), signal.SIGKILL)
    except OSError:
        return False
    deadline = time.monotonic() + HUNG_WORKER_EXIT_SECONDS
    while pid_alive(pid, start_ticks) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid, start_ticks)


def refresh_all(runs_root=None) -> int:
    """Runs death detection over every QUEUED/RUNNING run (pages call it before listing).

    Returns:
        How many runs were newly marked FAILED.
    """
    marked = 0
    for entry, current in runs.run_statuses(paths.runs_dir(runs_root)):
        if current.get("state") in ACTIVE_STATES and job_backends.run_backend(current) == job_backends.RAY:
            marked += status(entry).get("state") == runs.FAILED  # Ray knows of dead actors
            continue
        reason = death_reason(current)
        if reason and mark_failed(entry, reason) is not None:
            marked += 1
    return marked


def cancel(run_id: str, runs_root=None) -> dict:
    """Cancels a job: QUEUED ends CANCELLED now; RUNNING stops after the current batch.

    Returns:
        The status after the request (a running job still shows RUNNING until its worker stops).
    """
    run_dir = runs.run_path(run_id, runs_root)
    current = status(run_dir)
    if current.get("state") in runs.TERMINAL_STATES:
        return current
    if job_backends.run_backend(current) == job_backends.RAY:
        from core.job_backends import ray_backend

        return ray_backend.cancel(run_dir, current)
    runs.request_cancel(run_dir)
    cancelled = runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.CANCELLED,
                                   ended_at=runs.utc_now(), error=None)
    return cancelled if cancelled is not None else runs.read_status(run_dir)


def progress(status_dict: dict, metrics=None, now: float | None = None) -> dict:
    """Where a run stands: fraction done, progress within the epoch, seconds per epoch and ETA.

    Args:
        status_dict: the run's status (``epoch``, ``total_epochs``, ``batch``,
            ``batches_per_epoch``, ``epoch_started_at``).
        metrics: the run's ``metrics.csv`` frame (epoch times for the estimate), or None.
        now: the current time in seconds since the epoch (default: now).

    Returns:
        A dict with ``epoch``, ``total_epochs``, ``epochs_done``, ``batch``,
        ``batches_per_epoch``, ``epoch_fraction`` (0..1), ``fraction`` (0..1),
        ``seconds_per_epoch`` and ``eta_seconds`` (None while unknown).
    """
    now = time.time() if now is None else float(now)
    total = int(status_dict.get("total_epochs") or 0)
    epoch = int(status_dict.get("epoch") or 0)
    batch = int(status_dict.get("batch") or 0)
    batches = status_dict.get("batches_per_epoch")
    batches = int(batches) if batches else None
    done = int(len(metrics)) if metrics is not None else int(status_dict.get("epochs_done") or 0)
    in_epoch = epoch > done and batches
    epoch_fraction = min(1.0, batch / batches) if in_epoch else 0.0
    seconds_per_epoch = None
    if metrics is not None and len(metrics) and metrics["epoch_seconds"].notna().any():
        times = metrics["epoch_seconds"].dropna()
        # The first epoch pays for graph tracing; prefer the later ones when there are some.
        seconds_per_epoch = float((times.iloc[1:] if len(times) > 1 else times).mean())
    started = status_dict.get("epoch_started_at")
    if seconds_per_epoch is None and in_epoch and epoch_fraction > 0 and isinstance(started, (int, float)):
        seconds_per_epoch = max(0.0, now - float(started)) / epoch_fraction
    fraction = min(1.0, (done + epoch_fraction) / total) if total else 0.0
    eta = None
    if seconds_per_epoch is not None and total:
        remaining = max(0.0, total - done - epoch_fraction)
        eta = remaining * seconds_per_epoch
    return {"epoch": epoch, "total_epochs": total, "epochs_done": done, "batch": batch,
            "batches_per_epoch": batches, "epoch_fraction": epoch_fraction, "fraction": fraction,
            "seconds_per_epoch": seconds_per_epoch, "eta_seconds": eta}


def active_runs(model: str | None = None, runs_root=None) -> list[str]:
    """Run ids that are QUEUED or RUNNING (after death detection), newest first.

    Args:
        model: keep only runs of this model family (e.g. ``"lenet5"``).
    """
    found = []
    for summary in runs.list_runs(runs_root):
        if summary.broken or summary.state not in ACTIVE_STATES:
            continue
        if model is not None and summary.model != model:
            continue
        if status(summary.path, runs_root).get("state") in ACTIVE_STATES:
            found.append(summary.run_id)
    return found


def active_runs_using_dataset(dataset: str, runs_root=None) -> list[str]:
    """Run ids of QUEUED or RUNNING jobs whose config trains on ``dataset``, newest first.

    Args:
        dataset: a dataset name such as ``"gtsrb"``.
        runs_root: the runs root; default ``core.paths.runs_dir()``.
    """
    found = []
    for run_id in active_runs(runs_root=runs_root):
        try:
            config = runs.read_config(runs.run_path(run_id, runs_root))
        except (runs.RunError, OSError):
            continue
        if config.get("dataset") == dataset:
            found.append(run_id)
    return found


# --- queue and slots (used by the worker process) --------------------------------------------

@dataclass
class Slot:
    """The slot(s) a worker holds: their held ``file_lock``s, and the GPU ids pinned to the job."""

    indices: list[int]
    gpu_ids: list[str]
    locks: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def release(self) -> None:
        """Frees the slot(s); calling it again does nothing."""
        self.locks.close()


def _queue_key(status_dict: dict, run_id: str) -> tuple:
    submitted = status_dict.get("submitted_at")
    if not isinstance(submitted, (int, float)):
        created = runs.parse_time(status_dict.get("created_at"))
        submitted = created.timestamp() if created else float("inf")
    return (float(submitted), run_id)


def runs_ahead(run_dir, runs_root=None) -> list[str]:
    """Live QUEUED runs submitted before this one (dead ones are marked FAILED on the way)."""
    run_dir = Path(run_dir)
    root = paths.runs_dir(runs_root) if runs_root else run_dir.parent
    own = runs.read_status(run_dir)
    own_key = _queue_key(own, run_dir.name)
    ahead = []
    for entry, other in runs.run_statuses(root):
        if entry == run_dir:
            continue
        if other.get("state") != runs.QUEUED or _queue_key(other, entry.name) >= own_key:
            continue
        if job_backends.run_backend(other) != job_backends.LOCAL:
            continue  # Ray runs wait in Ray's queue, not for this machine's slots
        if status(entry, root).get("state") != runs.QUEUED:
            continue
        try:
            waiting = runs.read_config(entry).get(DEPENDS_ON_KEY) and dependencies_state(entry)[0]
        except (runs.RunError, OSError):
            waiting = False
        if not waiting:  # a run still waiting for its dependencies does not hold the line
            ahead.append(entry.name)
    return ahead


def try_acquire_slot(runs_root, needs_all: bool = False, max_jobs: int | None = None) -> Slot | None:
    """Takes a free slot (or every slot when ``needs_all``) without waiting; None when busy.

    Each slot is a ``core.files.file_lock`` tried once (``timeout=0``) and held until
    ``Slot.release`` (or the worker's death).
    """
    count = max_concurrent_jobs(max_jobs)
    gpu_ids = visible_gpu_ids()
    folder = paths.runs_dir(runs_root) / SLOTS_FOLDER
    locks = contextlib.ExitStack()
    indices: list[int] = []
    for index in range(count):
        try:
            locks.enter_context(files.file_lock(folder / f"slot-{index}.lock", timeout=0))
        except TimeoutError:  # another worker holds this slot
            if needs_all:
                locks.close()
                return None
            continue
        indices.append(index)
        if not needs_all:
            break
    if not indices:
        return None
    if needs_all:
        pinned = gpu_ids
    else:
        pinned = [gpu_ids[indices[0] % len(gpu_ids)]] if gpu_ids else []
    return Slot(indices=indices, gpu_ids=pinned, locks=locks)


def wait_for_slot(run_dir, poll_seconds: float = QUEUE_POLL_SECONDS,
                  max_jobs: int | None = None) -> Slot | None:
    """Blocks until this QUEUED run is first in line and a slot is free.

    Returns:
        The held ``Slot`` (the run is then RUNNING), or None when the run stopped being QUEUED
        (cancelled, or marked failed) while it waited.
    """
    run_dir = Path(run_dir)
    root = run_dir.parent
    config = runs.read_config(run_dir)
    needs_all = str(config.get("distribute") or "none") == "mirrored"
    announced = False
    while True:
        current = runs.read_status(run_dir)
        if current.get("state") != runs.QUEUED or runs.cancel_requested(run_dir):
            if current.get("state") == runs.QUEUED:
                runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.CANCELLED,
                                   ended_at=runs.utc_now())
            return None
        waiting_for, reason = dependencies_state(run_dir) if config.get(DEPENDS_ON_KEY) else ([], None)
        if reason:
            runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.FAILED, error=reason,
                               ended_at=runs.utc_now())
            return None
        if waiting_for and not announced:
            runs.update_status(run_dir, only_if_state=(runs.QUEUED,),
                               phase=f"Waiting for run {', '.join(waiting_for)} to complete")
            announced = True
        if not waiting_for and not runs_ahead(run_dir, root):
            slot = try_acquire_slot(root, needs_all=needs_all, max_jobs=max_jobs)
            if slot is not None:
                started = runs.update_status(
                    run_dir, only_if_state=(runs.QUEUED,), state=runs.RUNNING,
                    started_at=runs.utc_now(), pid=os.getpid(), host=socket.gethostname(),
                    pid_start_ticks=process_start_ticks(os.getpid()), slot=slot.indices,
                    gpu_ids=slot.gpu_ids,
                )
                if started is None:
                    slot.release()
                    continue
                return slot
        time.sleep(poll_seconds)


def send_signal(run_id: str, signal_number: int = signal.SIGTERM, runs_root=None) -> bool:
    """Sends a signal to a run's worker on this host (used by tests and admin tools)."""
    current = runs.read_status(runs.run_path(run_id, runs_root))
    pid = current.get("pid")
    if not pid or not on_this_host(current):
        return False
    try:
        os.kill(int(pid), signal_number)
    except OSError:
        return False
    return True
