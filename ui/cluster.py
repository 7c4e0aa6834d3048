"""Streamlit helpers for where jobs run: the lab cluster (Ray backend) or this machine.

* ``queue_message(run_id, status)``: the sentence a queued run shows ("queued on the lab
  cluster (position N)" for Ray, the local slot queue otherwise).
* ``show_queued(run_id, status)``: that sentence as an info box (the Train and Transfer pages'
  live panels call it through ``ui.training``).
* ``cluster_panel(key=...)``: the Home page's view of the cluster: nodes, GPUs, free/busy slots.

Only ``core.job_backends`` is called; nothing here writes into a run folder.
"""

from __future__ import annotations

import streamlit as st

from core import job_backends, runs

CLUSTER_TTL_SECONDS = 5
LOCAL_QUEUE_TEXT = ("Queued: waiting for a free training slot (one job per GPU, or one at a time "
                    "on a CPU-only machine).")


def queue_message(run_id: str, status: dict) -> str:
    """What a QUEUED run is waiting for, in one sentence.

    Args:
        run_id: the run.
        status: its status dict (``backend`` says which queue it waits in).

    Returns:
        Markdown text.
    """
    if job_backends.run_backend(status) != job_backends.RAY:
        return LOCAL_QUEUE_TEXT
    from core.job_backends import ray_backend

    try:
        position = ray_backend.queue_position(runs.run_path(run_id))
    except (runs.RunError, OSError):
        position = None
    where = f" (position {position})" if position else ""
    return (f"Queued on the lab cluster{where}: it starts as soon as a machine of the cluster has "
            "a free slot.")


def show_queued(run_id: str, status: dict) -> None:
    """An info box saying where a QUEUED run waits."""
    st.info(queue_message(run_id, status), icon=":material/hourglass_top:")


@st.cache_data(ttl=CLUSTER_TTL_SECONDS, show_spinner=False)
def _cluster_summary(runs_root: str) -> dict:
    from core.job_backends import ray_backend

    return ray_backend.cluster_summary(runs_root)


def cluster_panel(key: str = "cluster") -> None:
    """Where training jobs run: the Ray cluster's nodes and slots, or a line for this machine.

    Args:
        key: prefix of element keys.
    """
    try:
        backend = job_backends.backend_name()
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    if backend != job_backends.RAY:
        st.caption("Training jobs run on this machine (`TLLAB_JOB_BACKEND=local`); a lab can "
                   "spread them over a Ray cluster, see the README's lab guide.")
        return
    from core import paths
    from core.job_backends import ray_backend

    try:
        summary = _cluster_summary(str(paths.runs_dir()))
    except (ray_backend.RayUnavailableError, ValueError) as error:
        st.error(f"The lab cluster is not available: {error}", icon=":material/error:")
        return
    st.caption(f"Training jobs run on the lab cluster ({summary['address']}); each job reserves "
               f"{_describe_job(summary['job_resources'])}.")
    columns = st.columns(5)
    columns[0].metric("Nodes", len(summary["nodes"]))
    columns[1].metric("GPUs", summary["gpus"])
    columns[2].metric("Free slots", summary["free"])
    columns[3].metric("Busy slots", summary["busy"])
    columns[4].metric("Queued jobs", summary["queued"])
    st.dataframe(summary["nodes"], hide_index=True, key=f"{key}_nodes")


def _describe_job(resources: dict) -> str:
    cpus = float(resources.get("num_cpus") or 0)
    text = f"{cpus:g} CPU" + ("s" if cpus != 1 else "")
    if resources.get("num_gpus"):
        text = f"1 GPU and {text}"
    return text
