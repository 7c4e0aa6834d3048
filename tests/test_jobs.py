"""Jobs: real detached workers, a FIFO queue with slots, cancel, and death detection.

Workers are real ``python -m core.worker`` processes training a tiny LeNet on synthetic signs.
The synthetic images are generated once per test session into a shared data root.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs, runs

TINY_JOB = {
    "model": "lenet5", "preset": "seed", "dataset": "synthetic-signs", "epochs": 1,
    "labels_per_class": 2, "valid_size": 43, "max_test_images": 43, "random_blur": 0.0,
    "augmentation": {"rotation_degrees": 0}, "epoch_repeats": 1,
}
# About 0.3 s per epoch: long enough to be caught mid-training, cut short by the tests.
LONG_JOB = dict(TINY_JOB, epochs=200, labels_per_class=10)
WAIT_SECONDS = 120
# The synthetic-signs data root: the marker of a finished generation, and how long an xdist worker
# waits for another one to finish generating it.
SYNTHETIC_MARKER = ".generated"
SYNTHETIC_LOCK_SECONDS = 900


def _generate_synthetic_signs(root: Path) -> None:
    """Generates the synthetic-signs cache (every split) into the data root ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("TLLAB_DATA_DIR")
    os.environ["TLLAB_DATA_DIR"] = str(root)
    try:
        from core import datasets

        for split in ("train", "val", "test"):
            datasets.load("synthetic-signs", split)
    finally:
        if previous is None:
            os.environ.pop("TLLAB_DATA_DIR", None)
        else:
            os.environ["TLLAB_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory) -> Path:
    """A data root holding the synthetic-signs cache, generated once per test session.

    Generating takes about 23 s on 2 idle cores (one child process per core). Under pytest-xdist the workers share one
    generation (the first to take the lock generates, in the folder above their own temp roots)
    and each copies the result into its own root, so workers never write into each other's.
    """
    from core.files import file_lock

    own_base = tmp_path_factory.getbasetemp()
    shared_base = own_base.parent if os.environ.get("PYTEST_XDIST_WORKER") else own_base
    shared = shared_base / "shared-synthetic-data"
    with file_lock(shared_base / ".shared-synthetic-data.lock", timeout=SYNTHETIC_LOCK_SECONDS):
        if not (shared / SYNTHETIC_MARKER).exists():
            _generate_synthetic_signs(shared)
            (shared / SYNTHETIC_MARKER).write_text("ok")
    if shared_base == own_base:
        return shared
    own = own_base / "synthetic-data"
    # Several test modules import this fixture, and each import is a session fixture of its own,
    # so one worker can get here more than once.
    if not (own / SYNTHETIC_MARKER).exists():
        shutil.copytree(shared, own, dirs_exist_ok=True)
    return own


@pytest.fixture
def job_env(monkeypatch, synthetic_data_root, isolated_roots):
    """One slot, fast heartbeats, and the shared synthetic data for the workers."""
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    monkeypatch.setenv("TLLAB_MAX_CONCURRENT_JOBS", "1")
    monkeypatch.setenv("TLLAB_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("TLLAB_HEARTBEAT_TIMEOUT_SECONDS", "30")
    started: list[str] = []
    yield {"runs": isolated_roots["runs"], "started": started}
    for run_id in started:  # never leave a worker behind, whatever the test did
        jobs.send_signal(run_id, signal.SIGKILL)


def wait_until(predicate, timeout: float = WAIT_SECONDS, interval: float = 0.2, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def submit(job_env, config) -> str:
    run_id = jobs.submit(config)
    job_env["started"].append(run_id)
    return run_id


def test_submit_returns_at_once_with_a_queued_or_running_run(job_env):
    slot = jobs.try_acquire_slot(job_env["runs"])  # the test holds the only slot
    try:
        started = time.monotonic()
        run_id = submit(job_env, TINY_JOB)
        assert time.monotonic() - started < 10
        state = jobs.status(run_id)
        assert state["state"] == runs.QUEUED
        assert jobs.pid_alive(state["pid"])
        config = runs.read_config(runs.run_path(run_id))
        assert config["conv_filters"] == [6, 16] and config["batch_size"] == 128  # resolved
    finally:
        slot.release()
        jobs.cancel(run_id)


def test_sigkilled_worker_is_marked_failed_with_reason(job_env):
    run_id = submit(job_env, LONG_JOB)
    run_dir = runs.run_path(run_id)
    wait_until(lambda: len(runs.read_metrics(run_dir)) >= 1, what="the first epoch")
    pid = jobs.status(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    final = wait_until(lambda: (s := jobs.status(run_id))["state"] != runs.RUNNING and s,
                       timeout=30, what="the dead worker to be noticed")
    assert time.monotonic() - killed_at < 30
    assert final["state"] == runs.FAILED
    assert str(pid) in final["error"] and "exited without finishing" in final["error"]
    assert len(runs.read_metrics(run_dir)) >= 1  # what was written is kept
    assert "marked failed" in (run_dir / runs.LOG_FILE).read_text()


def test_hung_worker_is_detected_by_its_stale_heartbeat(job_env, monkeypatch):
    monkeypatch.setenv("TLLAB_HEARTBEAT_TIMEOUT_SECONDS", "2")
    slot = jobs.try_acquire_slot(job_env["runs"])  # keeps the worker waiting (queued, light)
    try:
        run_id = submit(job_env, TINY_JOB)
        submitted = jobs.status(run_id)
        pid = submitted["pid"]
        wait_until(lambda: jobs.status(run_id)["heartbeat"] != submitted["heartbeat"], timeout=20,
                   what="the worker's own heartbeat")
        os.kill(pid, signal.SIGSTOP)  # alive but silent, like a hung process
        try:
            assert jobs.status(run_id)["state"] == runs.QUEUED
            final = wait_until(lambda: (s := jobs.status(run_id))["state"] == runs.FAILED and s,
                               timeout=15, what="the stale heartbeat")
            assert "no heartbeat" in final["error"] and str(pid) in final["error"]
        finally:
            os.kill(pid, signal.SIGKILL)  # kills a stopped process too
    finally:
        slot.release()


HOLD_THE_RUN_LOCK_AND_HANG = """
import fcntl, os, signal, sys
descriptor = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


@contextlib.contextmanager
def hung_lock_holder(runs_root, monkeypatch):
    """A new run folder, and a real process that holds its run lock and then stops itself."""
    monkeypatch.setattr(runs, "RUN_LOCK_TIMEOUT_SECONDS", 0.5)
    run_dir = runs.create_run({"model": "lenet5"}, runs_root)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_RUN_LOCK_AND_HANG, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield run_dir, holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def test_worker_hung_while_holding_the_run_lock_is_killed_and_marked_failed(isolated_roots, monkeypatch):
    # A SIGSTOP can land in the milliseconds a heartbeat holds the run lock: without the kill no
    # watcher could ever write the run's status again (and status() raised RunLockTimeout).
    monkeypatch.setenv("TLLAB_HEARTBEAT_TIMEOUT_SECONDS", "2")
    with hung_lock_holder(isolated_roots["runs"], monkeypatch) as (run_dir, holder):
        stale = runs.parse_time(runs.utc_now()) - datetime.timedelta(seconds=60)
        runs.write_status(run_dir, state=runs.RUNNING, pid=holder.pid, host=None,
                          pid_start_ticks=jobs.process_start_ticks(holder.pid),
                          heartbeat=stale.isoformat())
        with pytest.raises(runs.RunLockTimeout):  # the lock really is held by the hung process
            with runs.run_lock(run_dir):
                pass
        final = jobs.status(run_dir.name)
        assert final["state"] == runs.FAILED
        assert "no heartbeat" in final["error"] and "held the run lock while hung and was killed" in final["error"]
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert runs.read_status(run_dir)["state"] == runs.FAILED  # written to disk, not just returned


def test_hung_lock_holder_that_is_not_the_worker_is_left_alone(isolated_roots, monkeypatch):
    with hung_lock_holder(isolated_roots["runs"], monkeypatch) as (run_dir, holder):
        runs.write_status(run_dir, state=runs.RUNNING, pid=2 ** 22 + 12345, host=None)  # no such worker
        assert jobs.status(run_dir.name)["state"] == runs.RUNNING  # reported, not raised, not written
        assert holder.poll() is None  # only a stale worker's own pid is ever killed


def test_queue_is_fifo_and_cancel_works_queued_and_running(job_env):
    slot = jobs.try_acquire_slot(job_env["runs"])
    try:
        first = submit(job_env, LONG_JOB)
        second = submit(job_env, TINY_JOB)
        third = submit(job_env, TINY_JOB)
        assert [jobs.status(r)["state"] for r in (first, second, third)] == [runs.QUEUED] * 3
        third_pid = jobs.status(third)["pid"]
        assert jobs.cancel(third)["state"] == runs.CANCELLED  # queued: cancelled at once
        wait_until(lambda: not jobs.pid_alive(third_pid), timeout=20, what="the queued worker to exit")
    finally:
        slot.release()
    first_dir = runs.run_path(first)
    wait_until(lambda: len(runs.read_metrics(first_dir)) >= 1, what="the first job's first epoch")
    assert jobs.status(second)["state"] == runs.QUEUED  # one slot: the second waits its turn
    jobs.cancel(first)
    cancelled = wait_until(lambda: (s := jobs.status(first))["state"] != runs.RUNNING and s,
                           timeout=60, what="the running job to stop")
    assert cancelled["state"] == runs.CANCELLED
    assert (first_dir / runs.MODEL_FILE).exists() and len(runs.read_metrics(first_dir)) >= 1
    assert len(runs.read_metrics(first_dir)) < LONG_JOB["epochs"]
    done = wait_until(lambda: (s := jobs.status(second))["state"] in runs.TERMINAL_STATES and s,
                      what="the second job")
    assert done["state"] == runs.COMPLETED, done.get("error")
    assert runs.parse_time(done["started_at"]) >= runs.parse_time(cancelled["ended_at"])
    assert jobs.status(third)["state"] == runs.CANCELLED
    results = runs.read_results(runs.run_path(second))
    assert results["num_test_images"] == 43 and len(results["confusion_matrix"]) == 43


def test_max_concurrent_jobs_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TLLAB_MAX_CONCURRENT_JOBS", "3")
    assert jobs.max_concurrent_jobs() == 3
    assert jobs.max_concurrent_jobs(2) == 2
    monkeypatch.setenv("TLLAB_MAX_CONCURRENT_JOBS", "many")
    with pytest.raises(ValueError, match="TLLAB_MAX_CONCURRENT_JOBS"):
        jobs.max_concurrent_jobs()
    monkeypatch.delenv("TLLAB_MAX_CONCURRENT_JOBS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert jobs.max_concurrent_jobs() == 1  # CPU only: one job at a time
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert jobs.max_concurrent_jobs() == 2


def test_workers_get_onednn_cpu_kernels_unless_the_user_chose(monkeypatch):
    from core import environment

    monkeypatch.delenv(environment.ONEDNN_ENV, raising=False)
    assert jobs.worker_environment()[environment.ONEDNN_ENV] == "1"
    monkeypatch.setenv(environment.ONEDNN_ENV, "0")
    assert jobs.worker_environment()[environment.ONEDNN_ENV] == "0"
    child = {}
    environment.prefer_onednn_kernels(child)
    assert child == {environment.ONEDNN_ENV: "1"}


def test_slots_pin_one_gpu_each_and_mirrored_takes_all(monkeypatch, isolated_roots):
    monkeypatch.delenv("TLLAB_MAX_CONCURRENT_JOBS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    first = jobs.try_acquire_slot(isolated_roots["runs"])
    second = jobs.try_acquire_slot(isolated_roots["runs"])
    try:
        assert (first.gpu_ids, second.gpu_ids) == (["2"], ["5"])
        assert jobs.try_acquire_slot(isolated_roots["runs"]) is None
    finally:
        first.release()
    assert jobs.try_acquire_slot(isolated_roots["runs"], needs_all=True) is None  # one still held
    second.release()
    everything = jobs.try_acquire_slot(isolated_roots["runs"], needs_all=True)
    assert everything.gpu_ids == ["2", "5"] and everything.indices == [0, 1]
    everything.release()


def test_submit_rejects_a_bad_config_before_creating_a_run(isolated_roots):
    with pytest.raises(ValueError, match="epochs"):
        jobs.submit({"model": "lenet5", "epochs": 0})
    with pytest.raises(ValueError, match="Unknown model"):
        jobs.submit({"model": "alexnet"})
    assert list(isolated_roots["runs"].iterdir()) == []


def test_progress_estimates_eta_from_epoch_times():
    import pandas as pd

    metrics = pd.DataFrame({"epoch": [1, 2], "epoch_seconds": [12.0, 10.0]})
    status = {"epoch": 3, "total_epochs": 10, "batch": 50, "batches_per_epoch": 100}
    summary = jobs.progress(status, metrics)
    assert summary["epoch_fraction"] == 0.5
    assert summary["fraction"] == pytest.approx(0.25)
    assert summary["seconds_per_epoch"] == 10.0
    assert summary["eta_seconds"] == pytest.approx(75.0)


def test_depends_on_holds_a_job_until_its_source_completes_and_fails_it_otherwise(isolated_roots):
    config = {"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs", "epochs": 1}
    source = jobs.create_job(config)
    dependent = jobs.create_job({**config, "depends_on": source.name})
    assert runs.read_config(dependent)["depends_on"] == [source.name]
    later = jobs.create_job(config)
    runs.update_status(source, state=runs.RUNNING, pid=os.getpid(), heartbeat=jobs.heartbeat_now())
    assert jobs.dependencies_state(dependent) == ([source.name], None)
    # A run still waiting for its dependency does not hold the FIFO line for later runs.
    assert dependent.name not in jobs.runs_ahead(later)
    runs.update_status(source, state=runs.COMPLETED)
    assert jobs.dependencies_state(dependent) == ([], None)
    runs.update_status(source, state=runs.FAILED)
    active, reason = jobs.dependencies_state(dependent)
    assert not active and reason == f"run {source.name}, which this run depends on, ended failed"
    assert jobs.wait_for_slot(dependent, poll_seconds=0.01) is None
    status = runs.read_status(dependent)
    assert status["state"] == runs.FAILED and "depends on" in status["error"]
    with pytest.raises(ValueError, match="No run named '20200101-000000-nothing-here'"):
        jobs.create_job({**config, "depends_on": ["20200101-000000-nothing-here"]})


def test_mark_ended_writes_once_under_the_lock_and_logs_why(isolated_roots):
    run_dir = runs.create_run({"model": "lenet5", "dataset": "gtsrb"})
    runs.write_status(run_dir, state=runs.RUNNING)
    with pytest.raises(ValueError, match="received 'completed'"):
        jobs.mark_ended(run_dir, runs.COMPLETED, "not a watcher's state")
    assert jobs.mark_ended(run_dir, runs.FAILED, "moved on", still_applies=lambda current: False) is None
    written = jobs.mark_ended(run_dir, runs.FAILED, "worker gone")
    assert written["state"] == runs.FAILED and written["error"] == "worker gone"
    assert written["failure_detected_by"] == "watcher"
    assert jobs.mark_ended(run_dir, runs.CANCELLED, "too late") is None  # no longer active
    log = (run_dir / runs.LOG_FILE).read_text()
    assert "ERROR marked failed: worker gone" in log and "too late" not in log and "moved on" not in log


def test_heartbeat_settings_must_be_positive_numbers_of_seconds(monkeypatch):
    monkeypatch.setenv(jobs.HEARTBEAT_SECONDS_ENV, "0.5")
    assert jobs.heartbeat_seconds() == 0.5
    for text in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv(jobs.HEARTBEAT_TIMEOUT_ENV, text)
        with pytest.raises(ValueError, match=rf"TLLAB_HEARTBEAT_TIMEOUT_SECONDS must be a positive number "
                                             rf"of seconds, received '{text}'"):
            jobs.heartbeat_timeout_seconds()
    monkeypatch.delenv(jobs.HEARTBEAT_TIMEOUT_ENV)
    assert jobs.heartbeat_timeout_seconds() == 30.0
