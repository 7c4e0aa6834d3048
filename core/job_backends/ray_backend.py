"""The Ray job backend: each training job is a detached Ray actor on the lab cluster.

``core.jobs.submit/status/cancel`` call this module for runs whose ``status.json["backend"]`` is
``"ray"``; the run folders stay the same (the runs root must be shared storage, e.g. NFS, mounted
at the same path on every node).

* Cluster: ``TLLAB_RAY_ADDRESS`` (``ray://head:10001``, ``HOST:PORT`` or ``auto``) names it;
  without it, ``connect()`` starts a private Ray bound to 127.0.0.1 that ends with this process,
  and records its address in ``RUNS_ROOT/.ray-local-cluster.json``: other processes on the same
  runs root (the CLI, a second server) join that Ray while the process that started it lives.
* Scheduling: a job reserves one GPU when the cluster has GPUs; otherwise the CPUs of the
  smallest node (so a 2-core node runs one job at a time, like the local queue).
  ``TLLAB_RAY_JOB_CPUS`` overrides the CPU count. Jobs wait in Ray's own queue (a pending actor)
  until a node has those resources free; nothing here polls for slots.
* Each job runs ``core.worker.run_scheduled`` (the same trainer and heartbeat as the local
  worker) inside its actor's process, then the actor exits and frees its resources.
* Death: ``status`` asks Ray about the job's actor; a dead actor (worker killed, node lost, out of
  memory) marks the run FAILED with Ray's reason. A RUNNING job is also watched by its heartbeat
  and pid, like local ones.
* Cancel: a queued job's actor is killed at once (it leaves Ray's queue); a running job gets
  ``cancel.request`` and stops after the current batch, and is killed through Ray if it has not
  stopped ``CANCEL_GRACE_SECONDS`` later.

Ray is optional (``requirements-ray.txt``): it is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import time
from pathlib import Path

from core import environment, jobs, paths, runs
from core.files import write_json_atomic
from core.processes import pid_alive, process_start_ticks

ADDRESS_ENV = "TLLAB_RAY_ADDRESS"
JOB_CPUS_ENV = "TLLAB_RAY_JOB_CPUS"
NAMESPACE = "tllab"
ACTOR_PREFIX = "tllab-job"
BACKEND_NAME = "ray"
CANCEL_GRACE_SECONDS = 20.0
# A run created but not yet handed to Ray (its submitter is between two writes) looks alive this long.
SUBMIT_GRACE_SECONDS = 60.0
# Ray binds every port to 127.0.0.1 when it believes it runs on a laptop (its own switch).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL_CLUSTER_LABEL = "local Ray on 127.0.0.1"
LOCAL_CLUSTER_FILE = ".ray-local-cluster.json"
ACTIVE_STATES = (runs.QUEUED, runs.RUNNING)
FORWARDED_ENV_PREFIXES = ("TLLAB_", "KERAS_", "TF_")
RAY_INSTALL_HINT = ("Ray is not installed: `pip install -r requirements-ray.txt` (or `make run RAY=1`), "
                    "or set TLLAB_JOB_BACKEND=local")
_CONNECT_LOCK = threading.Lock()


class RayUnavailableError(ValueError):
    """Ray is not installed, or the cluster cannot be reached.

    A ``ValueError`` like every other reason ``core.jobs.submit`` cannot start a job, so the pages
    show it as "Cannot start: ...".
    """


# --- connection ---------------------------------------------------------------------------------

def is_installed() -> bool:
    """Whether the ``ray`` package can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise RayUnavailableError(RAY_INSTALL_HINT) from error
    return ray


def is_connected() -> bool:
    """Whether this process is already connected to a Ray cluster (never connects)."""
    if not is_installed():
        return False
    import ray

    return ray.is_initialized()


