"""Reusable Streamlit widgets for training runs (the LeNet and transfer pages share them).

* ``live_run(run_id, key=...)``: state, device, progress within the epoch, ETA, live learning
  curves and a cancel button, refreshed by an ``@st.fragment(run_every=...)`` that only reads the
  run folder. When the run ends it reruns the page once, so the page can show the results.
* ``run_results(run_id, key=...)``: test accuracy, curves, confusion matrix with class names on
  hover, per-class accuracy bars and a gallery of misclassified test images.

Nothing here writes into a run folder except ``core.jobs.cancel``.
"""

from __future__ import annotations

import math

import streamlit as st

from core import jobs, runs
from core.charts import training as training_charts

POLL_SECONDS = 2.0
GALLERY_COLUMNS = 8
GALLERY_IMAGE_WIDTH = 96
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
               was_active: bool) -> None:
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
        st.info("Queued: waiting for a free training slot (one job per GPU, or one at a time "
                "on a CPU-only machine).", icon=":material/hourglass_top:")
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
                                             total_epochs=summary["total_epochs"] or None)
    st.plotly_chart(figure, key=f"{key}_curves", width="stretch")
    if len(metrics):
        last = metrics.iloc[-1]
        st.caption(f"{len(metrics)} epoch(s) done · last val_accuracy {last['val_accuracy']:.4f}"
                   f" · {last['epoch_seconds']:.1f} s per epoch")


def live_run(run_id: str, *, key: str = "live", reference_val_accuracy=None,
             reference_name: str = "reference (val)", poll_seconds: float = POLL_SECONDS,
             show_cancel: bool = True) -> None:
    """Shows a run while it trains; polls its folder every ``poll_seconds``.

    Args:
        run_id: the run to show.
        key: prefix of widget keys (use a different one per place on a page).
        reference_val_accuracy: a reference validation curve drawn dashed (e.g. the study's).
        reference_name: the reference curve's legend name.
        poll_seconds: refresh period of the fragment.
        show_cancel: offer a cancel button while the run is queued or running.
    """
    status = _read_status(run_id)
    if status is None:
        return
    arguments = (run_id, key, reference_val_accuracy, reference_name, show_cancel)
    if status["state"] in runs.TERMINAL_STATES:
        _live_body(*arguments, False)  # a finished run: draw once, no polling
        return
    st.fragment(run_every=poll_seconds)(_live_body)(*arguments, True)


@st.cache_data(show_spinner="Loading the misclassified test images…", max_entries=8)
def _images_by_file_name(dataset: str, image_size: int, file_names: tuple[str, ...]) -> list:
    """The test images with these file names, in order (None where not found)."""
    from core import datasets

    split = datasets.load(dataset, "test", image_size)
    index = {name: position for position, name in enumerate(split.file_names)}
    return [split.images[index[name]] if name in index else None for name in file_names]


def misclassified_gallery(run_id: str, results: dict, config: dict, *, key: str = "gallery",
                          limit: int = 32) -> None:
    """A grid of the most confident mistakes on the test split, with true and predicted labels."""
    mistakes = (results.get("misclassified") or [])[:limit]
    if not mistakes:
        st.caption("No misclassified test images.")
        return
    names = results.get("class_names") or runs.read_class_names(runs.run_path(run_id)) or []
    size = int((config.get("preprocessing") or {}).get("image_size") or config.get("image_size") or 32)
    try:
        images = _images_by_file_name(str(config.get("dataset")), size,
                                      tuple(str(item["file_name"]) for item in mistakes))
    except (ValueError, OSError) as error:
        st.caption(f"The test images are not available on this machine ({error}).")
        return

    def label(index: int) -> str:
        return names[index] if 0 <= index < len(names) else str(index)

    columns = st.columns(GALLERY_COLUMNS)
    for position, (item, image) in enumerate(zip(mistakes, images)):
        with columns[position % GALLERY_COLUMNS]:
            caption = (f"true: {label(item['true'])} · predicted: {label(item['predicted'])} "
                       f"({item['confidence']:.0%})")
            if image is None:
                st.caption(f"{item['file_name']} (image not found) — {caption}")
            else:
                st.image(image, caption=caption, width=GALLERY_IMAGE_WIDTH)


def run_results(run_id: str, *, key: str = "results", reference_val_accuracy=None,
                reference_name: str = "reference (val)", reference_test_accuracy=None) -> None:
    """Shows a finished run: figures, curves, confusion matrix, per-class bars, mistakes.

    Args:
        run_id: the run.
        key: prefix of widget keys.
        reference_val_accuracy: reference validation curve to overlay.
        reference_name: its legend name.
        reference_test_accuracy: a reference test accuracy shown as the metric's delta.
    """
    status = _read_status(run_id)
    if status is None:
        return
    run_dir = runs.run_path(run_id)
    config = runs.read_config(run_dir)
    results = runs.read_results(run_dir) or {}
    metrics = runs.read_metrics(run_dir)
    st.markdown(f"{state_line(status)} · run `{run_id}`")
    if status["state"] == runs.FAILED:
        st.error(f"Failed: {status.get('error') or 'unknown error'}")
    show_warnings(status, results)
    columns = st.columns(4)
    test_accuracy = results.get("test_accuracy")
    delta = None
    if test_accuracy is not None and reference_test_accuracy is not None:
        delta = f"{(test_accuracy - reference_test_accuracy) * 100:+.1f} pt vs study"
    columns[0].metric("Test accuracy", f"{test_accuracy:.2%}" if test_accuracy is not None else "–",
                      delta=delta)
    best = results.get("best_val_accuracy")
    if best is None and len(metrics) and metrics["val_accuracy"].notna().any():
        best = float(metrics["val_accuracy"].max())
    columns[1].metric("Best val accuracy", f"{best:.2%}" if best is not None else "–")
    columns[2].metric("Test images", results.get("num_test_images") or "–")
    columns[3].metric("Trainable parameters", f"{results['trainable_params']:,}"
                      if results.get("trainable_params") is not None else "–")
    st.plotly_chart(training_charts.learning_curves(metrics, reference_val_accuracy,
                                                    reference_name=reference_name),
                    key=f"{key}_curves", width="stretch")
    if not results:
        st.info("No results.json: the run ended before it was evaluated.")
        return
    names = results.get("class_names") or []
    matrix = results.get("confusion_matrix")
    per_class = results.get("per_class_accuracy")
    split_name = "test"
    if matrix is None and results.get("val_confusion_matrix") is not None:
        matrix, per_class, split_name = (results["val_confusion_matrix"],
                                         results.get("val_per_class_accuracy"), "validation")
    if matrix is not None:
        st.plotly_chart(training_charts.confusion_matrix(matrix, names,
                                                         title=f"Confusion matrix ({split_name})"),
                        key=f"{key}_confusion", width="stretch")
    if per_class is not None:
        st.plotly_chart(training_charts.per_class_accuracy(per_class, names,
                                                           title=f"Accuracy per class ({split_name})"),
                        key=f"{key}_per_class", width="stretch")
    if results.get("misclassified") is not None:
        st.subheader("Misclassified test images")
        misclassified_gallery(run_id, results, config, key=f"{key}_gallery")
