"""Compare runs page: curves side by side, a per-run table, the strategy quadrant, data efficiency."""

import pandas as pd
import streamlit as st

from core import experiments, runs
from core.charts import compare as charts
from ui import common
from ui import transfer as transfer_ui
from ui import transferability as transferability_ui

SESSION_DEFAULTS = {"compare_applied_ids": None}
REFRESH_SECONDS = 5

common.page_header(
    "Compare runs",
    "Put runs side by side: learning curves against epochs and against wall-clock time, the "
    "figures that matter per run, where each run sits on the study's *dataset size × "
    "similarity* chart, and, for sweeps, how transfer's advantage grows as labelled data shrinks.",
)
common.init_session_state()
common.init_session_state(SESSION_DEFAULTS)

summaries = transfer_ui.run_summaries()
usable = [summary for summary in summaries if not summary.broken]
if not usable:
    st.info("No runs yet. Train a scratch and a transfer model on the **Transfer learning** page "
            "(or run `python -m core.experiments few-shot ...`), then come back.",
            icon=":material/info:")
    st.stop()

by_id = {summary.run_id: summary for summary in usable}
requested = [run_id for run_id in (st.session_state.get("compare_run_ids") or []) if run_id in by_id]
if requested and requested != st.session_state["compare_applied_ids"]:
    # The Runs page asked for these runs: apply them once, then let the user edit freely.
    st.session_state["compare_selection"] = requested
    st.session_state["compare_applied_ids"] = requested
elif "compare_selection" not in st.session_state:
    st.session_state["compare_selection"] = charts.default_selection(usable)
else:
    st.session_state["compare_selection"] = [
        run_id for run_id in st.session_state["compare_selection"] if run_id in by_id]

selected_ids = st.multiselect(
    "Runs to compare", list(by_id), key="compare_selection",
    format_func=lambda run_id: by_id[run_id].label,
    help="Default: the latest scratch run and the latest transfer run on the same dataset. "
         "The Runs page can send its selection here.",
)
selected = [by_id[run_id] for run_id in selected_ids]
x_axis = st.radio("Curves against", list(charts.X_AXES), key="compare_x_axis", horizontal=True,
                  format_func=lambda value: "epoch" if value == "epoch" else "wall-clock seconds")

if not selected:
    st.info("Pick at least one run above.", icon=":material/info:")
else:
    active = any(summary.state in (runs.QUEUED, runs.RUNNING) for summary in selected)
    transfer_ui.comparison_section(selected_ids, x_axis, refresh=REFRESH_SECONDS if active else None)

st.subheader("Which strategy? Dataset size × similarity")
st.markdown(
    "The study's rule of thumb (Yosinski et al. 2014): with **little data similar** to the "
    "source, keep the pretrained features and train only a new classifier; with **more data**, "
    "fine-tune the top block(s); with **different data**, early layers still transfer (edges, "
    "colours) while late ones do not. Similarity is **measured**: the transferability score of "
    "each run's source on its dataset, rescaled to 0 (chance) … 1. Crosses are scratch runs "
    "(placed at the score of the source their transfer twin uses), dots are transfer runs."
)
transferability_ui.quadrant_section(selected or usable, key_prefix="compare")

efficiency = charts.data_efficiency_frame(usable)
st.subheader("Data efficiency")
if len(efficiency) and efficiency["train_images"].nunique() > 1:
    st.plotly_chart(charts.data_efficiency_figure(efficiency), key="compare_efficiency",
                    width="stretch")
    st.caption("Accuracy against labelled training images for sweep and few-shot runs; solid = "
               "transfer, dotted = scratch. The gap is transfer's advantage.")
else:
    st.info("No sweep yet: the **Sweep** button on the Transfer learning page (or several "
            "few-shot experiments with different k) trains scratch and transfer at several sizes; "
            "their accuracy against training images appears here.", icon=":material/info:")

st.subheader("Synthetic → real")
st.markdown(
    "Drawn signs as the source for real GTSRB: **few-shot** trains a scratch and a transfer "
    "network on the same k real labels per class (the gain is transfer's advantage); "
    "**synthetic-only** trains on drawn signs alone (0 real labels) and scores on real images. "
    "Command line: `python -m core.experiments few-shot --source synthetic-signs "
    "--labels-per-class 10` (or `0` for synthetic-only; `0 --self-train` adds "
    f"{experiments.SELF_TRAINING_ROUNDS} rounds of self-training on unlabelled real images)."
)
few_shot_rows = [row for row in experiments.few_shot_results(usable)
                 if row["source"] == "synthetic-signs"]
synthetic_rows = experiments.synthetic_only_results(usable)
if few_shot_rows:
    table = pd.DataFrame(few_shot_rows)[["labels_per_class", "strategy", "scratch_accuracy",
                                         "transfer_accuracy", "gain_points", "split",
                                         "experiment_id"]]
    for column in ("scratch_accuracy", "transfer_accuracy"):
        table[column] = table[column].map(lambda value: None if value is None else 100.0 * value)
    st.dataframe(table, key="compare_synthetic_few_shot", hide_index=True, column_config={
        "labels_per_class": st.column_config.NumberColumn("real labels per class"),
        "scratch_accuracy": st.column_config.NumberColumn("scratch %", format="%.1f"),
        "transfer_accuracy": st.column_config.NumberColumn("transfer %", format="%.1f"),
        "gain_points": st.column_config.NumberColumn("gain (points)", format="%+.1f"),
    })
if synthetic_rows:
    table = pd.DataFrame(synthetic_rows)[["run_id", "method", "pseudo_labels", "real_test_accuracy",
                                         "real_test_images",
                                         "real_val_accuracy", "real_val_images",
                                         "synthetic_val_accuracy"]]
    for column in ("real_test_accuracy", "real_val_accuracy", "synthetic_val_accuracy"):
        table[column] = table[column].map(lambda value: None if value is None else 100.0 * value)
    st.dataframe(table, key="compare_synthetic_only", hide_index=True, column_config={
        "pseudo_labels": st.column_config.TextColumn("pseudo-labels"),
        "real_test_accuracy": st.column_config.NumberColumn("real test % (0 real labels)", format="%.1f"),
        "real_test_images": st.column_config.NumberColumn("test images"),
        "real_val_accuracy": st.column_config.NumberColumn("real val % (0 real labels)", format="%.1f"),
        "real_val_images": st.column_config.NumberColumn("val images"),
        "synthetic_val_accuracy": st.column_config.NumberColumn("drawn val %", format="%.1f"),
    })
if not few_shot_rows and not synthetic_rows:
    st.info("No synthetic → real experiment yet: run the few-shot experiment with the synthetic "
            "source on the Transfer learning page, or the command above.", icon=":material/info:")
