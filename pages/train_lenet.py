"""Train LeNet-5 page: a form with the study's defaults, a live view of the job, its results."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import jobs, paths, results, runs
from core.charts import training as training_charts
from core.datasets import preprocess, registry
from core.models import lenet
from core.training.config_checks import MAXIMUMS
from ui import common, report
from ui import training as training_ui

MODEL = "lenet5"
KEY = "train_lenet"
RUN_KEY = f"{KEY}_run_id"
PRESET_KEY = f"{KEY}_preset"
REFERENCE_NAME = "study: seed LeNet on GTSRB (val)"
SPREAD_TTL_SECONDS = 10
INTRO = (
    "The study's first experiment: LeNet-5 trained from scratch on German traffic signs. "
    "Pick a preset, adjust what you like and start a job. Training runs in a background worker "
    "process, so you can leave this page and come back; the curves update live, with the "
    "study's validation curve drawn dashed for comparison."
)
DATASET_LABELS = {
    "gtsrb": "GTSRB (real photos, 43 classes)",
    "synthetic-signs": "Synthetic signs (SYNTHETIC, generated)",
}
BATCH_SIZES = (16, 32, 64, 128, 256, 512)
COLOR_LABELS = {"rgb": "colour (RGB)", "grayscale": "grayscale"}
# Form fields: (config key, where it lives). Values come from the preset in core.models.lenet.
FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule", "conv_filters",
          "kernel_size", "activation", "pooling", "batch_norm", "multi_scale", "dense_units",
          "dropout", "random_blur", "color", "equalization", "center_crop", "rotation_degrees",
          "shift", "zoom", "low_resolution", "occlusion",
          "labels_per_class", "epoch_repeats", "committee_size", "mirror_signs",
          "spatial_transformer", "spatial_transformer_size", "time_budget_seconds",
          "batch_branches")


def _as_text(values) -> str:
    return ", ".join(str(value) for value in values) if isinstance(values, (list, tuple)) else str(values)


def preset_field_values(preset: str) -> dict:
    """Widget values (by field) for a preset, from the single source of defaults."""
    config = lenet.preset_config(preset)
    preprocessing = config["preprocessing"]
    augmentation = config["augmentation"]
    return {
        "epochs": config["epochs"], "batch_size": config["batch_size"],
        "optimizer": config["optimizer"], "learning_rate": config["learning_rate"],
        "lr_schedule": config["lr_schedule"], "conv_filters": _as_text(config["conv_filters"]),
        "kernel_size": _as_text(config["kernel_size"]), "activation": config["activation"],
        "pooling": config["pooling"], "batch_norm": config["batch_norm"],
        "multi_scale": config["multi_scale"], "dense_units": _as_text(config["dense_units"]),
        "dropout": config["dropout"], "random_blur": config["random_blur"],
        "color": preprocessing.get("color", "rgb"), "equalization": preprocessing.get("equalization", "none"),
        "center_crop": float(preprocessing.get("center_crop", 1.0)),
        "rotation_degrees": float(augmentation.get("rotation_degrees", 0.0)),
        "shift": float(augmentation.get("shift", 0.0)), "zoom": float(augmentation.get("zoom", 0.0)),
        "low_resolution": float(augmentation.get("low_resolution", 0.0)),
        "occlusion": float(augmentation.get("occlusion", 0.0)),
        "labels_per_class": 0, "epoch_repeats": config["epoch_repeats"],
        "committee_size": config["committee_size"], "mirror_signs": config["mirror_signs"],
        "spatial_transformer": config["spatial_transformer"],
        "spatial_transformer_size": config["spatial_transformer_size"],
        "time_budget_seconds": config["time_budget_seconds"],
        "batch_branches": config["batch_branches"],
    }


def _load_preset_into_form() -> None:
    for field, value in preset_field_values(st.session_state[PRESET_KEY]).items():
        st.session_state[f"{KEY}_{field}"] = value


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in str(text).replace(";", ",").split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"{what} must be whole numbers separated by commas, received {text!r}") from error
    return values


def config_from_form(state, preset: str, dataset: str) -> dict:
    """Builds the job config from the form's session-state values."""
    value = {field: state[f"{KEY}_{field}"] for field in FIELDS}
    kernel = _int_list(value["kernel_size"], "Kernel size")
    base = lenet.preset_config(preset)
    config = {
        "model": MODEL, "preset": preset, "dataset": dataset,
        "epochs": int(value["epochs"]), "batch_size": int(value["batch_size"]),
        "optimizer": value["optimizer"], "learning_rate": float(value["learning_rate"]),
        "lr_schedule": value["lr_schedule"],
        "conv_filters": _int_list(value["conv_filters"], "Filters"),
        "kernel_size": kernel[0] if len(kernel) == 1 else kernel,
        "activation": value["activation"], "pooling": value["pooling"],
        "batch_norm": bool(value["batch_norm"]), "multi_scale": bool(value["multi_scale"]),
        "dense_units": _int_list(value["dense_units"], "Dense units"),
        "dropout": float(value["dropout"]), "random_blur": float(value["random_blur"]),
        "epoch_repeats": int(value["epoch_repeats"]),
        "committee_size": int(value["committee_size"]),
        "mirror_signs": bool(value["mirror_signs"]),
        "spatial_transformer": bool(value["spatial_transformer"]),
        # The output size belongs to the transformer: without one it is 0, whatever the field says.
        "spatial_transformer_size": int(value["spatial_transformer_size"] or 0)
        if value["spatial_transformer"] else 0,
        "time_budget_seconds": int(value["time_budget_seconds"] or 0),
        "preprocessing": {**base["preprocessing"], "color": value["color"],
                          "equalization": value["equalization"]},
        "augmentation": {**base["augmentation"], "rotation_degrees": float(value["rotation_degrees"]),
                         "shift": float(value["shift"]), "zoom": float(value["zoom"]),
                         "low_resolution": float(value["low_resolution"]),
                         "occlusion": float(value["occlusion"])},
    }
    crop = float(value["center_crop"])
    if crop != base["preprocessing"]["center_crop"]:
        config["preprocessing"]["center_crop"] = crop
    else:  # the preset's crop: the family applies it to the datasets it was measured on
        del config["preprocessing"]["center_crop"]
    if int(value["batch_branches"]) != base["batch_branches"]:
        # Only a changed value is sent: the preset's own falls back to one pass by itself where
        # it cannot apply (batch norm, a committee), while an asked-for one is checked.
        config["batch_branches"] = int(value["batch_branches"])
    if int(value["labels_per_class"] or 0) > 0:
        config["labels_per_class"] = int(value["labels_per_class"])
    return config


