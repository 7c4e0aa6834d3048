"""Datasets page: status, download/import/delete, class distribution, samples, before/after."""

import streamlit as st

from core import paths
from core.datasets import registry
from ui import common
from ui import datasets as view
from ui import weights as weights_view

DEFAULTS = {"datasets_selected": "synthetic-signs"}


def default_selection() -> str:
    for name in ("gtsrb", "dogs-vs-cats"):
        if registry.status(name) == "ready":
            return name
    return "synthetic-signs"


if "datasets_selected" not in st.session_state:
    st.session_state["datasets_selected"] = default_selection()
common.init_session_state(DEFAULTS)

common.page_header(
    "Datasets",
    "GTSRB and Dogs vs Cats, downloaded or imported from local files, and a **synthetic** traffic-sign "
    "set generated on this machine so that every page works without data.",
)
st.caption(f"Data root: `{paths.data_dir()}` (set `TLLAB_DATA_DIR` to move it)")
st.dataframe(view.overview_table(), hide_index=True, key="datasets_overview")

name = st.radio("Dataset", registry.DATASET_NAMES, horizontal=True, key="datasets_selected",
                format_func=lambda value: view.SHORT_TITLES[value])
info = registry.get_info(name)
st.subheader(info.title)
if info.synthetic:
    st.warning("SYNTHETIC data: drawn by a generator, not photographs. Use it to try pages and as a "
               "source domain; never compare its accuracy with real GTSRB results.", icon=":material/science:")
st.markdown(info.description)

view.render_message()
state = registry.status(name)
if state == "downloading":
    view.polling_status(name)
else:
    view.render_status(name)
view.render_actions(name, state)

if state == "ready":
    version = view.data_version(name)
    counts = view.cached_counts(name, version)
    view.render_metrics(name, counts, view.cached_disk_usage(name, version))
    if name == "gtsrb":
        st.markdown(view.TRACK_SPLIT_TEXT)
    st.markdown("### Class distribution")
    view.render_distribution(name, counts)
    st.markdown("### Samples")
    view.render_samples(name, version)
    st.markdown("### Preprocessing and augmentation: before and after")
    view.render_before_after(name, version)
elif name == "gtsrb":
    st.markdown(view.TRACK_SPLIT_TEXT)

st.divider()
weights_view.weights_section()