def start_local(num_cpus: int | None = None, num_gpus: int | None = None):
    """Starts a Ray cluster of one node on 127.0.0.1, owned by this process.

    Every Ray port listens on the loopback only, and Ray stops its processes when this process
    exits (``ray.shutdown()`` stops them earlier).

    Args:
        num_cpus: CPUs Ray may schedule; default all of this machine's.
        num_gpus: GPUs Ray may schedule; default the visible ones.

    Returns:
        The ``ray`` module, connected.
    """
    os.environ[LOOPBACK_ENV] = "0"
    ray = _import_ray()
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time; the env var only at import
    ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, num_gpus=num_gpus,
             namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    return ray


def record_local_cluster(runs_root=None) -> Path:
    """Writes this process's private Ray address into the runs root, for other processes.

    Returns:
        The file written (``RUNS_ROOT/.ray-local-cluster.json``).
    """
    import ray

    path = paths.runs_dir(runs_root) / LOCAL_CLUSTER_FILE
    pid = os.getpid()
    write_json_atomic(path, {"address": ray.get_runtime_context().gcs_address, "pid": pid,
                             "pid_start_ticks": process_start_ticks(pid),
                             "host": socket.gethostname()})
    return path


def recorded_local_cluster(runs_root=None) -> str | None:
    """The address of a private Ray that a live process on this host started for the runs root."""
    path = paths.runs_dir(runs_root) / LOCAL_CLUSTER_FILE
    try:
        record = runs.read_json(path)
    except (OSError, ValueError, runs.RunError):
        return None
    if not isinstance(record, dict) or record.get("host") != socket.gethostname():
        return None
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid, record.get("pid_start_ticks")):
        return None
    return str(record.get("address") or "") or None


def connect(address: str | None = None):
    """Connects this process to the lab cluster once, and returns the ``ray`` module.

    Args:
        address: the cluster (``ray://head:10001``, ``HOST:PORT``, ``auto``); default
            ``TLLAB_RAY_ADDRESS``; without either, the private Ray that another live process
            started for this runs root, else a new private Ray on 127.0.0.1.

    Returns:
        The ``ray`` module, connected.

    Raises:
        RayUnavailableError: when Ray is not installed or the cluster cannot be reached.
    """
    ray = _import_ray()
    with _CONNECT_LOCK:
        if ray.is_initialized():
            return ray
        address = address or os.environ.get(ADDRESS_ENV) or None
        shared = None if address else recorded_local_cluster()
        try:
            if address or shared:
                if shared:
                    os.environ[LOOPBACK_ENV] = "0"  # the private Ray listens on 127.0.0.1 only
                ray.init(address=address or shared, namespace=NAMESPACE, log_to_driver=False,
                         configure_logging=False)
            else:
                start_local()
                record_local_cluster()
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RayUnavailableError(
                f"cannot reach the Ray cluster at {address or LOCAL_CLUSTER_LABEL}: {error}"
            ) from error
    return ray


# --- resources ----------------------------------------------------------------------------------

def job_cpus_override() -> float | None:
    """``TLLAB_RAY_JOB_CPUS`` as a positive number, or None when unset."""
    return environment.positive_float_env(JOB_CPUS_ENV, None, "CPUs")


def job_resources(node_resources: list[dict], job_cpus: float | None = None) -> dict:
    """What one job reserves on the cluster.

    Args:
        node_resources: each alive node's total resources (Ray's ``{"CPU": 2.0, "GPU": 1.0, ...}``).
        job_cpus: CPUs per job; default ``TLLAB_RAY_JOB_CPUS``, else 1 with GPUs, else the
            smallest node's CPU count.

    Returns:
        ``{"num_cpus": ..., "num_gpus": ...}`` for ``.options(...)`` of a Ray actor.

    Raises:
        ValueError: when there is no node with CPUs.
    """
    if job_cpus is None:
        job_cpus = job_cpus_override()
    cpu_counts = [float(node.get("CPU", 0)) for node in node_resources if node.get("CPU", 0) > 0]
    if not cpu_counts:
        raise ValueError(f"the Ray cluster has no node with CPUs, received {node_resources!r}")
    if any(float(node.get("GPU", 0)) >= 1 for node in node_resources):
        return {"num_cpus": float(job_cpus or 1), "num_gpus": 1}
    return {"num_cpus": float(job_cpus or min(cpu_counts)), "num_gpus": 0}


