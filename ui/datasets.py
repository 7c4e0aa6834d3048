"""Streamlit pieces of the Datasets page (the page file only wires them together)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import paths, serving
from core.charts import datasets as dataset_charts
from core.datasets import DatasetError, background, base, download, preview, registry
from core.datasets import preprocess
from ui import common

POLL_SECONDS = 1.0
STATUS_ICONS = {"absent": ":gray[:material/radio_button_unchecked:]",
                "downloading": ":orange[:material/downloading:]",
                "ready": ":green[:material/check_circle:]", "broken": ":red[:material/error:]"}
SHORT_TITLES = {"gtsrb": "GTSRB", "dogs-vs-cats": "Dogs vs Cats", "synthetic-signs": "Synthetic signs"}
PREVIEW_CLASSES = {"gtsrb": [1, 9, 13, 14, 17, 25, 33, 38], "synthetic-signs": [1, 9, 13, 14, 17, 25, 33, 38]}
DOWNLOAD_NOTES = {
    "gtsrb": "three official zips from sid.erda.dk (276 MB training + 84 MB test + labels), MD5-checked",
    "dogs-vs-cats": "Google's cats_and_dogs_filtered.zip (68 MB, 3,000 images) or Microsoft's full "
                    "kagglecatsanddogs_5340.zip (825 MB, 25,000 images, SHA-256-checked)",
}
IMPORT_HINTS = {
    "gtsrb": "GTSRB_Final_Training_Images.zip (and/or GTSRB_Final_Test_Images.zip + "
             "GTSRB_Final_Test_GT.zip), their extracted folder, or a folder holding them",
    "dogs-vs-cats": "Kaggle's train.zip (cat.N.jpg / dog.N.jpg), cats_and_dogs_filtered.zip, "
                    "kagglecatsanddogs_5340.zip, or any folder with one sub-folder of images per class",
}
TRACK_SPLIT_TEXT = """
**Why GTSRB's validation set is split by track.** The training images come in *tracks*: up to
30 consecutive frames of the same physical sign, filmed from an approaching car (`TTTTT_FFFFF.ppm`:
track `TTTTT`, frame `FFFFF`). Frames of one track are near-duplicates. A random split puts
frames of the same sign on both sides, so validation accuracy measures how well the network
*remembers* a sign, not how well it recognises a new one: a plain LeNet measured **98.3%** on a
random validation split but only **92.9%** on the official test set. Here whole tracks go to
validation, stratified by class (about 11% of each class, seeded), so validation accuracy
predicts test accuracy.
"""


def short_title(name: str) -> str:
    """The radio label of a dataset (a custom dataset shows its own name)."""
    return SHORT_TITLES.get(name, name)


def data_version(name: str) -> str:
    """Changes whenever the dataset's manifest or cache changes (a cache key for the page)."""
    folder = base.dataset_dir(name)
    stamps = []
    for path in (folder / base.MANIFEST_NAME, folder / base.CACHE_FOLDER, folder):
        try:
            stamps.append(str(path.stat().st_mtime_ns))
        except OSError:
            stamps.append("-")
    return f"{paths.data_dir()}|{'|'.join(stamps)}"


@st.cache_data(show_spinner=False, max_entries=32)
def cached_counts(name: str, version: str) -> dict:
    """Counts per split and class (no decoding); cached per data version."""
    del version
    return registry.split_counts(name)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_disk_usage(name: str, version: str) -> dict:
    del version
    return registry.disk_usage(name)


@st.cache_data(show_spinner="Reading sample images…", max_entries=16)
def cached_samples(name: str, version: str, per_class: int, classes: tuple | None, split: str, seed: int):
    del version
    return preview.samples(name, per_class=per_class, classes=classes, split=split, seed=seed)


@st.cache_resource(show_spinner="Building the Keras augmentation layers (first use imports TensorFlow)…")
def cached_augmentation(spec_items: tuple):
    return preprocess.build_augmentation(dict(spec_items))


