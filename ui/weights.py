"""The 'ImageNet weights' section of the Data & weights page: status, upload, download, delete.

Everything goes through ``core.weights`` (the same code as ``python -m core.weights``): an
upload is streamed by ``core.weights.import_stream`` straight into the data root's staging
folder (refused beyond its size bound), identified layer by layer, installed atomically, and
the staged copy removed whatever happens.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import weights
from core.models import backbones

KEY = "weights"
UPLOAD_TYPES = ("h5",)


def _status_table() -> None:
    table = pd.DataFrame(weights.rows())
    table["size"] = table["size"].map(lambda size: f"{size / 1e6:.1f} MB" if size else "")
    st.dataframe(table[["backbone", "variant", "status", "alpha", "size", "source", "installed_at", "sha256"]],
                 hide_index=True, key=f"{KEY}_table")


def _import_upload(backbone: str, upload) -> None:
    upload.seek(0)  # a rerun may find it read to the end
    bar = st.progress(0.0, text=f"Checking {upload.name}…")
    try:
        entry = weights.import_stream(
            backbone, upload, display_name=upload.name, source_label=f"upload {upload.name}",
            size=upload.size, progress=lambda done, total: bar.progress(min(1.0, done / max(total or 0, 1))))
        bar.empty()
        st.success(f"Installed {backbone} {entry['variant']} (alpha {entry['alpha']}, {entry['layers']} "
                   f"layers, sha256 {entry['sha256'][:16]}…) from {upload.name}.", icon=":material/check_circle:")
    except weights.WeightsFileError as error:
        st.error(f"Refused: {error}. Nothing was installed.", icon=":material/block:")


def _download(backbone: str) -> None:
    variants = (weights.NO_TOP,) if backbone == backbones.VGG16 else weights.VARIANTS
    for variant in variants:
        bar = st.progress(0.0, text=f"Downloading {backbone} {variant}…")

        def report(done: int, total: int | None, bar=bar, variant=variant) -> None:
            if total:
                bar.progress(min(1.0, done / total),
                             text=f"{backbone} {variant}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

        try:
            entry = weights.download(backbone, variant, progress=report)
        except weights.WeightsUnavailableError as error:
            bar.empty()
            st.error(str(error), icon=":material/wifi_off:")
            return
        bar.progress(1.0, text=f"{backbone} {variant}: installed (sha256 {entry['sha256'][:16]}…)")


def weights_section() -> None:
    """Renders the ImageNet weights section (call it from the Data & weights page)."""
    st.header("ImageNet weights", anchor="imagenet-weights")
    st.markdown(
        "Transfer learning starts from a network pretrained on ImageNet. Install its weights once and "
        "every page and `--weights imagenet` work **offline**. Each backbone has two files: *no top* "
        "(the convolutional base, what transfer learning uses) and *with top* (the 1,000-class "
        "classifier, for **what ImageNet already sees** on the Classify page). The same from a "
        "terminal: `python -m core.weights get mobilenetv2 --from FILE`.")
    _status_table()
    backbone = st.selectbox("Backbone", backbones.BACKBONE_NAMES, key=f"{KEY}_backbone",
                            format_func=backbones.BACKBONE_TITLES.get)
    upload_column, download_column = st.columns(2)
    with upload_column:
        upload = st.file_uploader("Upload a weights file (.h5 or .weights.h5)", type=UPLOAD_TYPES,
                                  key=f"{KEY}_upload",
                                  help="The variant (top or no top) and the width are detected from "
                                       "the file's layers; a file that does not fit is refused.")
        if upload is not None and st.button("Import this file", key=f"{KEY}_import", icon=":material/upload:"):
            _import_upload(backbone, upload)
    with download_column:
        st.caption(f"Online? Download Keras' official files for {backbone} "
                   f"({'no top only: the with-top file is 553 MB' if backbone == backbones.VGG16 else 'both variants'}).")
        if st.button("Download from Keras", key=f"{KEY}_download", icon=":material/cloud_download:"):
            _download(backbone)
        if any(weights.installed(backbone, variant) for variant in weights.VARIANTS):
            if st.button(f"Delete {backbone}'s weights", key=f"{KEY}_delete", icon=":material/delete:"):
                weights.delete(backbone)
                st.toast(f"Deleted {backbone}'s weights")
                st.rerun()