def slots_on_node(node_total: dict, resources: dict) -> int:
    """How many jobs needing ``resources`` fit on a node with ``node_total`` resources.

    Args:
        node_total: Ray resources of the node, e.g. ``{"CPU": 8.0, "GPU": 2.0}``.
        resources: a job's ``{"num_cpus": ..., "num_gpus": ...}``.

    Returns:
        A count (0 when the node is too small).
    """
    counts = []
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        need = float(resources.get(key) or 0)
        if need > 0:
            counts.append(math.floor(float(node_total.get(resource, 0)) / need + 1e-9))
    return max(0, min(counts)) if counts else 0


def alive_nodes(ray) -> list[dict]:
    """Ray's alive nodes: ``ray.nodes()`` entries with ``Alive`` true."""
    return [node for node in ray.nodes() if node.get("Alive")]


# --- run folders and actors -------------------------------------------------------------------

def actor_name(run_dir) -> str:
    """The job actor's name: the run id plus a hash of its folder (unique across runs roots)."""
    run_dir = Path(run_dir).resolve()
    digest = hashlib.sha1(str(run_dir).encode("utf-8")).hexdigest()[:10]
    return f"{ACTOR_PREFIX}-{run_dir.name}-{digest}"


def actor_environment(runs_root=None) -> dict:
    """Environment variables for a job's actor: absolute roots, the repository on PYTHONPATH."""
    forwarded = {name: value for name, value in os.environ.items()
                 if name.startswith(FORWARDED_ENV_PREFIXES)}
    forwarded[paths.RUNS_DIR_ENV] = str(paths.runs_dir(runs_root))
    forwarded[paths.DATA_DIR_ENV] = str(paths.data_dir())
    forwarded["PYTHONPATH"] = str(paths.REPO_ROOT)
    forwarded["PYTHONUNBUFFERED"] = "1"
    forwarded.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return forwarded


class JobRunner:
    """A job's Ray actor: trains one run folder through ``core.worker.run_scheduled``, then exits.

    Args:
        run_dir: the QUEUED run folder (on storage every node mounts at the same path).
    """

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    def run(self) -> str:
        import ray

        from core import worker

        context = ray.get_runtime_context()
        fields = {"backend": BACKEND_NAME, "node": socket.gethostname(),
                  "node_ip": ray.util.get_node_ip_address(), "ray_node_id": context.get_node_id()}
        try:
            return worker.run_scheduled(self.run_dir, **fields)
        finally:
            ray.actor.exit_actor()  # frees the job's CPUs/GPU for the next job in Ray's queue


def submit(run_dir, runs_root=None) -> dict:
    """Queues a created (QUEUED) run on the cluster as a detached actor.

    Args:
        run_dir: the run folder made by ``core.jobs.create_job``.
        runs_root: the runs root; default ``core.paths.runs_dir()``.

    Returns:
        The status after submission (``backend``, ``ray_actor``, ``ray_actor_id``, resources).

    Raises:
        RayUnavailableError: when Ray is missing or unreachable (the run is marked FAILED);
        ValueError: when the cluster has no node with CPUs (likewise).
    """
    run_dir = Path(run_dir)
    try:
        ray = connect()
        resources = job_resources([node.get("Resources", {}) for node in alive_nodes(ray)])
        name = actor_name(run_dir)
        runner = ray.remote(JobRunner).options(
            name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=0,
            max_task_retries=0, runtime_env={"env_vars": actor_environment(runs_root)}, **resources)
        actor = runner.remote(str(run_dir.resolve()))
        actor.run.remote()
    except ValueError as error:  # RayUnavailableError included
        runs.update_status(run_dir, only_if_state=ACTIVE_STATES, state=runs.FAILED,
                           error=f"could not queue the job on the Ray cluster: {error}",
                           ended_at=runs.utc_now())
        raise
    updated = runs.update_status(run_dir, backend=BACKEND_NAME, ray_actor=name,
                                 ray_actor_id=actor._actor_id.hex(), ray_resources=resources)
    return updated if updated is not None else runs.read_status(run_dir)


