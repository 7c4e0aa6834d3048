"""Streamlit helpers of the Transfer learning and Compare pages.

Cached readers (keyed by the runs root, so tests with their own roots never share entries),
the live run panel (``ui.training``'s widgets with the run's phase above), the comparison section,
the ImageNet weights status and the zero-shot baseline.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import paths, runs
from core.charts import compare as charts

SUMMARY_TTL_SECONDS = 2
LIVE_REFRESH_SECONDS = 2
PERCENT_FORMAT = "%.1f%%"


@st.cache_data(ttl=SUMMARY_TTL_SECONDS, show_spinner=False)
def _run_summaries(runs_root: str) -> list:
    return runs.list_runs(runs_root)


def run_summaries() -> list:
    """Every run under the current runs root, newest first (cached for a couple of seconds)."""
    return _run_summaries(str(paths.runs_dir()))


@st.cache_data(show_spinner=False, max_entries=256)
def _metrics(run_dir: str, size: int, mtime: float):
    return runs.read_metrics(run_dir)


def read_metrics(run_dir):
    """``metrics.csv`` of a run (a DataFrame, cached until the file changes), None if malformed."""
    path = Path(run_dir) / runs.METRICS_FILE
    try:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime)
    except OSError:
        key = (0, 0.0)
    try:
        return _metrics(str(run_dir), *key)
    except runs.RunError:
        return None


def _percent_columns(table):
    shown = table.copy()
    for column in ("best_val_accuracy", "test_accuracy"):
        shown[column] = shown[column].map(lambda value: None if value is None else 100.0 * value)
    return shown


def comparison_section(run_ids: list[str], x_axis: str, refresh: float | None = None) -> None:
    """Curves, the per-run table and the CSV/PNG downloads for the selected runs.

    Args:
        run_ids: runs to compare.
        x_axis: ``"epoch"`` or ``"seconds"``.
        refresh: seconds between refreshes while a run is still training (None = static).
    """

    @st.fragment(run_every=refresh)
    def body():
        summaries = [runs.summarize_run(runs.run_path(run_id)) for run_id in run_ids]
        metrics = {summary.run_id: read_metrics(summary.path) for summary in summaries}
        by_label = {summary.label: metrics[summary.run_id] for summary in summaries}
        left, right = st.columns(2)
        with left:
            st.plotly_chart(charts.curves_figure(by_label, "val_accuracy", x_axis),
                            key="compare_accuracy_chart", width="stretch")
        with right:
            st.plotly_chart(charts.curves_figure(by_label, "val_loss", x_axis),
                            key="compare_loss_chart", width="stretch")
        table = charts.comparison_table(summaries, metrics)
        st.dataframe(
            _percent_columns(table).drop(columns=["label"]), key="compare_table", hide_index=True,
            column_config={
                "best_val_accuracy": st.column_config.NumberColumn("best val acc", format=PERCENT_FORMAT),
                "test_accuracy": st.column_config.NumberColumn("test acc", format=PERCENT_FORMAT),
                charts.EPOCHS_TO_BEST_COLUMN: st.column_config.NumberColumn(
                    "epochs to 95% of best", help="First epoch whose validation accuracy reached "
                                                  "95% of the run's best"),
                "trainable_params": st.column_config.NumberColumn("trainable params", format="%d"),
                "frozen_params": st.column_config.NumberColumn("frozen params", format="%d"),
                "seconds_per_epoch": st.column_config.NumberColumn("s / epoch", format="%.2f"),
                "total_seconds": st.column_config.NumberColumn("training s", format="%.1f"),
            },
        )
        curves = charts.curves_frame(by_label)
        csv_column, png_column, _ = st.columns([1, 1, 3])
        csv_column.download_button(
            "Download comparison (CSV)", charts.comparison_csv(table, curves),
            file_name="comparison.csv", mime="text/csv", key="compare_csv", on_click="ignore",
            icon=":material/table:")
        png_column.download_button(
            "Download curves (PNG)", charts.comparison_png(by_label, x_axis),
            file_name="comparison.png", mime="image/png", key="compare_png", on_click="ignore",
            icon=":material/image:")
        st.caption("The CSV holds the table and every curve point; the PNG draws validation "
                   "accuracy and loss (made with Pillow, so it works offline). Each chart's "
                   "camera icon also saves it as PNG from the browser.")

    body()


# --- live run -------------------------------------------------------------------------------------

def live_run_panel(run_id: str, key_prefix: str = "transfer") -> None:
    """One run's report (``ui.report``, live while it runs), with its current ``phase`` above.

    The phase (weights, bottleneck features...) happens before the first epoch and would
    otherwise look like a hang.
    """
    from ui import report

    _phase_line(run_id)
    try:
        run_dir = runs.run_path(run_id)
    except (runs.RunError, ValueError) as error:
        st.error(str(error), icon=":material/error:")
        return
    report.run_report(run_dir, key_prefix)


def _phase_line(run_id: str) -> None:
    """The run's ``phase`` from ``status.json``, refreshed while it is queued or running."""

    def body():
        try:
            status = runs.read_status(runs.run_path(run_id))
        except (runs.RunError, ValueError):
            return
        if status.get("phase") and status.get("state") in (runs.QUEUED, runs.RUNNING):
            fraction = status.get("phase_progress")
            if isinstance(fraction, (int, float)):
                st.progress(min(1.0, max(0.0, float(fraction))), text=status["phase"])
            else:
                st.caption(f":material/info: {status['phase']}")

    try:
        active = runs.read_status(runs.run_path(run_id)).get("state") in (runs.QUEUED, runs.RUNNING)
    except (runs.RunError, ValueError):
        return
    if active:
        st.fragment(run_every=LIVE_REFRESH_SECONDS)(body)()