def dataset_choices() -> tuple[list[str], str | None]:
    """Datasets offered, and a note when GTSRB is not installed."""
    try:
        gtsrb_status = registry.status("gtsrb")
    except Exception as error:  # noqa: BLE001 - a broken data root must not break the page
        gtsrb_status = f"unreadable ({error})"
    if gtsrb_status == "ready":
        return ["gtsrb", "synthetic-signs"], None
    return ["synthetic-signs"], (
        f"GTSRB is not installed here (status: {gtsrb_status}), so the job uses the synthetic "
        "signs: same 43 classes, drawn by the app, much easier than real photos. Install GTSRB "
        "on the Datasets page to reproduce the study."
    )


def render_form() -> None:
    """The training form; Start submits a job and shows it."""
    help_text = lenet.FIELD_HELP
    st.selectbox("Preset", lenet.PRESET_NAMES, key=PRESET_KEY, on_change=_load_preset_into_form,
                 help=help_text["preset"])
    options, note = dataset_choices()
    if st.session_state.get(f"{KEY}_dataset") not in options:
        st.session_state[f"{KEY}_dataset"] = options[0]
    st.selectbox("Dataset", options, key=f"{KEY}_dataset", format_func=DATASET_LABELS.get,
                 help=help_text["dataset"])
    if note:
        st.caption(note)
    with st.form(f"{KEY}_form"):
        st.markdown("**Training**")
        columns = st.columns(4)
        columns[0].number_input("Epochs", min_value=1, max_value=500, step=1, key=f"{KEY}_epochs",
                                help=help_text["epochs"])
        columns[1].selectbox("Batch size", BATCH_SIZES, key=f"{KEY}_batch_size",
                             help=help_text["batch_size"])
        columns[2].selectbox("Optimizer", lenet.OPTIMIZERS, key=f"{KEY}_optimizer",
                             help=help_text["optimizer"])
        columns[3].number_input("Learning rate", min_value=1e-6, max_value=1.0, format="%.4f",
                                step=0.0005, key=f"{KEY}_learning_rate", help=help_text["learning_rate"])
        columns = st.columns(4)
        columns[0].selectbox("Learning-rate schedule", lenet.LR_SCHEDULES, key=f"{KEY}_lr_schedule",
                             help=help_text["lr_schedule"])
        columns[1].number_input("Training images per class (0 = all)", min_value=0, step=10,
                                key=f"{KEY}_labels_per_class", help=help_text["labels_per_class"])
        columns[2].number_input("Augmented passes per epoch", min_value=1, max_value=10, step=1,
                                key=f"{KEY}_epoch_repeats", help=help_text["epoch_repeats"])
        columns[3].number_input("Committee members", min_value=1, max_value=9, step=1,
                                key=f"{KEY}_committee_size", help=help_text["committee_size"])
        columns = st.columns(4)
        columns[0].number_input("Time budget in seconds (0 = no limit)", min_value=0,
                                max_value=MAXIMUMS["time_budget_seconds"], step=60,
                                key=f"{KEY}_time_budget_seconds",
                                help=help_text["time_budget_seconds"])
        columns[1].number_input("Batch parts side by side", min_value=1,
                                max_value=lenet.MAX_BATCH_BRANCHES, step=1,
                                key=f"{KEY}_batch_branches", help=help_text["batch_branches"])
        st.markdown("**Network**")
        columns = st.columns(4)
        columns[0].text_input("Filters per conv stage", key=f"{KEY}_conv_filters",
                              help=help_text["conv_filters"])
        columns[1].text_input("Kernel size (one, or one per stage)", key=f"{KEY}_kernel_size",
                              help=help_text["kernel_size"])
        columns[2].text_input("Dense units", key=f"{KEY}_dense_units", help=help_text["dense_units"])
        columns[3].slider("Dropout rate", 0.0, 0.9, step=0.05, key=f"{KEY}_dropout",
                          help=help_text["dropout"])
        columns = st.columns(4)
        columns[0].selectbox("Activation", lenet.ACTIVATIONS, key=f"{KEY}_activation",
                             help=help_text["activation"])
        columns[1].selectbox("Pooling", lenet.POOLINGS, key=f"{KEY}_pooling", help=help_text["pooling"])
        columns[2].checkbox("Batch normalisation", key=f"{KEY}_batch_norm", help=help_text["batch_norm"])
        columns[3].checkbox("Multi-scale features", key=f"{KEY}_multi_scale",
                            help=help_text["multi_scale"])
        columns = st.columns([3, 1])
        columns[0].checkbox("Spatial transformer (learns to centre and straighten each image)",
                            key=f"{KEY}_spatial_transformer", help=help_text["spatial_transformer"])
        columns[1].number_input("Transformer output in pixels (0 = input size)", min_value=0,
                                max_value=lenet.MAX_SPATIAL_TRANSFORMER_SIZE, step=8,
                                key=f"{KEY}_spatial_transformer_size",
                                help=help_text["spatial_transformer_size"])
        st.markdown("**Images: preprocessing and augmentation**")
        columns = st.columns(4)
        columns[0].selectbox("Colour", list(COLOR_LABELS), format_func=COLOR_LABELS.get,
                             key=f"{KEY}_color", help=help_text["color"])
        columns[1].selectbox("Equalisation", ("none", "global", "clahe"), key=f"{KEY}_equalization",
                             help=help_text["equalization"])
        columns[2].slider("Centre crop (share kept)", preprocess.MIN_CENTER_CROP, 1.0, step=0.05,
                          key=f"{KEY}_center_crop", help=help_text["center_crop"])
        columns[3].slider("Random blur (share of images)", 0.0, 1.0, step=0.05,
                          key=f"{KEY}_random_blur", help=help_text["random_blur"])
        columns = st.columns(6)
        columns[0].slider("Rotation (± degrees)", 0.0, 45.0, step=1.0, key=f"{KEY}_rotation_degrees",
                          help=help_text["rotation_degrees"])
        columns[1].slider("Shift (fraction)", 0.0, 0.3, step=0.01, key=f"{KEY}_shift",
                          help=help_text["shift"])
        columns[2].slider("Zoom (fraction)", 0.0, 0.3, step=0.01, key=f"{KEY}_zoom",
                          help=help_text["zoom"])
        columns[3].slider("Low resolution (share of images)", 0.0, 1.0, step=0.05,
                          key=f"{KEY}_low_resolution", help=help_text["low_resolution"])
        columns[4].slider("Occlusion (share of images)", 0.0, 1.0, step=0.05,
                          key=f"{KEY}_occlusion", help=help_text["occlusion"])
        columns[5].checkbox("Mirrored signs", key=f"{KEY}_mirror_signs", help=help_text["mirror_signs"])
        submitted = st.form_submit_button("Start training", type="primary",
                                          icon=":material/play_arrow:", key=f"{KEY}_start")
    if submitted:
        try:
            config = config_from_form(st.session_state, st.session_state[PRESET_KEY],
                                      st.session_state[f"{KEY}_dataset"])
            run_id = jobs.submit(config)
        except ValueError as error:
            st.error(f"Cannot start: {error}")
            return
        st.session_state[RUN_KEY] = run_id
        st.rerun()


