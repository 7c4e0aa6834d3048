"""The Ray job backend: real Ray on 127.0.0.1, real actors training a tiny LeNet.

One local Ray (2 CPUs, like the lab's 2-core machines) is started for the module with
``ray_backend.start_local`` (``ray.init(address="local", include_dashboard=False, num_cpus=2)``
with every port on 127.0.0.1) and shut down at the end; nothing else is touched. A job reserves
the node's 2 CPUs, so a second job waits in Ray's queue. Deselect with ``-m "not ray"``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from core import job_backends, jobs, runs
from core.job_backends import ray_backend
from tests.conftest import REPO_ROOT, run_page
from tests.test_jobs import LONG_JOB, TINY_JOB, synthetic_data_root, wait_until  # noqa: F401

RAY_CPUS = 2
KILL_DETECTION_SECONDS = 45
CANCEL_SECONDS = 30


def connected_cluster_test(test):
    """Marks a test that starts the module's local Ray: ``ray`` and ``slow``."""
    return pytest.mark.ray(pytest.mark.slow(test))


# --- pure parts: exact numbers, no cluster ---------------------------------------------------

def test_backend_setting_defaults_to_local_and_rejects_unknown_names(monkeypatch):
    monkeypatch.delenv(job_backends.BACKEND_ENV, raising=False)
    assert job_backends.backend_name() == "local"
    monkeypatch.setenv(job_backends.BACKEND_ENV, " Ray ")
    assert job_backends.backend_name() == "ray"
    monkeypatch.setenv(job_backends.BACKEND_ENV, "slurm")
    with pytest.raises(ValueError, match=r"local, ray, received 'slurm'"):
        job_backends.backend_name()


def test_a_job_reserves_one_gpu_or_the_smallest_nodes_cpus(monkeypatch):
    monkeypatch.delenv(ray_backend.JOB_CPUS_ENV, raising=False)
    assert ray_backend.job_resources([{"CPU": 2.0}]) == {"num_cpus": 2.0, "num_gpus": 0}
    assert ray_backend.job_resources([{"CPU": 8.0}, {"CPU": 2.0}]) == {"num_cpus": 2.0, "num_gpus": 0}
    assert ray_backend.job_resources([{"CPU": 16.0, "GPU": 2.0}, {"CPU": 4.0}]) == {
        "num_cpus": 1.0, "num_gpus": 1}
    monkeypatch.setenv(ray_backend.JOB_CPUS_ENV, "1")
    assert ray_backend.job_resources([{"CPU": 8.0}]) == {"num_cpus": 1.0, "num_gpus": 0}
    monkeypatch.setenv(ray_backend.JOB_CPUS_ENV, "-2")
    with pytest.raises(ValueError, match=r"TLLAB_RAY_JOB_CPUS must be a positive number of CPUs, received '-2'"):
        ray_backend.job_resources([{"CPU": 8.0}])
    with pytest.raises(ValueError, match="no node with CPUs"):
        ray_backend.job_resources([], job_cpus=1)


def test_slots_and_cluster_rows_count_jobs_per_node():
    assert ray_backend.slots_on_node({"CPU": 8.0, "GPU": 2.0}, {"num_cpus": 1.0, "num_gpus": 1}) == 2
    assert ray_backend.slots_on_node({"CPU": 8.0}, {"num_cpus": 3.0, "num_gpus": 0}) == 2
    assert ray_backend.slots_on_node({"CPU": 1.0}, {"num_cpus": 2.0, "num_gpus": 0}) == 0
    nodes = [{"NodeID": "a", "NodeManagerHostname": "lab-01", "NodeManagerAddress": "10.0.0.1",
              "Resources": {"CPU": 4.0}},
             {"NodeID": "b", "NodeManagerHostname": "lab-02", "NodeManagerAddress": "10.0.0.2",
              "Resources": {"CPU": 2.0}}]
    rows = ray_backend.cluster_rows(nodes, {"num_cpus": 2.0, "num_gpus": 0}, {"a": 1})
    assert rows == [
        {"node": "lab-01", "address": "10.0.0.1", "CPUs": 4, "GPUs": 0, "slots": 2, "busy": 1, "free": 1},
        {"node": "lab-02", "address": "10.0.0.2", "CPUs": 2, "GPUs": 0, "slots": 1, "busy": 0, "free": 1},
    ]


