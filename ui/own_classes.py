"""Streamlit pieces of the "Your own classes" page: class cards, Train panel, test panel.

The collection (classes and their images) lives in ``st.session_state["own_collection"]`` as
``core.own_classes.OwnClass`` objects; everything else goes through ``core``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import streamlit as st

from core import imaging, jobs, own_classes, runs
from core.datasets import DatasetError
from core.charts.classify import format_probability
from core.predictor import model_mtime
from ui import classify as classify_ui
from ui import imagenet as imagenet_ui
from ui import training as training_ui

LOGGER = logging.getLogger(__name__)

SESSION_DEFAULTS = {"own_run": None, "own_last_dataset": None, "own_message": None}
THUMBNAIL_PIXELS = 72
THUMBNAILS_SHOWN = 12
TOP_K = 3
TEST_MODES = ("Webcam snapshot", "Upload", "Live webcam")


def init_state() -> list[own_classes.OwnClass]:
    """The session's collection (two empty classes at first) and the page's other keys."""
    if "own_collection" not in st.session_state:
        st.session_state["own_collection"] = own_classes.new_collection()
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value)
    return st.session_state["own_collection"]


@st.cache_data(show_spinner=False, max_entries=4000)
def thumbnail(data: bytes, size: int = THUMBNAIL_PIXELS) -> np.ndarray:
    """A small square RGB thumbnail of an image file."""
    image = imaging.read_image(data, max_bytes=own_classes.MAX_IMAGE_BYTES)
    image.thumbnail((size * 2, size * 2))
    return np.asarray(image)


def show_message() -> None:
    message = st.session_state.get("own_message")
    if message:
        kind, text = message
        getattr(st, kind)(text)
        st.session_state["own_message"] = None


def add_class_form(collection: list) -> None:
    """A label box and an Add button."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    label = left.text_input("New class label", key="own_new_label", max_chars=40,
                            placeholder="e.g. mug, pen, thumbs up")
    if right.button("Add class", key="own_add_class", icon=":material/add:"):
        try:
            own_classes.add_class(collection, label or f"Class {len(collection) + 1}")
        except ValueError as error:
            st.session_state["own_message"] = ("error", str(error))
        st.rerun()


def _add_files(own_class, files, kind: str) -> None:
    for uploaded in files:
        if uploaded is None:
            continue
        try:
            own_classes.add_image(own_class, uploaded.getvalue(), uploaded.file_id, kind)
        except ValueError as error:  # ImageError is a ValueError
            st.session_state["own_message"] = ("error", f"{uploaded.name}: {error}")
            own_class.seen.add(uploaded.file_id)


def class_card(collection: list, own_class, busy: bool) -> None:
    """One class: label, count, snapshot and upload inputs, thumbnails, remove/clear."""
    key = f"own_class_{own_class.class_id}"
    with st.container(border=True, key=f"{key}_card"):
        header = st.container()  # filled last, so the count includes this run's new images
        camera, upload = st.columns(2)
        with camera:
            shot = st.camera_input(f"Snapshot into {own_class.label}", key=f"{key}_camera",
                                   disabled=busy,
                                   help="Each picture you take is added to this class. The "
                                        "browser gives the camera to https or localhost pages only.")
            _add_files(own_class, [shot], "snapshot")
        with upload:
            files = st.file_uploader(f"Upload into {own_class.label}", key=f"{key}_upload",
                                     type=list(imaging.UPLOAD_EXTENSIONS), accept_multiple_files=True,
                                     disabled=busy,
                                     help=f"Up to {own_classes.MAX_IMAGE_BYTES // (1024 * 1024)} MB "
                                          f"per image, {own_classes.MAX_IMAGES_PER_CLASS} images per class.")
            _add_files(own_class, files or [], "upload")
        count = len(own_class.images)
        if count:
            shown = own_class.images[-THUMBNAILS_SHOWN:]
            st.image([thumbnail(entry.data) for entry in shown], width=THUMBNAIL_PIXELS,
                     caption=[entry.file_name.split("-")[0] for entry in shown])
            if count > THUMBNAILS_SHOWN:
                st.caption(f"The last {THUMBNAILS_SHOWN} of {count} images.")
        with header:
            title, clear, remove = st.columns([4, 1, 1], vertical_alignment="center")
            enough = count >= own_classes.MIN_IMAGES_PER_CLASS
            title.markdown(f"#### {own_class.label} · {count} image{'s' if count != 1 else ''}"
                           + ("" if enough else f" :orange[(at least {own_classes.MIN_IMAGES_PER_CLASS})]"))
            if clear.button("Clear", key=f"{key}_clear", disabled=busy or not count):
                own_class.images.clear()
                st.rerun()
            if remove.button("Remove", key=f"{key}_remove", disabled=busy):
                collection.remove(own_class)
                st.rerun()