def render_run(run_id: str, status: dict) -> None:
    """The live view of an active run, or the results of a finished one."""
    if status["state"] in jobs.ACTIVE_STATES:
        st.subheader("Training in progress")
        training_ui.live_run(run_id, key=f"{KEY}_live", reference_val_accuracy=lenet.REFERENCE_VAL_ACCURACY,
                             reference_name=REFERENCE_NAME, reference_band=seed_spread())
        return
    st.subheader("Results")
    on_gtsrb = runs.read_config(runs.run_path(run_id)).get("dataset") == "gtsrb"
    if not on_gtsrb:
        st.caption("Trained on synthetic signs: the study's GTSRB figures are drawn for orientation "
                   "only, the two are not comparable.")
    training_ui.run_results(run_id, key=f"{KEY}_results",
                            reference_val_accuracy=lenet.REFERENCE_VAL_ACCURACY,
                            reference_name=REFERENCE_NAME,
                            reference_test_accuracy=lenet.STUDY_TEST_ACCURACY if on_gtsrb else None,
                            reference_band=seed_spread() if on_gtsrb else None)
    if st.button("Train another model", key=f"{KEY}_new", icon=":material/add:"):
        st.session_state[RUN_KEY] = None
        st.rerun()


@st.cache_data(ttl=SPREAD_TTL_SECONDS, show_spinner=False)
def cached_seed_spread(runs_root: str) -> results.SeedSpread | None:
    """The seed preset's spread over seeds, from the completed default GTSRB runs on disk.

    Keyed by the runs root, so a changed root (another user setting, a test) is never served
    another root's figures.
    """
    return results.seed_spread(runs.list_runs(runs_root), "seed")


