"""Home: what the app does, the suggested path, and what this machine offers."""

import streamlit as st

from core import availability, results, runs, serving
from ui import cluster, common

common.page_header(
    "Transfer Learning Lab",
    "Learn, run and compare **transfer learning** for CNN image classification, following a "
    "seminar study: LeNet-5 trained from scratch on German traffic signs (GTSRB), and VGG16 "
    "pretrained on ImageNet reused for Dogs vs Cats.",
)

st.info(serving.mode_description(common.server_address()), icon=":material/lan:")

st.subheader("A suggested path")
st.markdown(
    """
1. **CNN concepts**: output sizes, receptive fields, and a convolution playground.
2. **Datasets**: fetch or import GTSRB and Dogs vs Cats, or use the offline synthetic signs.
3. **Train LeNet-5**: a real Keras job in the background, with live curves.
4. **Transfer learning**: feature extraction, fine-tuning and a scratch baseline.
5. **Compare runs**: scratch against transfer, curve by curve.
6. **Classify images**: upload a photo or use the webcam.
"""
)

st.subheader("GTSRB results of the LeNet presets")
st.caption(
    "Measured from the completed GTSRB runs in this app's runs folder that use a preset's own "
    "settings (only the seed may differ); the test figures are on the test split installed here "
    "(the official 12,630 images, or the 200-image sample). Run a command to add or refresh a row; "
    "the published anchors are on the official test set."
)
st.dataframe(results.preset_rows(runs.list_runs()), hide_index=True, key="home_results_table")

st.subheader("This machine")
report = common.environment_report()
columns = st.columns(4)
columns[0].metric("Python", report["python"])
columns[1].metric("TensorFlow", report["tensorflow"] or "not installed")
columns[2].metric("Keras", f"{report['keras'] or '?'} ({report['keras_backend'] or 'no backend'})")
columns[3].metric("CPU cores", report["cpu_count"])
if report["gpus"]:
    st.dataframe(
        [
            {"GPU": gpu["index"], "name": gpu["name"], "memory (MiB)": gpu.get("memory_mib")}
            for gpu in report["gpus"]
        ],
        hide_index=True,
        key="home_gpu_table",
    )
else:
    st.caption("No GPU visible: training runs on the CPU (small presets are sized for 2 cores).")

st.subheader("Where training jobs run")
cluster.cluster_panel(key="home_cluster")

st.subheader("Datasets and backbones")
st.caption("Import or download data on the Datasets page; without any, the synthetic signs work offline.")
datasets_column, backbones_column = st.columns(2)
datasets_column.dataframe(availability.dataset_rows(), hide_index=True, key="home_dataset_table")
backbones_column.dataframe(availability.backbone_rows(), hide_index=True, key="home_backbone_table")