def overview_table() -> pd.DataFrame:
    """One row per dataset: status, size on disk, images per split."""
    rows = []
    for name in registry.dataset_names():
        details = registry.status_details(name)
        version = data_version(name)
        counts = cached_counts(name, version)["counts"] if details["status"] == "ready" else {}
        rows.append({
            "dataset": name,
            "title": registry.get_info(name).title,
            "status": details["status"],
            "on disk": download.human_bytes(cached_disk_usage(name, version)["total"]),
            **{split: (f"{sum(counts[split]):,}" if split in counts else "–") for split in base.SPLITS},
        })
    return pd.DataFrame(rows)


def _progress_fraction(record: dict | None) -> float:
    if not record or not record.get("total"):
        return 0.0
    return float(np.clip(record.get("done", 0) / max(record["total"], 1), 0.0, 1.0))


def _progress_text(record: dict | None) -> str:
    if not record:
        return "starting…"
    phase, done, total = record.get("phase", ""), record.get("done", 0), record.get("total")
    if phase.startswith("download"):
        amount = download.human_bytes(done) + (f" of {download.human_bytes(total)}" if total else "")
    else:
        amount = f"{done:,}" + (f" of {total:,}" if total else "")
    return f"{phase}: {amount}"


def render_status(name: str) -> None:
    """Status line, progress while running, last failure; reruns the page when a job ends."""
    details = registry.status_details(name)
    state = details["status"]
    key = f"datasets_last_status_{name}"
    previous = st.session_state.get(key)
    st.session_state[key] = state
    if previous == "downloading" and state != "downloading":
        st.rerun()
    label = f"{STATUS_ICONS[state]} Status: **{state}**"
    if details["reason"] and state != "downloading":
        label += f" — {details['reason']}"
    st.markdown(label)
    record = details["progress"]
    if state == "downloading":
        st.progress(_progress_fraction(record), text=_progress_text(record))
    elif record and record.get("state") == "failed":
        st.error(f"Last download/import failed: {record.get('message', '')}", icon=":material/error:")
        log = background.read_log(name)
        if log:
            with st.expander("Output of the failed process"):
                st.code(log[-3000:])
    elif record and record.get("state") == "done" and record.get("message"):
        st.caption(f"Last download/import: {record['message']}")


@st.fragment(run_every=POLL_SECONDS)
def polling_status(name: str) -> None:
    """``render_status`` refreshed every second (used only while a job runs)."""
    render_status(name)


def render_metrics(name: str, counts: dict, usage: dict) -> None:
    columns = st.columns(5)
    columns[0].metric("On disk", download.human_bytes(usage["total"]),
                      help=f"{download.human_bytes(usage['data'])} data + {download.human_bytes(usage['cache'])} decoded cache")
    for column, split in zip(columns[1:4], base.SPLITS):
        per_class = counts.get("counts", {}).get(split)
        column.metric(f"{split} images", f"{sum(per_class):,}" if per_class else "–")
    columns[4].metric("Classes", len(counts.get("class_names", [])))


def start(name: str, sources=None, variant=None, cleanup=None) -> None:
    """Starts a background get; reports problems on the page."""
    try:
        _, joined = background.start_or_join(name, sources, variant=variant, cleanup=cleanup)
    except DatasetError as error:
        for folder in cleanup or []:
            base.remove_tree(Path(folder))
            try:
                Path(folder).parent.rmdir()  # the uploads folder, when no other upload is in it
            except OSError:
                pass
        st.session_state["datasets_message"] = ("error", str(error))
    else:
        text = (f"A download/import of {name} was already running (started from another session); "
                "its progress is shown below and your request was not started again."
                if joined else f"Started: {name} runs in a background process.")
        st.session_state["datasets_message"] = ("info", text)