def seed_spread() -> results.SeedSpread | None:
    """``cached_seed_spread`` of the configured runs root."""
    return cached_seed_spread(str(paths.runs_dir()))


def spread_section(spread: results.SeedSpread | None) -> None:
    """The study's curve with the seed preset's band over seeds, and each seed's figures."""
    with st.expander("The study's curve and the seed preset over seeds", expanded=False):
        if spread is None:
            st.caption("Train the seed preset on GTSRB with seeds 0, 1 and 2 (`python -m core.train "
                       "--model lenet5 --preset seed --set seed=N`) to see its spread here.")
            return
        no_run = pd.DataFrame(columns=list(runs.METRICS_COLUMNS))
        st.plotly_chart(training_charts.learning_curves(
            no_run, lenet.REFERENCE_VAL_ACCURACY, reference_name=REFERENCE_NAME,
            reference_band=spread), key=f"{KEY}_spread_chart", width="stretch")
        images = f" on {spread.test_images} test images" if spread.test_images else ""
        st.dataframe([{"seed": seed, "run": spread.run_ids[seed],
                       "best val accuracy": spread.best_val_accuracy.get(seed),
                       "test accuracy": spread.test_accuracy.get(seed)} for seed in spread.seeds],
                     hide_index=True, key=f"{KEY}_spread_table")
        if spread.mean_test_accuracy is not None:
            st.caption(f"Mean test accuracy over seeds {spread.mean_test_accuracy:.2%}{images}; "
                       f"the study reported {lenet.STUDY_TEST_ACCURACY:.1%} on the official test set.")


def finished_runs_picker() -> None:
    """Lets the user open the results of an earlier LeNet run."""
    finished = [summary for summary in runs.list_runs()
                if not summary.broken and summary.model == MODEL and summary.state in runs.TERMINAL_STATES]
    if not finished:
        return
    with st.expander("Results of earlier LeNet runs"):
        labels = {summary.run_id: f"{summary.label} ({summary.state})" for summary in finished}
        chosen = st.selectbox("Run", list(labels), format_func=labels.get, key=f"{KEY}_earlier")
        if st.button("Show", key=f"{KEY}_show_earlier"):
            st.session_state[RUN_KEY] = chosen
            st.rerun()


def current_run() -> tuple[str | None, dict | None]:
    """The run this session shows: the one it started, else the newest active LeNet run on disk."""
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        try:
            return run_id, jobs.status(run_id)
        except (runs.RunError, OSError):
            st.session_state[RUN_KEY] = None  # deleted meanwhile
    active = jobs.active_runs(model=MODEL)
    if active:
        st.session_state[RUN_KEY] = active[0]
        return active[0], jobs.status(active[0])
    return None, None


common.page_header("Train LeNet-5", INTRO)
common.init_session_state({RUN_KEY: None, PRESET_KEY: lenet.DEFAULT_PRESET})
common.init_session_state({f"{KEY}_{field}": value
                           for field, value in preset_field_values(lenet.DEFAULT_PRESET).items()})
run_id, run_status = current_run()
if run_id is not None:
    render_run(run_id, run_status)
else:
    render_form()
    spread_section(seed_spread())
    finished_runs_picker()
