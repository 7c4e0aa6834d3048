"""Reusable Streamlit widgets for training runs (the LeNet and transfer pages share them).

* ``live_run(run_id, key=...)``: state, device, progress within the epoch, ETA, live learning
  curves and a cancel button, refreshed by an ``@st.fragment(run_every=...)`` that only reads the
  run folder. When the run ends it reruns the page once, so the page can show the results.
* ``run_results(run_id, key=...)``: a finished run, through the one run report
  (``ui.report.run_report``: figures, curves, config diff, confusion matrix, per-class accuracy,
  misclassified gallery, log, downloads).

Nothing here writes into a run folder except ``core.jobs.cancel``.
"""

from __future__ import annotations

import math

import streamlit as st

from core import jobs, runs
from core.charts import training as training_charts
from ui import cluster as cluster_ui

POLL_SECONDS = 2.0
STATE_ICONS = {
    runs.QUEUED: ":material/hourglass_top:",
    runs.RUNNING: ":material/directions_run:",
    runs.COMPLETED: ":material/check_circle:",
    runs.FAILED: ":material/error:",
    runs.CANCELLED: ":material/cancel:",
}


def format_duration(seconds: float | None) -> str:
    """``75`` → ``"1 min 15 s"``; None → ``"–"``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _read_status(run_id: str) -> dict | None:
    try:
        return jobs.status(run_id)
    except (runs.RunError, OSError) as error:
        st.warning(f"Run {run_id} cannot be read: {error}")
        return None


def state_line(status: dict) -> str:
    """One markdown line: icon, state, device and error text."""
    state = status.get("state", "?")
    parts = [f"{STATE_ICONS.get(state, '')} **{state.capitalize()}**"]
    if status.get("device"):
        parts.append(f"on {status['device']}")
    if status.get("node"):
        parts.append(f"· node `{status['node']}`")
    return " ".join(parts)


def run_warnings(status: dict, results: dict | None = None) -> list[str]:
    """The problems a run ended with that did not fail it (``status.json["warning"]`` and
    ``results.json["warnings"]``), each once."""
    found = [str(item) for item in (results or {}).get("warnings") or []]
    if status.get("warning") and not found:
        found.append(str(status["warning"]))
    return found


def show_warnings(status: dict, results: dict | None = None) -> None:
    """Shows "completed with a warning" and each warning of a run, if any."""
    for text in run_warnings(status, results):
        st.warning(f"Completed with a warning: {text}", icon=":material/warning:")


def _live_body(run_id: str, key: str, reference, reference_name: str, show_cancel: bool,
               reference_band, was_active: bool) -> None:
    status = _read_status(run_id)
    if status is None:
        return
    run_dir = runs.run_path(run_id)
    state = status["state"]
    if was_active and state in runs.TERMINAL_STATES:
        st.rerun()  # the whole page once more: it now shows the results instead of this panel
    metrics = runs.read_metrics(run_dir)
    summary = jobs.progress(status, metrics)
    header, button = st.columns([5, 1], vertical_alignment="center")
    header.markdown(f"{state_line(status)} · run `{run_id}`")
    if show_cancel and state in jobs.ACTIVE_STATES:
        if runs.cancel_requested(run_dir):
            button.caption("Cancelling after the current batch…")
        elif button.button("Cancel", key=f"{key}_cancel", icon=":material/stop_circle:",
                           help="Stops after the current batch; what was learnt so far is kept."):
            jobs.cancel(run_id)
            st.rerun()
    if state == runs.QUEUED:
        cluster_ui.show_queued(run_id, status)
    elif state == runs.RUNNING:
        if summary["total_epochs"]:
            text = (f"Epoch {max(summary['epoch'], 1)} of {summary['total_epochs']}"
                    + (f" · batch {summary['batch']} of {summary['batches_per_epoch']}"
                       if summary["batches_per_epoch"] else "")
                    + f" · about {format_duration(summary['eta_seconds'])} left")
            st.progress(summary["epoch_fraction"], text=text)
            st.progress(summary["fraction"], text=f"Whole run: {summary['fraction']:.0%}")
        else:
            st.info("Starting: loading TensorFlow and the data…", icon=":material/downloading:")
    elif state == runs.FAILED:
        st.error(f"Failed: {status.get('error') or 'unknown error'}")
    elif state == runs.CANCELLED:
        st.warning("Cancelled. Epochs finished before the cancel are kept; the Runs page can "
                   "resume it.")
    elif state == runs.COMPLETED:
        show_warnings(status, runs.read_results(run_dir))
    figure = training_charts.learning_curves(metrics, reference, reference_name=reference_name,
                                             total_epochs=summary["total_epochs"] or None,
                                             reference_band=reference_band)
    st.plotly_chart(figure, key=f"{key}_curves", width="stretch")
    if len(metrics):
        last = metrics.iloc[-1]
        st.caption(f"{len(metrics)} epoch(s) done · last val_accuracy {last['val_accuracy']:.4f}"
                   f" · {last['epoch_seconds']:.1f} s per epoch")


def live_run(run_id: str, *, key: str = "live", reference_val_accuracy=None,
             reference_name: str = "reference (val)", poll_seconds: float = POLL_SECONDS,
             show_cancel: bool = True, reference_band=None) -> None:
    """Shows a run while it trains; polls its folder every ``poll_seconds``.

    Args:
        run_id: the run to show.
        key: prefix of widget keys (use a different one per place on a page).
        reference_val_accuracy: a reference validation curve drawn dashed (e.g. the study's).
        reference_name: the reference curve's legend name.
        poll_seconds: refresh period of the fragment.
        show_cancel: offer a cancel button while the run is queued or running.
        reference_band: a ``core.results.SeedSpread`` drawn as a band (or None).
    """
    status = _read_status(run_id)
    if status is None:
        return
    arguments = (run_id, key, reference_val_accuracy, reference_name, show_cancel, reference_band)
    if status["state"] in runs.TERMINAL_STATES:
        _live_body(*arguments, False)  # a finished run: draw once, no polling
        return
    st.fragment(run_every=poll_seconds)(_live_body)(*arguments, True)


def run_results(run_id: str, *, key: str = "results", reference_val_accuracy=None,
                reference_name: str = "reference (val)", reference_test_accuracy=None,
                reference_band=None) -> None:
    """Shows a finished run through the one run report (``ui.report.run_report``).

    Kept for the pages that call it by run id; the report itself lives in ``ui/report.py``.

    Args:
        run_id: the run.
        key: prefix of widget keys.
        reference_val_accuracy: reference validation curve to overlay.
        reference_name: its legend name.
        reference_test_accuracy: a reference test accuracy shown as the metric's delta.
        reference_band: a ``core.results.SeedSpread`` drawn as a band (or None).
    """
    from ui import report  # ui.report builds on this module's live view: import it late

    try:
        run_dir = runs.run_path(run_id)
    except (runs.RunError, ValueError) as error:
        st.warning(f"Run {run_id} cannot be read: {error}")
        return
    try:
        show_warnings(runs.read_status(run_dir), runs.read_results(run_dir))
    except runs.RunError:
        pass  # the report below says the folder is broken
    report.run_report(run_dir, key, reference_val_accuracy=reference_val_accuracy,
                      reference_name=reference_name, reference_test_accuracy=reference_test_accuracy,
                      reference_band=reference_band)