def render_actions(name: str, state: str) -> None:
    """Download, import (path box and zip uploader) and delete (with confirmation)."""
    busy = state == "downloading"
    info = registry.get_info(name)
    if base.is_custom(name):
        left, right = st.columns(2)
        with left:
            st.markdown("**Your own dataset**: built from your images with "
                        "`python -m core.datasets create` or the *Your own classes* page. "
                        "To change it, delete it and create it again.")
        with right:
            render_delete(name, busy, "Delete")
        return
    if info.synthetic:
        left, right = st.columns(2)
        with left:
            st.markdown("**Generate**: all three splits at 32 px, cached on disk (a few seconds).")
            if st.button("Generate and cache", key=f"datasets_generate_{name}", disabled=busy):
                start(name)
                st.rerun()
        with right:
            render_delete(name, busy, "Delete cached images")
        return
    download_column, import_column, delete_column = st.columns([1, 2, 1])
    with download_column:
        st.markdown("**Download**")
        st.caption(DOWNLOAD_NOTES[name])
        variant = None
        if name == "dogs-vs-cats":
            variant = st.radio("Source", download.DOGS_VARIANTS, key="datasets_variant", horizontal=True,
                               format_func=lambda value: {"filtered": "filtered (68 MB)",
                                                          "microsoft": "Microsoft (825 MB)"}[value])
        if st.button("Download", key=f"datasets_download_{name}", disabled=busy, icon=":material/download:"):
            start(name, variant=variant)
            st.rerun()
    with import_column:
        st.markdown("**Import from files**")
        st.caption(IMPORT_HINTS[name])
        if common.server_paths_allowed():
            render_path_import(name, busy)
        else:
            st.caption("LAN mode: upload the zip(s); paths on the server are not accepted here.")
        uploads = st.file_uploader("…or upload zip(s)", type=["zip"], accept_multiple_files=True,
                                   key=f"datasets_upload_{name}")
        if uploads and st.button("Import uploaded zip(s)", key=f"datasets_import_upload_{name}", disabled=busy):
            try:
                background.check_uploads([upload.size for upload in uploads])
            except DatasetError as error:
                st.session_state["datasets_message"] = ("error", str(error))
                st.rerun()
            folder = background.upload_dir(name)
            saved = []
            for index, upload in enumerate(uploads):
                target = background.upload_target(folder, index, upload.name)
                target.write_bytes(upload.getbuffer())
                saved.append(str(target))
            start(name, saved, cleanup=[str(folder)])
            st.rerun()
    with delete_column:
        render_delete(name, busy, "Delete")


def render_path_import(name: str, busy: bool) -> None:
    """The "Path(s) on this machine" box and its button (only where server paths are allowed)."""
    text = st.text_area("Path(s) on this machine, one per line", key=f"datasets_import_path_{name}",
                        height=68, placeholder="/path/to/GTSRB_Final_Training_Images.zip")
    if st.button("Import from path", key=f"datasets_import_{name}", disabled=busy, icon=":material/input:"):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            st.session_state["datasets_message"] = ("error", "Type a path first.")
            st.rerun()
        try:
            chosen = [str(serving.check_server_path(line, common.server_address())) for line in lines]
        except ValueError as error:
            st.session_state["datasets_message"] = ("error", str(error))
            st.rerun()
        missing = [line for line, path in zip(lines, chosen) if not os.path.exists(path)]
        if missing:
            st.session_state["datasets_message"] = (
                "error", f"{missing[0]} does not exist; expected a zip file or a folder")
        else:
            start(name, chosen)
        st.rerun()


