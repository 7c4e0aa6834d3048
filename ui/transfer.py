"""Streamlit helpers of the Transfer learning and Compare pages.

Cached readers (keyed by the runs root, so tests with their own roots never share entries),
the live run panel (the jobs engineer's ``ui.training`` widget when it exists, else a small
fallback that polls the run folder), the comparison section, and the ImageNet weights panel.
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
    """Live status and curves of one run, then its results once it completed.

    Uses ``ui.training``'s shared widgets (``live_run``, ``run_results``) when they exist, else
    a small fallback; above them, the run's current ``phase`` (weights download, bottleneck
    features...), which happens before the first epoch and would otherwise look like a hang.
    """
    try:
        from ui import training as training_ui  # the jobs engineer's shared widgets
    except ImportError:
        training_ui = None
    _phase_line(run_id)
    live = getattr(training_ui, "live_run", None)
    if not callable(live):
        _fallback_live_panel(run_id, key_prefix)
        return
    try:
        state = runs.read_status(runs.run_path(run_id))["state"]
    except runs.RunError as error:
        st.error(str(error), icon=":material/error:")
        return
    results = getattr(training_ui, "run_results", None)
    if state == runs.COMPLETED and callable(results):
        results(run_id, key=f"{key_prefix}_results")
    else:
        live(run_id, key=f"{key_prefix}_live")


def _phase_line(run_id: str) -> None:
    """The run's ``phase`` from ``status.json``, refreshed while it is queued or running."""

    def body():
        try:
            status = runs.read_status(runs.run_path(run_id))
        except runs.RunError:
            return
        if status.get("phase") and status.get("state") in (runs.QUEUED, runs.RUNNING):
            fraction = status.get("phase_progress")
            if isinstance(fraction, (int, float)):
                st.progress(min(1.0, max(0.0, float(fraction))), text=status["phase"])
            else:
                st.caption(f":material/info: {status['phase']}")

    try:
        active = runs.read_status(runs.run_path(run_id)).get("state") in (runs.QUEUED, runs.RUNNING)
    except runs.RunError:
        return
    if active:
        st.fragment(run_every=LIVE_REFRESH_SECONDS)(body)()


def _fallback_live_panel(run_id: str, key_prefix: str) -> None:
    from core import jobs
    from core.charts import training as training_charts

    @st.fragment(run_every=LIVE_REFRESH_SECONDS)
    def body():
        try:
            status = jobs.status(run_id)
            run_dir = runs.run_path(run_id)
        except runs.RunError as error:
            st.error(str(error), icon=":material/error:")
            return
        state = status.get("state")
        epoch, total = status.get("epochs_done") or 0, status.get("total_epochs")
        st.markdown(f"**{run_id}** · {state}" + (f" · epoch {epoch} of {total}" if total else ""))
        if status.get("phase") and state in (runs.QUEUED, runs.RUNNING):
            st.caption(status["phase"])
        if total:
            st.progress(min(1.0, epoch / total), text=f"{epoch}/{total} epochs")
        if state == runs.FAILED:
            st.error(status.get("error") or "the run failed; see train.log", icon=":material/error:")
        metrics = read_metrics(run_dir)
        if metrics is not None and len(metrics):
            st.plotly_chart(training_charts.learning_curves(metrics, total_epochs=total),
                            key=f"{key_prefix}_live_curves", width="stretch")
        if state in (runs.QUEUED, runs.RUNNING):
            if st.button("Cancel this run", key=f"{key_prefix}_cancel", icon=":material/stop:"):
                jobs.cancel(run_id)
                st.toast(f"Cancel requested for {run_id}")

    body()


# --- ImageNet weights ------------------------------------------------------------------------------

def imagenet_weights_panel(backbone: str, image_size: int, key_prefix: str = "transfer") -> bool:
    """Shows whether ImageNet weights are cached and offers to download them now.

    Returns:
        True when the weights file is present.
    """
    from core.models import backbones

    cached = backbones.imagenet_weights_cached(backbone, image_size)
    name, url, md5, size = backbones.imagenet_weights_file(backbone, image_size)
    if cached:
        st.success(f"ImageNet weights found: `{cached}`", icon=":material/check_circle:")
        return True
    size_text = f"{size / 1e6:.1f} MB" if size else "the file"
    st.info(f"ImageNet weights are not downloaded yet: the job will fetch {size_text} "
            f"(`{name}`) into `{backbones.keras_cache_dir()}` on first use, or fetch it now.",
            icon=":material/cloud_download:")
    if st.button("Download ImageNet weights now", key=f"{key_prefix}_download_weights",
                 icon=":material/download:"):
        bar = st.progress(0.0, text="Connecting…")

        def report(done: int, total: int | None) -> None:
            if total:
                bar.progress(min(1.0, done / total), text=f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")

        try:
            path = backbones.ensure_imagenet_weights(backbone, image_size=image_size, progress=report)
        except backbones.WeightsUnavailableError as error:
            bar.empty()
            st.error(f"Could not download the ImageNet weights. {error}", icon=":material/wifi_off:")
            return False
        st.success(f"Downloaded and verified: `{path}`", icon=":material/check_circle:")
        return True
    return False