def test_a_queued_ray_run_is_not_failed_by_the_heartbeat_watcher():
    old = "2020-01-01T00:00:00.000+00:00"
    queued = {"state": runs.QUEUED, "backend": "ray", "heartbeat": old, "created_at": old}
    assert jobs.death_reason(queued, timeout=30) is None
    local = dict(queued, backend="local")
    assert "no heartbeat" in jobs.death_reason(local, timeout=30)


def _fake_run(runs_root, state: str, backend: str, submitted_at: float):
    run_dir = runs.create_run({"model": "lenet5"}, runs_root)
    runs.update_status(run_dir, state=state, backend=backend, submitted_at=submitted_at)
    return run_dir


def test_queue_position_counts_only_waiting_ray_runs_in_submission_order(isolated_roots):
    root = isolated_roots["runs"]
    second = _fake_run(root, runs.QUEUED, "ray", 200.0)
    first = _fake_run(root, runs.QUEUED, "ray", 100.0)
    _fake_run(root, runs.QUEUED, "local", 50.0)  # waits for this machine's slots, not Ray
    running = _fake_run(root, runs.RUNNING, "ray", 10.0)
    runs.update_status(running, ray_node_id="node-a")
    assert ray_backend.queued_runs(root) == [first.name, second.name]
    assert ray_backend.queue_position(second) == 2 and ray_backend.queue_position(first) == 1
    assert ray_backend.queue_position(running) is None
    assert ray_backend.running_by_node(root) == {"node-a": 1}


def test_a_running_ray_job_is_killed_only_when_its_cancel_is_overdue(isolated_roots):
    run_dir = _fake_run(isolated_roots["runs"], runs.RUNNING, "ray", 100.0)
    current = runs.read_status(run_dir)
    assert ray_backend._cancel_overdue(run_dir, current) is False  # no cancel requested
    runs.request_cancel(run_dir)
    requested = (run_dir / runs.CANCEL_FILE).stat().st_mtime
    grace = ray_backend.CANCEL_GRACE_SECONDS
    assert ray_backend._cancel_overdue(run_dir, current, now=requested + grace - 1) is False
    assert ray_backend._cancel_overdue(run_dir, current, now=requested + grace + 1) is True
    queued = dict(current, state=runs.QUEUED)
    assert ray_backend._cancel_overdue(run_dir, queued, now=requested + grace + 1) is False


def test_a_job_the_cluster_cannot_take_fails_with_the_reason_and_a_value_error(monkeypatch):
    def unreachable(address=None):
        raise ray_backend.RayUnavailableError("cannot reach the Ray cluster at lab-head:6379")

    monkeypatch.setenv(job_backends.BACKEND_ENV, "ray")
    monkeypatch.setattr(ray_backend, "connect", unreachable)
    with pytest.raises(ValueError, match="lab-head:6379"):
        jobs.submit(TINY_JOB)
    [summary] = runs.list_runs()
    assert summary.status["state"] == runs.FAILED and summary.status["backend"] == "ray"
    assert summary.status["error"] == ("could not queue the job on the Ray cluster: "
                                       "cannot reach the Ray cluster at lab-head:6379")


# --- a real local Ray cluster -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs on 127.0.0.1, started and stopped by this module only."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster that the test did not start")
    from ray._private import ray_constants

    previous = os.environ.get(ray_backend.LOOPBACK_ENV)
    previous_cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
    ray_backend.start_local(num_cpus=RAY_CPUS, num_gpus=0)
    yield ray
    ray.shutdown()
    ray_constants.ENABLE_RAY_CLUSTER = previous_cluster_switch
    if previous is None:
        os.environ.pop(ray_backend.LOOPBACK_ENV, None)
    else:
        os.environ[ray_backend.LOOPBACK_ENV] = previous


