"""The run report: one component that shows any run folder (Runs, Train and Transfer pages).

``run_report(run_dir, key_prefix)`` renders, top to bottom:

* status, device and duration;
* live curves while the run is queued or running (``ui.training.live_run``'s fragment);
* the test/val figures and the learning curves once it has ended;
* the config as a diff against its preset / family defaults (``core.reports.config_diff``);
* confusion matrix and per-class accuracy with class names, and a misclassified gallery
  (true → predicted, confidence) on the test split, or on the validation split when the run
  has no test split; the report says which;
* the log tail and download buttons for the run's files.

Everything it reads comes from ``core.reports`` and ``core.runs``; nothing here writes a run folder
except the cancel button of the live view.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs, reports, runs
from core.charts import training as training_charts
from core.datasets.download import human_bytes
from ui import training as training_ui

GALLERY_COLUMNS = 8
GALLERY_IMAGE_WIDTH = 96
GALLERY_LIMIT = 32


def _format(value) -> str:
    return "–" if value is None else str(value)


@st.cache_data(show_spinner="Loading the misclassified images…", max_entries=8)
def _gallery_images(config: dict, split: str, file_names: tuple[str, ...]) -> list:
    return reports.load_split_images(config, split, file_names)


def header(run_dir: Path, status: dict) -> None:
    """State, device and duration of a run, with its error when it failed."""
    duration = training_ui.format_duration(reports.run_duration_seconds(status))
    st.markdown(f"{training_ui.state_line(status)} · run `{run_dir.name}` · duration {duration}")
    if status.get("state") == runs.FAILED:
        st.error(f"Failed: {status.get('error') or 'unknown error'}")
    elif status.get("state") == runs.CANCELLED:
        st.warning("Cancelled. Epochs finished before the cancel are kept.")


def figures(results: dict, metrics, reference_test_accuracy=None) -> None:
    """Test accuracy (or validation when there is no test split), best val, images, parameters."""
    columns = st.columns(4)
    test_accuracy = results.get("test_accuracy")
    delta = None
    if test_accuracy is not None and reference_test_accuracy is not None:
        delta = f"{(test_accuracy - reference_test_accuracy) * 100:+.1f} pt vs study"
    columns[0].metric("Test accuracy", f"{test_accuracy:.2%}" if test_accuracy is not None else "–",
                      delta=delta, help=None if test_accuracy is not None else "No test split")
    best = results.get("best_val_accuracy")
    if best is None and len(metrics) and metrics["val_accuracy"].notna().any():
        best = float(metrics["val_accuracy"].max())
    columns[1].metric("Best val accuracy", f"{best:.2%}" if best is not None else "–")
    images = results.get("num_test_images") or results.get("num_val_images")
    columns[2].metric("Test images" if results.get("num_test_images") else "Validation images",
                      images or "–")
    columns[3].metric("Trainable parameters", f"{results['trainable_params']:,}"
                      if results.get("trainable_params") is not None else "–")


def config_section(config: dict, key_prefix: str) -> None:
    """The settings that differ from the run's preset / family defaults, and the full config."""
    defaults, label = reports.reference_defaults(config)
    changes = reports.config_diff(config, defaults)
    st.markdown(f"**Configuration** · differences from the defaults of {label}"
                if defaults is not None else f"**Configuration** · {label}")
    if changes:
        table = pd.DataFrame([{"setting": change.setting, "this run": _format(change.value),
                               "default": _format(change.default)} for change in changes])
        st.dataframe(table, hide_index=True, width="stretch", key=f"{key_prefix}_config_diff")
    else:
        st.caption("Every setting is the default.")
    with st.expander("Full config.json"):
        st.json(config, expanded=False)


def misclassified_gallery(config: dict, view: reports.EvaluationView, *, limit: int = GALLERY_LIMIT) -> None:
    """A grid of the most confident mistakes: image, true → predicted name, confidence."""
    mistakes = (view.misclassified or [])[:limit]
    if not mistakes:
        st.caption(f"No misclassified {view.title} images.")
        return
    try:
        images = _gallery_images(config, view.split, tuple(str(item["file_name"]) for item in mistakes))
    except (ValueError, OSError) as error:
        st.caption(f"The {view.title} images are not available on this machine ({error}).")
        return
    columns = st.columns(GALLERY_COLUMNS)
    for position, (item, image) in enumerate(zip(mistakes, images)):
        caption = (f"{view.class_name(item['true'])} → {view.class_name(item['predicted'])} "
                   f"({item['confidence']:.0%})")
        with columns[position % GALLERY_COLUMNS]:
            if image is None:
                st.caption(f"{item['file_name']} (image not found): {caption}")
            else:
                st.image(image, caption=caption, width=GALLERY_IMAGE_WIDTH)


