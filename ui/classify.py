"""Streamlit helpers of the Classify page: cached models, per-image results, input modes.

Every user-facing failure ends in ``st.error`` with a sentence, never a traceback: bad files are
``ImageError``s from ``core.inference.read_image``; anything else that goes wrong while
classifying one image is reported for that image and the page goes on with the next.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from typing import Any

import numpy as np
import streamlit as st

from core import imaging, jobs, runs
from core.charts import classify as charts
from core.inference import ImageError, Predictor, read_image
from core.charts.classify import format_probability, guess_label, prediction_table, score_table
from core.predictor import PredictorError, model_mtime, top_k_from_probabilities
from ui import common
from ui import imagenet as imagenet_view

LOGGER = logging.getLogger(__name__)

SESSION_DEFAULTS = {"classify_quick_run_id": None}
TOP_K = 5
VIEW_PIXELS = 192  # on-screen width of the model's view and the Grad-CAM overlay
EXAMPLE_PIXELS = 64
NUM_SAMPLES = 8
SIGN_DATASETS = ("gtsrb", "synthetic-signs")
POLL_SECONDS = 2.0
QUICK_TRAIN_CONFIG = {"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
                      "epochs": 4, "labels_per_class": 80}
LIVE_POLL_SECONDS = 1.0
LAN_HTTP_HELP = (
    "This page is open at {url} over plain http from another machine, and browsers only give "
    "the camera to **https** pages or to **localhost**. For live video, serve the app over https "
    "(`streamlit run app.py --server.sslCertFile cert.pem --server.sslKeyFile key.pem`) or open it "
    "on the machine that runs it. Meanwhile, take a photo with the file input below (on a "
    "phone it opens the camera app, which needs no https):"
)
WEBRTC_HELP = (
    "Live webcam classification needs the **streamlit-webrtc** package (`pip install "
    "streamlit-webrtc`), a camera, and a page served over **https** or from **localhost** "
    "(browsers only give the camera to secure pages). Until then, use *Webcam snapshot*, "
    "which works with Streamlit alone."
)


# --- cached resources ---------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_predictor(run_path: str, mtime: float) -> Predictor:
    """Loads a run's ``Predictor`` once per (run folder, model.keras mtime) and warms it up."""
    del mtime  # part of the cache key only: a retrained model.keras is loaded afresh
    predictor = Predictor.from_run(run_path)
    predictor.warm_up()
    return predictor


@st.cache_resource(show_spinner="Preparing Grad-CAM…", max_entries=4)
def load_gradcam(run_path: str, mtime: float) -> tuple[Any, str]:
    """A ``core.gradcam.GradCam`` for the run's model, or ``(None, reason)`` when it has none."""
    from core import gradcam

    predictor = load_predictor(run_path, mtime)
    if not gradcam.has_conv_layer(predictor.model):
        return None, "This model has no convolution layer, so Grad-CAM does not apply."
    try:
        return gradcam.GradCam(predictor.model), ""
    except gradcam.GradCamError as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001 - an unusual model loses Grad-CAM, not the page
        LOGGER.exception("building Grad-CAM failed")
        return None, f"Grad-CAM is not available for this model ({error})."


@st.cache_data(show_spinner="Reading sample images…", max_entries=8)
def dataset_samples(dataset: str, count: int = NUM_SAMPLES) -> dict:
    """A few images spread over a dataset's test (else val) split, for the Samples mode.

    Returns:
        ``{"images": [...], "labels": [class names], "files": [...], "source": text}``; empty
        lists when the dataset is not installed (synthetic signs are generated instead for
        sign datasets).
    """
    from core import datasets

    source = dataset
    if not datasets.registry.is_available(dataset):
        if dataset not in SIGN_DATASETS:
            return {"images": [], "labels": [], "files": [], "source": ""}
        source = "synthetic-signs"
    splits = datasets.registry.get_info(source).splits
    split = "test" if "test" in splits else "val"
    data = datasets.load(source, split)
    picks = np.unique(np.linspace(0, len(data.labels) - 1, count).astype(int))
    return {
        "images": [data.images[index] for index in picks],
        "labels": [data.class_names[data.labels[index]] for index in picks],
        "files": [data.file_names[index] for index in picks],
        "source": f"{source} {split} split" + (" (generated)" if source != dataset else ""),
    }


