"""Runs page: every run folder with its state and scores; a click (or ``?run=RUN_ID``) opens its
report (``ui.report.run_report``); cancel, resume, delete, compare."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import jobs, runs
from ui import common, report
from ui.export import export_panel
from ui import training as training_ui

KEY = "runs"
INTRO = (
    "Every training run lives in its own folder under the runs root. States come from the "
    "folders themselves, so they are right even after the app restarts; a worker that died is "
    "marked failed with the reason. Broken folders are listed, never hidden."
)


def _percent(value) -> str:
    return f"{value:.2%}" if value is not None else ""


def runs_table(summaries) -> pd.DataFrame:
    """One row per run folder, newest first."""
    rows = []
    for summary in summaries:
        config, status = summary.config, summary.status
        total = status.get("total_epochs") or config.get("epochs")
        rows.append({
            "run": summary.run_id,
            "state": summary.state,
            "model": summary.model,
            "preset / strategy": str(config.get("preset") or config.get("strategy") or ""),
            "dataset": summary.dataset,
            "epochs": f"{summary.epochs_done}/{total}" if total else str(summary.epochs_done),
            "best val acc": _percent(summary.best_val_accuracy),
            "test acc": _percent(summary.test_accuracy),
            "duration": training_ui.format_duration(summary.duration_seconds)
            if summary.duration_seconds is not None else "",
            "device": str(status.get("device") or ""),
            "node": str(status.get("node") or status.get("host") or ""),
            "created": summary.created_at,
            "problem": summary.error or str(status.get("error") or "")
            or (f"warning: {status['warning']}" if status.get("warning") else ""),
        })
    return pd.DataFrame(rows)


def _delete(run_dir) -> None:
    runs.delete_run(run_dir)
    st.session_state[f"{KEY}_confirm_delete"] = False
    st.session_state[f"{KEY}_message"] = f"Deleted {run_dir.name}."


def run_actions(summary) -> None:
    """Cancel, resume and delete (with confirmation) one run; the report below has its files and log."""
    run_dir = summary.path
    active = summary.state in jobs.ACTIVE_STATES
    columns = iter(st.columns(4))
    if active:
        if next(columns).button("Cancel run", key=f"{KEY}_cancel", icon=":material/stop_circle:"):
            try:
                jobs.cancel(summary.run_id)
            except runs.RunError as error:  # e.g. a hung worker still holds the run lock
                st.error(f"Cannot cancel {summary.run_id} now: {error}")
            else:
                st.session_state[f"{KEY}_message"] = f"Cancel requested for {summary.run_id}."
                st.rerun()
    if summary.state in jobs.RESUMABLE_STATES:
        if next(columns).button("Resume", key=f"{KEY}_resume_{summary.run_id}",
                                icon=":material/play_circle:",
                                help="Continues from the last finished epoch in a new worker"):
            try:
                jobs.resume(summary.run_id)
            except (ValueError, OSError) as error:
                st.error(f"Cannot resume {summary.run_id}: {error}")
            else:
                st.session_state[f"{KEY}_message"] = f"Resumed {summary.run_id}: queued again."
                st.rerun()
    if not summary.broken and summary.state == runs.COMPLETED:
        training_ui.show_warnings(summary.status, summary.results)
    export_panel(run_dir, KEY)
    if next(columns).button("Delete run", key=f"{KEY}_delete", icon=":material/delete:", disabled=active,
                         help="Cancel the run first" if active else "Deletes the whole run folder"):
        st.session_state[f"{KEY}_confirm_delete"] = True
    if st.session_state.get(f"{KEY}_confirm_delete"):
        st.warning(f"Delete {summary.run_id} and everything in it? This cannot be undone.")
        confirm, keep = st.columns(2)
        if confirm.button("Yes, delete", key=f"{KEY}_delete_confirm", type="primary"):
            _delete(run_dir)
            st.rerun()
        if keep.button("Keep it", key=f"{KEY}_delete_keep"):
            st.session_state[f"{KEY}_confirm_delete"] = False
            st.rerun()
    if summary.broken:
        st.error(f"Broken run folder: {summary.error}")


def choose_run(table: pd.DataFrame, selected_rows: list, by_id: dict) -> None:
    """Sets the run the page opens, before its selectbox is drawn.

    A click on a table row wins, then a new ``?run=RUN_ID`` in the URL, then the run this
    session had open (or the one another page selected), then the newest run. Only ids listed
    under the runs root are accepted, so the URL cannot reach a folder outside it.
    """
    selected_key = f"{KEY}_selected"
    row = selected_rows[0] if selected_rows else None
    if row is not None and row != st.session_state.get(f"{KEY}_applied_row"):
        st.session_state[selected_key] = str(table.iloc[row]["run"])
    st.session_state[f"{KEY}_applied_row"] = row
    wanted = st.query_params.get("run")
    if wanted != st.session_state.get(f"{KEY}_applied_query"):
        st.session_state[f"{KEY}_applied_query"] = wanted
        if wanted in by_id:
            st.session_state[selected_key] = wanted
        elif wanted is not None and wanted not in by_id:
            st.warning(f"No run named {wanted!r} here; showing the newest run instead.")
    if st.session_state.get(selected_key) not in by_id:
        other = st.session_state.get("selected_run_id")
        st.session_state[selected_key] = other if other in by_id else next(iter(by_id))


def compare_picker(summaries) -> None:
    """Select runs and open them on the Compare page."""
    candidates = [summary.run_id for summary in summaries if not summary.broken]
    if not candidates:
        return
    labels = {summary.run_id: summary.label for summary in summaries if not summary.broken}
    chosen = st.multiselect("Runs to compare", candidates, format_func=labels.get,
                            key=f"{KEY}_compare_selection")
    if st.button("Open in Compare", key=f"{KEY}_open_compare", disabled=not chosen,
                 icon=":material/compare_arrows:"):
        st.session_state["compare_run_ids"] = list(chosen)
        st.switch_page("pages/compare.py")


common.page_header("Runs", INTRO)
common.init_session_state({f"{KEY}_confirm_delete": False, f"{KEY}_message": None,
                           f"{KEY}_applied_row": None, f"{KEY}_applied_query": None})
message = st.session_state.get(f"{KEY}_message")
if message:
    st.success(message)
    st.session_state[f"{KEY}_message"] = None
jobs.refresh_all()
summaries = runs.list_runs()
if not summaries:
    st.info("No runs yet. Start one on the Train LeNet-5 or Transfer learning page, or with "
            "`python -m core.train`.")
else:
    table = runs_table(summaries)
    counts = table["state"].value_counts().to_dict()
    st.caption(" · ".join(f"{count} {state}" for state, count in counts.items()))
    event = st.dataframe(table, hide_index=True, width="stretch", key=f"{KEY}_table",
                         on_select="rerun", selection_mode="single-row")
    st.caption("Click a row (its left edge) to open that run's report, or share `/runs?run=RUN_ID`.")
    by_id = {summary.run_id: summary for summary in summaries}
    choose_run(table, list(event.selection.rows), by_id)
    run_id = st.selectbox("Run", list(by_id), key=f"{KEY}_selected",
                          format_func=lambda rid: f"{rid} ({by_id[rid].state})")
    st.session_state["selected_run_id"] = run_id
    st.session_state[f"{KEY}_applied_query"] = run_id
    st.query_params["run"] = run_id
    run_actions(by_id[run_id])
    if not by_id[run_id].broken:
        report.run_report(by_id[run_id].path, f"{KEY}_report")
    st.divider()
    compare_picker(summaries)