def evaluation_section(config: dict, results: dict, class_names, key_prefix: str) -> None:
    """Confusion matrix, per-class accuracy and the misclassified gallery, on one named split."""
    view = reports.evaluation_view(results, class_names)
    if view.split is None:
        st.info("This run stored no per-class scores.")
        return
    if view.split == reports.VAL_SPLIT:
        st.info("This run has no test split, so the matrix, the per-class accuracy and the gallery "
                "below use the **validation** split (the images that picked the best epoch, so "
                "they flatter the model a little).", icon=":material/info:")
    else:
        st.caption("The matrix, the per-class accuracy and the gallery use the **test** split.")
    if view.confusion_matrix is not None:
        st.plotly_chart(training_charts.confusion_matrix(
            view.confusion_matrix, view.class_names, title=f"Confusion matrix ({view.title})"),
            key=f"{key_prefix}_confusion", width="stretch")
    if view.per_class_accuracy is not None:
        st.plotly_chart(training_charts.per_class_accuracy(
            view.per_class_accuracy, view.class_names, title=f"Accuracy per class ({view.title})"),
            key=f"{key_prefix}_per_class", width="stretch")
    if view.misclassified is not None:
        st.subheader(f"Misclassified {view.title} images")
        st.caption("Most confident mistakes first: true class → predicted class (confidence).")
        misclassified_gallery(config, view)


def files_section(run_dir: Path, key_prefix: str) -> None:
    """The log tail and one download button per file of the run."""
    log_tail = reports.read_log_tail(run_dir)
    if log_tail is not None:
        with st.expander("Log (end)"):
            st.code(log_tail, language=None)
    found = reports.downloadable_files(run_dir)
    if found:
        columns = st.columns(len(found))
        for column, (name, path, size, mime) in zip(columns, found):
            column.download_button(
                f"{name} ({human_bytes(size)})", data=lambda path=path: path.read_bytes(),
                file_name=f"{run_dir.name}-{name}" if name != runs.MODEL_FILE else f"{run_dir.name}.keras",
                mime=mime, key=f"{key_prefix}_download_{name}", icon=":material/download:",
                on_click="ignore",
            )
    # export: ui.export.export_panel(run_dir, key_prefix)


def run_report(run_dir, key_prefix: str, *, reference_val_accuracy=None,
               reference_name: str = "reference (val)", reference_test_accuracy=None,
               reference_band=None) -> None:
    """Shows one run folder as a report; polls it while the run is active.

    Args:
        run_dir: the run folder (a path under the runs root).
        key_prefix: prefix of every widget key (one per place on a page).
        reference_val_accuracy: a reference validation curve drawn dashed (e.g. the study's).
        reference_name: that curve's legend name.
        reference_test_accuracy: a reference test accuracy shown as the metric's delta.
        reference_band: a ``core.results.SeedSpread`` drawn as a band on the curves (or None).
    """
    run_dir = Path(run_dir)
    try:
        status = jobs.status(run_dir.name, run_dir.parent)
        config = runs.read_config(run_dir)
    except (runs.RunError, OSError) as error:
        st.warning(f"Run {run_dir.name} cannot be read: {error}")
        return
    if status.get("state") in jobs.ACTIVE_STATES:
        training_ui.live_run(run_dir.name, key=f"{key_prefix}_live",
                             reference_val_accuracy=reference_val_accuracy,
                             reference_name=reference_name, reference_band=reference_band)
        config_section(config, key_prefix)
        files_section(run_dir, key_prefix)
        return
    header(run_dir, status)
    results = runs.read_results(run_dir) or {}
    metrics = runs.read_metrics(run_dir)
    figures(results, metrics, reference_test_accuracy)
    budget_note = reports.time_budget_note(results)
    if budget_note:
        st.caption(budget_note)
    st.plotly_chart(training_charts.learning_curves(metrics, reference_val_accuracy,
                                                    reference_name=reference_name,
                                                    reference_band=reference_band),
                    key=f"{key_prefix}_curves", width="stretch")
    config_section(config, key_prefix)
    if results:
        evaluation_section(config, results, runs.read_class_names(run_dir), key_prefix)
    else:
        st.info("No results.json: the run ended before it was evaluated.")
    files_section(run_dir, key_prefix)