def render_delete(name: str, busy: bool, label: str) -> None:
    confirm_key = f"datasets_confirm_delete_{name}"
    if not st.session_state.get(confirm_key):
        st.markdown("**Delete**")
        if st.button(label, key=f"datasets_delete_{name}", disabled=busy, icon=":material/delete:"):
            st.session_state[confirm_key] = True
            st.rerun()
        return
    size = download.human_bytes(registry.disk_usage(name)["total"])
    st.warning(f"Delete {name} ({size}) from {base.dataset_dir(name)}?")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key=f"datasets_delete_yes_{name}", type="primary"):
        st.session_state[confirm_key] = False
        try:
            freed = registry.delete(name)
            st.session_state["datasets_message"] = ("success", f"Deleted {name}: {download.human_bytes(freed)} freed.")
        except DatasetError as error:
            st.session_state["datasets_message"] = ("error", str(error))
        st.cache_data.clear()
        st.rerun()
    if no.button("Cancel", key=f"datasets_delete_no_{name}"):
        st.session_state[confirm_key] = False
        st.rerun()


def render_message() -> None:
    message = st.session_state.pop("datasets_message", None)
    if message:
        kind, text = message
        getattr(st, kind)(text)


def render_distribution(name: str, counts: dict) -> None:
    per_split = counts.get("counts", {})
    if not per_split:
        return
    figure = dataset_charts.class_distribution_figure(counts["class_names"], per_split,
                                                      title=f"{short_title(name)}: images per class and split")
    st.plotly_chart(figure, key=f"datasets_distribution_{name}")
    tracks = counts.get("tracks")
    if tracks:
        verdict = "none" if tracks["shared"] == 0 else f"{tracks['shared']} (!)"
        st.caption(f"Tracks: {tracks['train']:,} in train, {tracks['val']:,} in validation, "
                   f"shared by both: {verdict}.")
    skipped = counts.get("skipped")
    if skipped and any(skipped.values()):
        st.caption("Skipped at import: " + ", ".join(f"{value:,} {key.replace('_', ' ')}"
                                                    for key, value in skipped.items() if value))


def render_samples(name: str, version: str) -> None:
    """One image per class as a grid, and more images of one chosen class."""
    info = registry.get_info(name)
    images, labels, _ = cached_samples(name, version, 1, None, "train", 0)
    if not images:
        st.info("No images to show.")
        return
    columns = 11 if len(info.class_names) > 10 else len(info.class_names)
    caption = "One training image per class" + (" (class ids in reading order)" if columns > 2 else "")
    st.image(preview.grid(images, columns=columns, tile=72), caption=caption)
    choice = st.selectbox("Show more of class", range(len(info.class_names)), key=f"datasets_sample_class_{name}",
                          format_func=lambda class_id: preview.class_label(name, class_id))
    more, _, file_names = cached_samples(name, version, 12, (int(choice),), "train", 1)
    st.image(preview.grid(more, columns=12, tile=64),
             caption=f"{preview.class_label(name, int(choice))}: " + ", ".join(file_names[:4]) + "…")