@st.cache_data(show_spinner="Finding an example of each class…", max_entries=4)
def class_examples(dataset: str) -> dict[str, np.ndarray]:
    """One picture per class name for sign datasets (empty when not installed).

    GTSRB examples come from its validation split; synthetic signs draw one image per class.
    """
    from core import datasets

    if dataset == "synthetic-signs":
        from core.datasets import signs, synthetic_signs

        images, labels, _ = synthetic_signs.generate(range(signs.NUM_CLASSES), 1, "train")
        return {signs.CLASS_NAMES[int(label)]: image for image, label in zip(images, labels)}
    if dataset not in SIGN_DATASETS or not datasets.registry.is_available(dataset):
        return {}
    data = datasets.load(dataset, "val")
    examples: dict[str, np.ndarray] = {}
    for index, label in enumerate(data.labels):
        name = data.class_names[int(label)]
        if name not in examples:
            examples[name] = data.images[index]
    return examples


def apply_run_query_parameter(summaries: list) -> None:
    """Honours ``?run=RUN_ID`` once per session: preselects that run (deep links, demos, tests)."""
    requested = st.query_params.get("run")
    if not requested or st.session_state.get("classify_requested_run") == requested:
        return
    st.session_state["classify_requested_run"] = requested
    match = next((summary for summary in summaries if summary.run_id == requested), None)
    if match is None:
        st.warning(f"Run {requested!r} is not a finished run with a model; showing the best run "
                   "instead.")
        return
    st.session_state["classify_dataset"] = match.dataset
    st.session_state[f"classify_run_{match.dataset}"] = match.run_id


def describe_predictor(predictor: Predictor) -> str:
    """One line about the model's input: classes, size, colour, equalisation, blur, precision."""
    spec = predictor.preprocessing
    color = "grayscale" if predictor.channels == 1 else "RGB"
    blur = spec.get("blur") or 0
    crop = float(spec.get("center_crop", 1.0))
    return (f"{len(predictor.class_names)} classes · input {predictor.image_size}×"
            f"{predictor.image_size} {color} · equalisation {spec.get('equalization', 'none')} · "
            f"blur {f'{blur}×{blur}' if blur else 'off'} · "
            f"centre crop {f'{crop:g}' if crop < 1 else 'off'} · inference in {predictor.precision}")


def predictor_for(summary) -> tuple[Predictor | None, str]:
    """The cached ``Predictor`` of a run summary, or ``(None, message)`` when it cannot load."""
    try:
        return load_predictor(str(summary.path), model_mtime(summary.path)), ""
    except PredictorError as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001 - a broken run must not break the page
        LOGGER.exception("loading %s failed", summary.path)
        return None, f"Could not load run {summary.run_id}: {type(error).__name__}: {error}"


# --- one image --------------------------------------------------------------------------------

def classify_one(predictor: Predictor, image) -> dict:
    """Preprocesses and classifies one image, timing it; returns what ``show_result`` shows."""
    started = time.perf_counter()
    model_view = predictor.preprocess([image])
    probabilities = predictor.predict_preprocessed(model_view)[0]
    latency_ms = (time.perf_counter() - started) * 1000.0
    ranked = top_k_from_probabilities(probabilities[None], predictor.class_names, TOP_K)[0]
    return {"model_view": model_view[0], "probabilities": probabilities, "ranked": ranked,
            "latency_ms": latency_ms}