def actor_record(actor_id: str | None) -> dict | None:
    """Ray's record of an actor (``State``, ``DeathCause``, ``Address``...), or None if unknown."""
    if not actor_id:
        return None
    from ray._private import state as ray_state

    try:
        record = ray_state.actors(actor_id=actor_id)
    except Exception:  # noqa: BLE001 - a lost GCS connection must not break a status page
        return None
    return record or None


def describe_death(record: dict | None) -> str:
    """A sentence for humans on why a job's actor is dead."""
    if record is None:
        return ("the Ray cluster has no record of this job's actor (the cluster restarted, or the "
                "app that started a local Ray exited)")
    detail = ""
    cause = record.get("DeathCause")
    if cause is not None:
        for _, context in cause.ListFields():
            message = getattr(context, "error_message", "")
            if message:
                detail = " ".join(str(message).split())
                break
    node = (record.get("Address") or {}).get("IPAddress")
    where = f" on {node}" if node else ""
    text = f"the Ray worker running this job died{where} (killed, out of memory, or its node left)"
    return f"{text}: {detail[:400]}" if detail else text


def ray_death_reason(current: dict) -> str | None:
    """Why an active Ray run's actor is dead, or None while Ray shows it pending or alive."""
    if current.get("state") not in ACTIVE_STATES or not is_connected():
        return None
    if not current.get("ray_actor_id"):
        submitted = current.get("submitted_at")
        if isinstance(submitted, (int, float)) and time.time() - submitted < SUBMIT_GRACE_SECONDS:
            return None  # being submitted right now
        return "the job never reached the Ray cluster (the app stopped while submitting it?)"
    record = actor_record(current.get("ray_actor_id"))
    if record is not None and record.get("State") != "DEAD":
        return None
    return describe_death(record)


def kill_actor(current: dict) -> bool:
    """Kills a job's actor through Ray (removes a pending one from the queue); True if found."""
    if not is_connected() or not current.get("ray_actor"):
        return False
    import ray

    try:
        handle = ray.get_actor(current["ray_actor"], namespace=NAMESPACE)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True


def _cancel_overdue(run_dir, current: dict, now: float | None = None) -> bool:
    if current.get("state") != runs.RUNNING:
        return False
    try:
        requested = (Path(run_dir) / runs.CANCEL_FILE).stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - requested > CANCEL_GRACE_SECONDS


def status(run_dir, current: dict, local_death_reason) -> dict:
    """A Ray run's status, first marking it FAILED when Ray or its heartbeat says it died.

    Args:
        run_dir: the run folder.
        current: its ``status.json`` as just read.
        local_death_reason: ``core.jobs.death_reason`` (heartbeat and pid checks).

    Returns:
        The status dict, with ``backend`` ``"ray"`` and, once started, ``node``.
    """
    if current.get("state") not in ACTIVE_STATES:
        return current
    from core import job_backends

    if not is_connected() and job_backends.backend_name() == BACKEND_NAME:
        try:
            connect()
        except RayUnavailableError:
            pass  # the heartbeat still tells a dead running job; the page shows the state
    reason = ray_death_reason(current)
    if reason is None:
        reason = local_death_reason(current)
    if reason is not None:
        jobs.mark_ended(run_dir, runs.FAILED, reason)
    elif _cancel_overdue(run_dir, current):
        stopped = jobs.mark_ended(
            run_dir, runs.CANCELLED,
            f"stopped through Ray: still running {CANCEL_GRACE_SECONDS:.0f} s after the cancel",
            expected=(runs.RUNNING,))
        if stopped is not None:  # written first, so the killed actor is not taken for a death
            kill_actor(current)
    else:
        return current
    return runs.read_status(run_dir)


def cancel(run_dir, current: dict) -> dict:
    """Cancels a Ray run: a queued one leaves Ray's queue now; a running one stops after a batch.

    Args:
        run_dir: the run folder.
        current: its status after death detection.

    Returns:
        The status after the request.
    """
    if current.get("state") in runs.TERMINAL_STATES:
        return current
    runs.request_cancel(run_dir)
    cancelled = runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.CANCELLED,
                                   ended_at=runs.utc_now(), error=None)
    if cancelled is not None:
        try:
            kill_actor(current)
        except Exception:  # noqa: BLE001 - the run is cancelled; a stale actor exits on start
            pass
        return cancelled
    return runs.read_status(run_dir)