def preprocessing_spec_controls(name: str) -> tuple[dict, dict, str, bool]:
    """The before/after controls; returns (preprocessing spec, augmentation spec, normalisation,
    show augmentation)."""
    natural = registry.get_info(name).natural_image_size
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**Preprocessing** (applied once, identically at training and inference)")
        size = st.select_slider("Image size", options=[16, 24, 32, 48, 64, 96, 128, 160, 224],
                                value=natural, key=f"datasets_pp_size_{name}")
        color = st.radio("Colour", preprocess.COLORS, horizontal=True, key=f"datasets_pp_color_{name}")
        equalization = st.radio("Histogram equalisation", preprocess.EQUALIZATIONS, horizontal=True,
                                key=f"datasets_pp_equalization_{name}")
        blur = st.select_slider("Gaussian blur (kernel)", options=[0, 3, 5, 7], value=0,
                                key=f"datasets_pp_blur_{name}")
        center_crop = st.slider("Centre crop (share kept)", preprocess.MIN_CENTER_CROP, 1.0, 1.0, 0.05,
                                key=f"datasets_pp_center_crop_{name}",
                                help="Trims a fixed border before resizing (GTSRB keeps ~10 % "
                                     "around each sign).")
        normalization = st.radio("Normalisation (inside the model)", preprocess.NORMALIZATION_MODES,
                                 index=1, horizontal=True, key=f"datasets_pp_normalization_{name}",
                                 format_func=lambda mode: {"none": "none", "scale": "/255",
                                                           "caffe": "VGG caffe"}[mode])
    signs_like = name != "dogs-vs-cats"
    with middle:
        st.markdown("**Augmentation** (Keras layers, training only)")
        rotation = st.slider("Rotation ± degrees", 0, 45, 10 if signs_like else 20, key=f"datasets_aug_rotation_{name}")
        shift = st.slider("Shift (fraction)", 0.0, 0.3, 0.1, 0.05, key=f"datasets_aug_shift_{name}")
        zoom = st.slider("Zoom (fraction)", 0.0, 0.3, 0.1, 0.05, key=f"datasets_aug_zoom_{name}")
    with right:
        st.markdown("&nbsp;")
        brightness = st.slider("Brightness (fraction)", 0.0, 0.5, 0.2, 0.05, key=f"datasets_aug_brightness_{name}")
        flip = st.radio("Flip", ["none", "horizontal"], index=0 if signs_like else 1, horizontal=True,
                        key=f"datasets_aug_flip_{name}",
                        help="Off for traffic signs: a mirrored 'keep left' means 'keep right'.")
        show = st.toggle("Show augmented samples", key=f"datasets_aug_show_{name}",
                         help="Runs the real Keras layers (the first time imports TensorFlow).")
    preprocessing_spec = {"image_size": int(size), "color": color, "equalization": equalization,
                          "blur": int(blur), "center_crop": float(center_crop)}
    augmentation_spec = {"rotation_degrees": float(rotation), "shift": float(shift), "zoom": float(zoom),
                         "brightness": float(brightness), "flip": flip}
    return preprocessing_spec, augmentation_spec, normalization, show


def render_before_after(name: str, version: str) -> None:
    preprocessing_spec, augmentation_spec, normalization, show = preprocessing_spec_controls(name)
    classes = PREVIEW_CLASSES.get(name)
    images, labels, _ = cached_samples(name, version, 1 if classes else 4,
                                       tuple(classes) if classes else None, "train", 2)
    if not images:
        return
    after = preprocess.apply_preprocessing(images, preprocessing_spec)
    columns = len(images)
    sizes = sorted({f"{image.shape[1]}×{image.shape[0]}" for image in images})
    st.image(preview.grid(images, columns=columns, tile=96),
             caption=f"Before: original images ({', '.join(sizes[:4])}{'…' if len(sizes) > 4 else ''} px)")
    st.image(preview.grid(after, columns=columns, tile=96),
             caption=f"After preprocessing: {after.shape[1]}×{after.shape[2]}×{after.shape[3]} "
                     "(what the model sees, shown enlarged)")
    before_resized = preprocess.apply_preprocessing(images, {"image_size": preprocessing_spec["image_size"]})
    st.plotly_chart(dataset_charts.pixel_histogram_figure(before_resized, after),
                    key=f"datasets_histogram_{name}")
    if after.shape[-1] == 3 or normalization != "caffe":
        normalized = preprocess.normalize(after, normalization)
        st.caption(f"Normalisation '{normalization}' (done by the model's first layers): values "
                   f"{normalized.min():.2f} … {normalized.max():.2f}, mean {normalized.mean():.2f}.")
    else:
        st.caption("VGG's caffe normalisation needs RGB images; choose colour 'rgb'.")
    if show:
        augmentation = cached_augmentation(tuple(sorted(augmentation_spec.items())))
        batch = np.repeat(after[:1].astype("float32"), 8, axis=0)
        augmented = np.asarray(augmentation(batch, training=True))
        augmented = np.clip(augmented, 0, 255).astype(np.uint8)
        st.image(preview.grid(augmented, columns=8, tile=96),
                 caption="Augmented: 8 random training-time versions of the first image "
                         "(at inference the layers pass images through unchanged)")