def show_result(predictor: Predictor, explainer, name: str, image, key: str,
                true_label: str | None = None, examples: dict | None = None,
                show_gradcam: bool = True) -> dict | None:
    """Classifies one decoded image and renders it; reports any failure with ``st.error``.

    Returns:
        The ``classify_one`` result, or None when it failed.
    """
    try:
        result = classify_one(predictor, image)
    except Exception as error:  # noqa: BLE001 - one bad image must not stop the others
        LOGGER.exception("classifying %s failed", name)
        st.error(f"**{name}**: could not classify this image ({error}).",
                 icon=":material/error:")
        return None
    top = result["ranked"][0]
    color = "grayscale" if predictor.channels == 1 else "RGB"
    with st.container(border=True, key=f"{key}_card"):
        st.markdown(f"##### {name}")
        left, middle, right = st.columns([1, 2, 1])
        with left:
            height, width = np.asarray(image).shape[:2]
            st.image(image, caption=f"input, {width}×{height}", width=VIEW_PIXELS)
            st.image(imaging.enlarge(result["model_view"], VIEW_PIXELS),
                     caption=f"what the model sees: {predictor.image_size}×"
                             f"{predictor.image_size} {color}", width=VIEW_PIXELS)
        with middle:
            verdict = f"**Top-1: {top['class_name']} — {format_probability(top['probability'])}**"
            if true_label is not None:
                mark = "✅ right" if top["class_name"] == true_label else "❌ wrong"
                verdict += f"  \ntrue class: {true_label} ({mark})"
            st.markdown(verdict)
            st.plotly_chart(charts.top_k_figure(result["ranked"], true_class=true_label),
                            key=f"{key}_chart", config={"displayModeBar": False})
            st.caption(f"Latency: {result['latency_ms']:.1f} ms (preprocessing + model, "
                       f"after warm-up)")
            imagenet_view.imagenet_top_k(image, key)
        with right:
            if show_gradcam and explainer is not None:
                _show_gradcam(explainer, result, top)
        if examples:
            _show_examples(examples, result["ranked"])
    return result


def _show_gradcam(explainer, result: dict, top: dict) -> None:
    from core.gradcam import overlay_heatmap

    try:
        heatmaps, _ = explainer.heatmaps(result["model_view"][None].astype("float32"),
                                         class_indices=[top["class_id"]])
        overlay = overlay_heatmap(result["model_view"], heatmaps[0], size=VIEW_PIXELS)
    except Exception as error:  # noqa: BLE001 - the explanation is optional, the result is not
        LOGGER.exception("Grad-CAM failed")
        st.warning(f"Grad-CAM failed for this image: {error}")
        return
    st.image(overlay, caption=f"Grad-CAM for “{top['class_name']}” on layer "
                              f"{explainer.layer_name}", width=VIEW_PIXELS)


def _show_examples(examples: dict, ranked: list[dict]) -> None:
    shown = [row for row in ranked if row["class_name"] in examples]
    if not shown:
        return
    st.caption("A training picture of each predicted class:")
    columns = st.columns(len(shown))
    for column, row in zip(columns, shown):
        column.image(imaging.enlarge(examples[row["class_name"]], EXAMPLE_PIXELS),
                     caption=f"{row['class_name']} ({format_probability(row['probability'])})",
                     width=EXAMPLE_PIXELS)


def decode_uploads(files) -> list[tuple[str, Any]]:
    """Decodes uploaded files, showing one ``st.error`` per bad file; returns the good ones."""
    decoded = []
    for uploaded in files or []:
        try:
            decoded.append((uploaded.name, read_image(uploaded.getvalue(), max_bytes=common.max_upload_bytes())))
        except ImageError as error:
            st.error(f"**{uploaded.name}**: {error}", icon=":material/broken_image:")
        except Exception as error:  # noqa: BLE001 - whatever Pillow does, the page goes on
            LOGGER.exception("decoding %s failed", uploaded.name)
            st.error(f"**{uploaded.name}**: this file could not be read ({error}).",
                     icon=":material/broken_image:")
    return decoded


def upload_caption() -> str:
    """The formats and the size limit, for the upload widgets' help."""
    return (f"{imaging.FORMATS_TEXT}; up to {common.max_upload_megabytes()} MB per file "
            f"(server.maxUploadSize) and {imaging.MAX_IMAGE_PIXELS / 1e6:g} megapixels.")


def files_digest(files) -> str:
    """A short digest of the uploaded files (names and sizes) for keys that follow the upload."""
    text = "|".join(f"{item.name}:{item.size}" for item in files or [])
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# --- "images from the internet" ----------------------------------------------------------------