def active_run_id() -> str | None:
    """The page's run while it is queued or running."""
    record = st.session_state.get("own_run")
    if not record:
        return None
    try:
        state = jobs.status(record["run_id"]).get("state")
    except runs.RunError:
        return None
    return record["run_id"] if state in jobs.ACTIVE_STATES else None


def train_panel(collection: list, busy: bool) -> None:
    """The Train button (creates the dataset, submits the job) and what blocks it."""
    blockers = own_classes.problems(collection)
    backbone, weights_note = own_classes.best_backbone()
    st.caption(f"Feature extraction at {own_classes.IMAGE_SIZE} px: the frozen ImageNet backbone "
               "turns each image into features once, and only a small head is trained. "
               f"{weights_note if backbone else ''}")
    if backbone is None:
        st.warning(weights_note, icon=":material/download:")
    if blockers:
        st.info("To train: " + "; ".join(blockers) + ".", icon=":material/info:")
    pressed = st.button("Train", key="own_train", type="primary", icon=":material/model_training:",
                        disabled=bool(blockers) or busy or backbone is None)
    if not pressed:
        return
    pressed_at = time.time()
    try:
        dataset, reused = own_classes.dataset_for(collection, st.session_state.get("own_last_dataset"))
        run_id = jobs.submit(own_classes.training_config(dataset, backbone))
    except (DatasetError, ValueError, OSError) as error:
        st.session_state["own_message"] = ("error", f"Could not start training: {error}")
        st.rerun()
        return
    st.session_state["own_last_dataset"] = {"digest": own_classes.collection_digest(collection),
                                            "dataset": dataset}
    st.session_state["own_run"] = {"run_id": run_id, "pressed_at": pressed_at, "dataset": dataset,
                                   "reused": reused}
    st.rerun()


def run_panel() -> dict | None:
    """Progress and live curve of the page's run; the time to a usable model once done.

    Returns:
        The run record when the run completed (the test panel follows), else None.
    """
    record = st.session_state.get("own_run")
    if not record:
        return None
    run_id = record["run_id"]
    st.caption(f"Dataset `{record['dataset']}`"
               + (" (unchanged: its features come from the cache)" if record["reused"] else "")
               + f" · run `{run_id}` (also on the Runs, Compare and Classify pages)")
    training_ui.live_run(run_id, key="own_live", show_cancel=True)
    try:
        status = jobs.status(run_id)
    except runs.RunError:
        return None
    seconds = own_classes.seconds_to_usable_model(record["pressed_at"], status)
    if seconds is None:
        return None
    verdict = "within" if seconds <= own_classes.TARGET_SECONDS else "above"
    st.metric("From pressing Train to a usable model", f"{seconds:.0f} s",
              help=f"Target: at most {own_classes.TARGET_SECONDS:.0f} s ({verdict} it).")
    return record


def show_prediction(predictor, image, key: str) -> None:
    """Your model's top classes beside what the ImageNet classifier sees."""
    mine, imagenet = st.columns(2)
    with mine:
        started = time.perf_counter()
        ranked = predictor.top_k([image], k=TOP_K)[0]
        milliseconds = (time.perf_counter() - started) * 1000
        st.markdown(f"**Your model: {ranked[0]['class_name']}** "
                    f"({format_probability(ranked[0]['probability'])})")
        for row in ranked:
            st.progress(float(row["probability"]),
                        text=f"{row['class_name']}: {format_probability(row['probability'])}")
        st.caption(f"{milliseconds:.0f} ms")
    with imagenet:
        imagenet_ui.imagenet_top_k(image, key=key)
    st.image(image, width=224, caption="input")


def test_panel(record: dict) -> None:
    """Test the trained model: webcam snapshot, upload or live webcam."""
    run_dir = runs.run_path(record["run_id"])
    try:
        predictor = classify_ui.load_predictor(str(run_dir), model_mtime(run_dir))
    except Exception as error:  # noqa: BLE001 - a broken run is reported, not raised
        LOGGER.exception("loading %s failed", run_dir)
        st.error(f"Could not load the trained model: {error}")
        return
    mode = st.radio("Test with", TEST_MODES, key="own_test_mode", horizontal=True)
    if mode == "Webcam snapshot":
        shot = st.camera_input("Show the camera one of your objects", key="own_test_camera")
        if shot is not None:
            for _, image in classify_ui.decode_uploads([shot]):
                show_prediction(predictor, image, key="own_test_camera_result")
    elif mode == "Upload":
        upload = st.file_uploader("An image to test", key="own_test_upload",
                                  type=list(imaging.UPLOAD_EXTENSIONS),
                                  help=classify_ui.upload_caption())
        if upload is not None:
            for _, image in classify_ui.decode_uploads([upload]):
                show_prediction(predictor, image, key="own_test_upload_result")
    else:
        classify_ui.live_mode(predictor, key="own_live_webcam")