@pytest.fixture
def ray_env(monkeypatch, ray_cluster, synthetic_data_root, isolated_roots):  # noqa: F811
    """TLLAB_JOB_BACKEND=ray, fast heartbeats; every job still active at the end is killed."""
    monkeypatch.setenv(job_backends.BACKEND_ENV, "ray")
    monkeypatch.delenv(ray_backend.JOB_CPUS_ENV, raising=False)
    monkeypatch.delenv(ray_backend.ADDRESS_ENV, raising=False)
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    monkeypatch.setenv("TLLAB_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("TLLAB_HEARTBEAT_TIMEOUT_SECONDS", "30")
    submitted: list[str] = []
    yield {"ray": ray_cluster, "submitted": submitted, "runs": isolated_roots["runs"]}
    for run_id in submitted:  # free the cluster for the next test, whatever this one did
        current = runs.read_status(runs.run_path(run_id))
        ray_backend.kill_actor(current)
        runs.update_status(runs.run_path(run_id), only_if_state=jobs.ACTIVE_STATES,
                           state=runs.CANCELLED, ended_at=runs.utc_now())
    wait_until(lambda: ray_cluster.available_resources().get("CPU", 0) >= RAY_CPUS, timeout=30,
               what="the cluster's CPUs to be free again")


def submit(ray_env, config) -> str:
    run_id = jobs.submit(config)
    ray_env["submitted"].append(run_id)
    return run_id


def state_of(run_id: str) -> str:
    return jobs.status(run_id)["state"]


@connected_cluster_test
def test_second_job_waits_in_rays_queue_then_both_complete(ray_env):
    first = submit(ray_env, TINY_JOB)
    second = submit(ray_env, TINY_JOB)
    status = jobs.status(first)
    assert status["backend"] == "ray" and status["ray_resources"] == {"num_cpus": 2.0, "num_gpus": 0}
    wait_until(lambda: state_of(first) == runs.RUNNING, what="the first job to start")
    assert state_of(second) == runs.QUEUED  # 2 CPUs, 2 per job: it waits in Ray
    assert ray_backend.queue_position(runs.run_path(second)) == 1
    wait_until(lambda: state_of(first) == runs.COMPLETED, what="the first job to complete")
    wait_until(lambda: state_of(second) == runs.COMPLETED, what="the second job to complete")
    done_first, done_second = jobs.status(first), jobs.status(second)
    for done in (done_first, done_second):
        assert done["node"] == socket.gethostname() and done["node_ip"] == "127.0.0.1"
        assert len(runs.read_metrics(runs.run_path(done["run_id"]))) == 1
    assert runs.parse_time(done_second["started_at"]) >= runs.parse_time(done_first["ended_at"])


@connected_cluster_test
def test_a_sigkilled_ray_worker_is_marked_failed_within_45_seconds(ray_env):
    run_id = submit(ray_env, LONG_JOB)
    wait_until(lambda: state_of(run_id) == runs.RUNNING, what="the job to start")
    before = jobs.status(run_id)
    os.kill(int(before["pid"]), signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: state_of(run_id) == runs.FAILED, timeout=KILL_DETECTION_SECONDS,
               interval=0.5, what="the killed job to be marked failed")
    assert time.monotonic() - killed_at < KILL_DETECTION_SECONDS
    failed = jobs.status(run_id)
    assert failed["failure_detected_by"] == "watcher" and failed["error"]
    # Ray's own view (what a job on another node relies on) names the dead worker too.
    wait_until(lambda: (ray_backend.actor_record(before["ray_actor_id"]) or {}).get("State") == "DEAD",
               timeout=KILL_DETECTION_SECONDS, what="Ray to see the actor dead")
    assert ray_backend.ray_death_reason(before).startswith("the Ray worker running this job died")


@connected_cluster_test
def test_pages_show_a_live_ray_job_and_its_queue_then_cancel_stops_both(ray_env):
    ray = ray_env["ray"]
    running = submit(ray_env, LONG_JOB)
    queued = submit(ray_env, LONG_JOB)
    wait_until(lambda: state_of(running) == runs.RUNNING, what="the first job to start")

    home = run_page("pages/home.py")
    assert not home.exception
    metrics = {metric.label: metric.value for metric in home.metric}
    assert metrics["Nodes"] == "1" and metrics["Busy slots"] == "1" and metrics["Free slots"] == "0"
    assert metrics["Queued jobs"] == "1"
    nodes = [frame.value for frame in home.dataframe if "slots" in frame.value.columns][0]
    assert nodes.to_dict("records") == [{"node": socket.gethostname(), "address": "127.0.0.1",
                                         "CPUs": 2, "GPUs": 0, "slots": 1, "busy": 1, "free": 0}]

    live = run_page("pages/train_lenet.py", train_lenet_run_id=running)
    assert not live.exception
    text = " ".join(item.value for item in live.markdown)
    assert "**Running**" in text and f"node `{socket.gethostname()}`" in text

    waiting = run_page("pages/train_lenet.py", train_lenet_run_id=queued)
    assert not waiting.exception
    assert waiting.info[0].value.startswith("Queued on the lab cluster (position 1)")

    table = run_page("pages/runs.py").dataframe[0].value
    assert table.set_index("run").loc[running, "node"] == socket.gethostname()

    # Cancel: the queued job leaves Ray's queue at once; the running one stops after a batch.
    queued_status = jobs.status(queued)
    assert queued_status["state"] == runs.QUEUED
    assert jobs.cancel(queued)["state"] == runs.CANCELLED
    with pytest.raises(ValueError):  # the pending actor is gone from Ray
        ray.get_actor(queued_status["ray_actor"], namespace=ray_backend.NAMESPACE)
    cancel_time = time.monotonic()
    jobs.cancel(running)
    wait_until(lambda: state_of(running) == runs.CANCELLED, timeout=CANCEL_SECONDS,
               what="the running job to stop")
    assert time.monotonic() - cancel_time < CANCEL_SECONDS
    assert len(runs.read_metrics(runs.run_path(running))) < LONG_JOB["epochs"]
    assert runs.read_status(runs.run_path(queued)).get("started_at") is None
    wait_until(lambda: ray.available_resources().get("CPU", 0) >= RAY_CPUS, timeout=CANCEL_SECONDS,
               what="the cancelled job's actor to free its CPUs")


@connected_cluster_test
def test_a_queued_run_whose_actor_ray_never_heard_of_is_failed_by_refresh_all(ray_env):
    # e.g. the private 127.0.0.1 Ray ended with the previous app, taking its queue along
    run_dir = _fake_run(ray_env["runs"], runs.QUEUED, "ray", time.time() - 3600)
    runs.update_status(run_dir, ray_actor="tllab-job-gone", ray_actor_id="ab" * 16)
    fresh = _fake_run(ray_env["runs"], runs.QUEUED, "ray", time.time())  # being submitted now
    assert jobs.refresh_all() == 1
    failed = runs.read_status(run_dir)
    assert failed["state"] == runs.FAILED
    assert failed["error"].startswith("the Ray cluster has no record of this job's actor")
    assert runs.read_status(fresh)["state"] == runs.QUEUED


@connected_cluster_test
def test_another_process_on_the_same_runs_root_joins_the_apps_private_ray(ray_env):
    first = submit(ray_env, LONG_JOB)
    second = submit(ray_env, LONG_JOB)
    ray_backend.record_local_cluster()  # what connect() does after starting the private Ray
    script = ("import sys; from core import jobs; "
              "print(jobs.status(sys.argv[1])['state'], jobs.cancel(sys.argv[2])['state'])")
    result = subprocess.run([sys.executable, "-c", script, first, second], cwd=REPO_ROOT,
                            env=dict(os.environ), capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    # Alone, that process would have started its own Ray, found no actor and failed the job.
    assert result.stdout.split()[0] in jobs.ACTIVE_STATES and result.stdout.split()[1] == "cancelled"
    assert state_of(first) in jobs.ACTIVE_STATES
    assert state_of(second) == runs.CANCELLED
    with pytest.raises(ValueError):  # its pending actor left this cluster's queue
        ray_env["ray"].get_actor(jobs.status(second)["ray_actor"], namespace=ray_backend.NAMESPACE)