def internet_mode(predictor: Predictor) -> None:
    """Several uploads with optional true labels → predictions table, accuracy, CSV download."""
    st.markdown(
        "As in the study's slide: collect a few pictures from the web, upload them together, "
        "give their true class if you know it (file names like `cat.1.jpg` are recognised), "
        "and see how the model does on images it has never met.")
    files = st.file_uploader("Images from the internet", type=list(imaging.UPLOAD_EXTENSIONS),
                             accept_multiple_files=True, key="classify_internet_upload",
                             help=upload_caption())
    decoded = decode_uploads(files)
    if not decoded:
        st.info("Upload two or more images to get a table of predictions.")
        return
    names = [name for name, _ in decoded]
    started = time.perf_counter()
    probabilities = predictor.predict([image for _, image in decoded])
    milliseconds = (time.perf_counter() - started) * 1000.0 / len(decoded)
    guesses = [guess_label(name, predictor.class_names) for name in names]
    table = prediction_table(names, probabilities, predictor.class_names, guesses)
    st.caption(f"{len(decoded)} image(s), {milliseconds:.1f} ms per image in one batch.")
    edited = st.data_editor(
        table,
        key=f"classify_internet_labels_{files_digest(files)}",
        hide_index=True,
        disabled=["file", "predicted", "confidence"],
        column_config={
            "confidence": st.column_config.NumberColumn("confidence", format="percent"),
            "true label": st.column_config.SelectboxColumn(
                "true label", options=list(predictor.class_names),
                help="Optional: the class the image really shows"),
        },
    )
    scored, accuracy, count = score_table(edited)
    columns = st.columns(3)
    columns[0].metric("Images", len(scored))
    columns[1].metric("With a true label", count)
    columns[2].metric("Accuracy", format_probability(accuracy) if accuracy is not None else "—")
    if count:
        st.plotly_chart(charts.per_class_accuracy_figure(scored), key="classify_internet_chart")
    st.download_button("Download the table as CSV", scored.to_csv(index=False).encode("utf-8"),
                       file_name="predictions.csv", mime="text/csv",
                       key="classify_internet_csv")
    thumbnails = st.columns(min(6, len(decoded)))
    for index, ((name, image), row) in enumerate(zip(decoded, scored.itertuples(index=False))):
        thumbnails[index % len(thumbnails)].image(
            image, caption=f"{row.predicted} ({format_probability(row.confidence)})",
            width=120)


# --- live webcam (streamlit-webrtc) -----------------------------------------------------------

def live_mode(predictor: Predictor, key: str = "classify_live") -> None:
    """Live webcam classification: top-3 and FPS drawn on the video, the last answer under it.

    Over plain http from another machine (a LAN seminar), browsers refuse the camera: the page
    says so and offers a snapshot instead.

    Args:
        predictor: the run's ``Predictor``.
        key: widget key prefix (one per place on a page).
    """
    import importlib.util

    from core import live

    if importlib.util.find_spec("streamlit_webrtc") is None:  # in requirements.txt; absent on trimmed installs
        st.info(WEBRTC_HELP, icon=":material/videocam_off:")
        _snapshot_fallback(predictor, key)
        return
    if "tensorflow" in sys.modules and "pylibsrtp" not in sys.modules:
        # Importing the WebRTC stack now would crash the server (see common.preload_webrtc_binding).
        st.error("Live video needs the server started through `app.py` (`make run` or `streamlit "
                 "run app.py`), which loads the WebRTC libraries before TensorFlow. Use a snapshot "
                 "meanwhile.", icon=":material/videocam_off:")
        _snapshot_fallback(predictor, key)
        return
    url = _page_url()
    if not live.is_secure_origin(url):
        st.warning(LAN_HTTP_HELP.format(url=url), icon=":material/lock_open:")
        _snapshot_fallback(predictor, key, secure=False)
        return
    try:
        _live_stream(predictor, key)
    except Exception as error:  # noqa: BLE001 - a camera/https problem must not break the page
        LOGGER.exception("live webcam failed")
        st.error(f"The live webcam could not start ({error}). {WEBRTC_HELP}")


def _page_url() -> str | None:
    try:
        return st.context.url
    except Exception:  # noqa: BLE001 - AppTest and old servers have no URL
        return None


def _snapshot_fallback(predictor: Predictor, key: str, secure: bool = True) -> None:
    """A snapshot instead of video: the camera widget on secure pages; elsewhere a file input,
    which on a phone opens its camera app (that works over plain http)."""
    if secure:
        shot = st.camera_input("Take a picture instead", key=f"{key}_snapshot")
    else:
        shot = st.file_uploader("Take a photo (phones open the camera) or upload one",
                                type=list(imaging.UPLOAD_EXTENSIONS), key=f"{key}_snapshot_upload",
                                help=upload_caption())
    if shot is not None:
        for _, image in decode_uploads([shot]):
            show_result(predictor, None, "webcam snapshot", image, key=f"{key}_snapshot_result",
                        show_gradcam=False)