# --- ImageNet weights and the zero-shot baseline ---------------------------------------------------

def imagenet_weights_status(backbone: str) -> bool:
    """Says where the backbone's ImageNet weights come from, or how to install them.

    Returns:
        True when the no-top weights are installed (training then works offline).
    """
    from core import weights

    entry = weights.installed(backbone)
    if entry:
        st.success(f"ImageNet weights installed: `{entry['path']}` (alpha {entry['alpha']}, "
                   f"sha256 {entry['sha256'][:16]}…, from {entry['source']}, {entry['installed_at']}).",
                   icon=":material/check_circle:")
        return True
    st.info(f"ImageNet weights for {backbone} are not installed. The job downloads Keras' file when "
            f"this machine is online; otherwise install them first. {weights.offline_hint(backbone)}.",
            icon=":material/cloud_download:")
    return False


@st.cache_data(show_spinner=False, max_entries=16)
def _zero_shot(backbone: str, sha256: str, dataset: str, valid_size: int, seed: int) -> dict:
    from core import datasets, imagenet

    split = datasets.load(dataset, "val", imagenet.IMAGE_SIZE, valid_size=valid_size, seed=seed)
    from ui.imagenet import load_imagenet_classifier

    classifier = load_imagenet_classifier(backbone, sha256)
    return imagenet.zero_shot_accuracy(classifier, split.images, split.labels, split.class_names)


def zero_shot_baseline(backbone: str, dataset: str, valid_size: int, key_prefix: str = "transfer") -> None:
    """The number transfer has to beat: ImageNet's cat mass against its dog mass, no training."""
    from core import weights
    from core.datasets import registry

    if backbone == "vgg16" and not weights.installed(backbone, weights.TOP):
        st.caption("Zero-shot baseline: needs VGG16's with-top weights (553 MB); MobileNets show it.")
        return
    info = registry.get_info(dataset)
    if sorted(name.lower() for name in info.class_names) != ["cat", "dog"] or registry.status(dataset) != "ready":
        return
    entry = weights.installed(backbone, weights.TOP)
    if not entry:
        st.caption(f"Zero-shot baseline: install {backbone}'s with-top ImageNet weights to see what "
                   "ImageNet alone gets right before any training.")
        return
    if not st.toggle("Show the zero-shot baseline (ImageNet's cat vs dog classes, no training)",
                     key=f"{key_prefix}_zero_shot"):
        return
    with st.spinner(f"Classifying {valid_size} validation images with {backbone}'s 1,000 ImageNet classes…"):
        result = _zero_shot(backbone, entry["sha256"], dataset, int(valid_size), 0)
    st.metric("Zero-shot baseline (validation)", f"{100 * result['accuracy']:.1f}%",
              help="Share of validation images where the probability mass on ImageNet's 5 domestic-"
                   "cat classes (281–285) beats the mass on its 118 dog breeds (151–268), or the "
                   "reverse for dogs. The pretrained network already knows 'Egyptian cat'.")
    st.caption(f"{result['correct']} of {result['num_images']} validation images, before any training: "
               "the number transfer learning has to beat.")
