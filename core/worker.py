"""The worker process: ``python -m core.worker RUN_DIR``.

Started detached by ``core.jobs.submit`` (and run in the foreground by ``python -m core.train``):

1. starts a heartbeat thread (the watcher in ``core.jobs.status`` sees the worker alive even
   while it waits in the queue);
2. waits for its turn and a free slot (``core.jobs.wait_for_slot``), exiting if the run is
   cancelled while queued;
3. pins itself to its GPU(s) through ``CUDA_VISIBLE_DEVICES`` *before* any framework import;
4. runs ``core.training.trainer.run_training`` and exits, which frees all GPU memory.

SIGTERM (and Ctrl-C) turn into a cancel request, so the run stops after the current batch and
ends CANCELLED with everything written so far kept.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path

from core import environment, jobs, runs


def _install_signal_handlers(run_dir: Path) -> None:
    def request_cancel(signal_number, frame):  # noqa: ARG001 - signal handler signature
        try:
            runs.request_cancel(run_dir)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, request_cancel)


def pin_devices(gpu_ids: list[str]) -> None:
    """Sets ``CUDA_VISIBLE_DEVICES`` for this process (must run before TensorFlow is imported).

    It also turns TensorFlow's oneDNN CPU kernels on unless the user chose
    (``core.environment.prefer_onednn_kernels``).
    """
    environment.prefer_onednn_kernels()
    if gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)


def run(run_dir, *, console: bool = False, max_jobs: int | None = None) -> str:
    """Waits for a slot, then trains the run in this process.

    Args:
        run_dir: a QUEUED run folder.
        console: log and draw progress on stderr (the CLI).
        max_jobs: slot count override; default ``core.jobs.max_concurrent_jobs()``.

    Returns:
        The run's final state.
    """
    run_dir = Path(run_dir).resolve()
    _install_signal_handlers(run_dir)
    runs.update_status(run_dir, only_if_state=jobs.ACTIVE_STATES, pid=os.getpid(),
                       pid_start_ticks=jobs.process_start_ticks(os.getpid()))
    beat = jobs.Heartbeat(run_dir).start()
    slot = None
    try:
        if console and jobs.runs_ahead(run_dir):
            print("Waiting for a free training slot (other jobs are queued or running)…",
                  file=sys.stderr, flush=True)
        slot = jobs.wait_for_slot(run_dir, max_jobs=max_jobs)
        if slot is None:
            return runs.read_status(run_dir)["state"]
        pin_devices(slot.gpu_ids)
        from core.training import trainer

        return trainer.run_training(run_dir, console=console, heartbeat=False)
    finally:
        beat.stop()
        if slot is not None:
            slot.release()


def run_scheduled(run_dir, **status_fields) -> str:
    """Trains a run whose scheduler already reserved its resources (the Ray backend's actor).

    Skips the local queue and slots; the same heartbeat and trainer as ``run`` follow.

    Args:
        run_dir: a QUEUED run folder.
        **status_fields: written into ``status.json`` with the RUNNING state (e.g. ``node``).

    Returns:
        The run's final state (or the state found when it was no longer QUEUED, e.g. cancelled).
    """
    run_dir = Path(run_dir).resolve()
    if not _dependencies_completed(run_dir):
        return runs.read_status(run_dir)["state"]
    started = runs.update_status(
        run_dir, only_if_state=(runs.QUEUED,), state=runs.RUNNING, started_at=runs.utc_now(),
        pid=os.getpid(), host=socket.gethostname(),
        pid_start_ticks=jobs.process_start_ticks(os.getpid()), **status_fields)
    if started is None:
        return runs.read_status(run_dir)["state"]
    beat = jobs.Heartbeat(run_dir).start()
    try:
        pin_devices([])
        from core.training import trainer

        return trainer.run_training(run_dir, heartbeat=False)
    finally:
        beat.stop()


def _dependencies_completed(run_dir: Path, poll_seconds: float = jobs.QUEUE_POLL_SECONDS) -> bool:
    """Waits, still QUEUED, for the runs in ``depends_on``; False when one can never complete."""
    if not runs.read_config(run_dir).get(jobs.DEPENDS_ON_KEY):
        return True
    while True:
        waiting, reason = jobs.dependencies_state(run_dir)
        if reason:
            runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.FAILED, error=reason,
                               ended_at=runs.utc_now())
            return False
        if not waiting:
            return True
        if runs.read_status(run_dir).get("state") != runs.QUEUED:
            return False
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 0 for completed/cancelled runs, 1 for failed ones."""
    parser = argparse.ArgumentParser(prog="python -m core.worker",
                                     description="Run one queued training job.")
    parser.add_argument("run_dir", help="the run folder created by core.jobs.submit")
    arguments = parser.parse_args(argv)
    state = run(arguments.run_dir)
    return 1 if state == runs.FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