# --- queue and cluster views ------------------------------------------------------------------

def _queue_key(status_dict: dict, run_id: str) -> tuple:
    submitted = status_dict.get("submitted_at")
    return (float(submitted) if isinstance(submitted, (int, float)) else float("inf"), run_id)


def ray_runs_in_state(state: str, runs_root=None) -> list[tuple[str, dict]]:
    """The Ray runs in one state under the runs root, from their run folders (``runs.run_statuses``).

    Args:
        state: a run state, e.g. ``runs.QUEUED``.
        runs_root: the runs root (default ``paths.runs_dir()``).

    Returns:
        ``(run_id, status)`` pairs, by run id.
    """
    return [(entry.name, current) for entry, current in runs.run_statuses(paths.runs_dir(runs_root))
            if current.get("backend") == BACKEND_NAME and current.get("state") == state]


def queued_runs(runs_root=None) -> list[str]:
    """Run ids of QUEUED Ray runs under the runs root, first submitted first."""
    waiting = ray_runs_in_state(runs.QUEUED, runs_root)
    return [run_id for run_id, current in sorted(waiting, key=lambda pair: _queue_key(pair[1], pair[0]))]


def queue_position(run_dir) -> int | None:
    """1-based place of a QUEUED Ray run among the Ray runs waiting in its runs root."""
    run_dir = Path(run_dir)
    waiting = queued_runs(run_dir.parent)
    return waiting.index(run_dir.name) + 1 if run_dir.name in waiting else None


def running_by_node(runs_root=None) -> dict[str, int]:
    """How many Ray runs are RUNNING on each Ray node id (from the run folders)."""
    counts: dict[str, int] = {}
    for _, current in ray_runs_in_state(runs.RUNNING, runs_root):
        node_id = str(current.get("ray_node_id") or "")
        counts[node_id] = counts.get(node_id, 0) + 1
    return counts


def cluster_rows(nodes: list[dict], resources: dict, busy_by_node: dict[str, int]) -> list[dict]:
    """One row per alive node: name, address, CPUs, GPUs, job slots, busy and free slots.

    Args:
        nodes: ``ray.nodes()`` entries (``NodeID``, ``NodeManagerHostname``, ``Resources``...).
        resources: one job's ``{"num_cpus", "num_gpus"}``.
        busy_by_node: running jobs per node id.
    """
    rows = []
    for node in nodes:
        total = node.get("Resources") or {}
        slots = slots_on_node(total, resources)
        busy = int(busy_by_node.get(node.get("NodeID", ""), 0))
        rows.append({"node": node.get("NodeManagerHostname") or "?",
                     "address": node.get("NodeManagerAddress") or "",
                     "CPUs": int(total.get("CPU", 0)), "GPUs": int(total.get("GPU", 0)),
                     "slots": slots, "busy": busy, "free": max(0, slots - busy)})
    return rows


def cluster_summary(runs_root=None) -> dict:
    """The cluster as the Home page shows it.

    Returns:
        ``{"address", "nodes" (rows of ``cluster_rows``), "gpus", "slots", "busy", "free",
        "queued", "job_resources"}``.

    Raises:
        RayUnavailableError: when Ray is missing or unreachable.
    """
    ray = connect()
    nodes = alive_nodes(ray)
    resources = job_resources([node.get("Resources", {}) for node in nodes])
    rows = cluster_rows(nodes, resources, running_by_node(runs_root))
    return {"address": os.environ.get(ADDRESS_ENV) or LOCAL_CLUSTER_LABEL, "nodes": rows,
            "gpus": sum(row["GPUs"] for row in rows), "slots": sum(row["slots"] for row in rows),
            "busy": sum(row["busy"] for row in rows), "free": sum(row["free"] for row in rows),
            "queued": len(queued_runs(runs_root)), "job_resources": resources}