def _annotator(predictor: Predictor, key: str):
    """One ``core.live.FrameAnnotator`` per (widget, predictor) in this session."""
    from core import live

    state_key = f"{key}_annotator"
    annotator = st.session_state.get(state_key)
    if annotator is None or annotator.predictor is not predictor:
        annotator = live.FrameAnnotator(predictor)
        st.session_state[state_key] = annotator
    return annotator


def _live_stream(predictor: Predictor, key: str) -> None:
    import av
    from streamlit_webrtc import webrtc_streamer

    annotator = _annotator(predictor, key)

    def annotate(frame):  # runs in streamlit-webrtc's thread: no st.* calls here
        image = annotator(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(image, format="rgb24")

    context = webrtc_streamer(key=key, video_frame_callback=annotate,
                              media_stream_constraints={"video": True, "audio": False})
    st.caption("Press START and allow the camera: each frame goes through the chosen run's "
               "model; its top-3 classes and the frames per second are drawn on the video.")
    _live_answer(annotator, key, bool(context.state.playing))


@st.fragment(run_every=LIVE_POLL_SECONDS)
def _live_answer(annotator, key: str, playing: bool) -> None:
    """The last answer in text under the video, refreshed while frames arrive."""
    from core import live

    if playing or annotator.last() is not None:
        st.markdown(live.summary_text(annotator.last()))


# --- bare machine: quick train -------------------------------------------------------------

def quick_train_panel() -> None:
    """No finished run: offer a one-click small LeNet on synthetic signs and follow it."""
    run_id = st.session_state.get("classify_quick_run_id")
    if run_id is None:  # a training started elsewhere (or before a reload) is followed too
        active = jobs.active_runs()
        run_id = active[0] if active else None
    if run_id is None:
        st.info("There is no finished training run on this machine yet, so there is no model "
                "to classify with.", icon=":material/info:")
        st.markdown(
            "**Quick train** a small LeNet-5 on the offline *synthetic signs* (drawn traffic "
            f"signs, {QUICK_TRAIN_CONFIG['epochs']} epochs, about a minute on 2 CPU cores). It "
            "runs in the background; this page follows it and switches to classification when "
            "it is done.")
        if st.button("Quick train on synthetic signs", key="classify_quick_train",
                     type="primary", icon=":material/bolt:"):
            try:
                st.session_state["classify_quick_run_id"] = jobs.submit(dict(QUICK_TRAIN_CONFIG))
            except Exception as error:  # noqa: BLE001 - a failed submit is reported, not raised
                LOGGER.exception("quick train submit failed")
                st.error(f"Could not start the quick training: {error}")
                return
            st.rerun()
        return
    _quick_train_progress(run_id)


@st.fragment(run_every=POLL_SECONDS)
def _quick_train_progress(run_id: str) -> None:
    """Polls the quick-train job; reruns the whole page when it has finished."""
    try:
        status = jobs.status(run_id)
    except runs.RunError as error:
        st.error(f"The training run {run_id} disappeared: {error}")
        st.session_state["classify_quick_run_id"] = None
        return
    state = status.get("state")
    if state in (runs.QUEUED, runs.RUNNING):
        info = jobs.progress(status)
        text = f"Training {run_id}: {state}"
        if info["total_epochs"]:
            text += f", epoch {max(info['epoch'], 1)} of {info['total_epochs']}"
        if info["eta_seconds"] is not None:
            text += f", about {info['eta_seconds']:.0f} s left"
        st.progress(info["fraction"], text=text + "…")
        return
    if state == runs.COMPLETED:
        st.success(f"Training {run_id} finished.")
        st.session_state["classify_quick_run_id"] = None
        st.rerun(scope="app")
    elif state == runs.FAILED:
        st.error(f"Training {run_id} failed: {status.get('error') or 'see its train.log'}")
    else:
        st.warning(f"Training {run_id} was {state}.")
    if st.button("Start again", key="classify_quick_reset"):
        st.session_state["classify_quick_run_id"] = None
        st.rerun(scope="app")
