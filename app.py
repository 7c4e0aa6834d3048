"""Transfer Learning Lab: the Streamlit entry point.

``run()`` builds the navigation; every page lives in ``pages/`` and calls into ``core/``.
Start it with ``make run`` (or ``streamlit run app.py``).
"""

import streamlit as st

from core import environment
from ui import common

APP_TITLE = "Transfer Learning Lab"

# (section, file, title, icon). The order is the suggested path through the app.
PAGES = (
    ("Learn", "pages/home.py", "Home", ":material/home:"),
    ("Learn", "pages/concepts.py", "CNN concepts", ":material/calculate:"),
    ("Data", "pages/datasets.py", "Data & weights", ":material/dataset:"),
    ("Train", "pages/train_lenet.py", "Train LeNet-5", ":material/model_training:"),
    ("Train", "pages/transfer.py", "Transfer learning", ":material/move_up:"),
    ("Train", "pages/own_classes.py", "Your own classes", ":material/photo_camera:"),
    ("Compare & classify", "pages/compare.py", "Compare runs", ":material/compare_arrows:"),
    ("Compare & classify", "pages/classify.py", "Classify images", ":material/image_search:"),
    ("Runs", "pages/runs.py", "Runs", ":material/history:"),
)


def build_navigation():
    """Groups ``PAGES`` into sections for ``st.navigation``."""
    sections: dict[str, list] = {}
    for section, path, title, icon in PAGES:
        sections.setdefault(section, []).append(
            st.Page(path, title=title, icon=icon, default=(path == "pages/home.py"))
        )
    return st.navigation(sections)


def run() -> None:
    """Configures the page, initialises session state once, and runs the selected page."""
    st.set_page_config(page_title=APP_TITLE, page_icon=":material/traffic:", layout="wide")
    common.preload_webrtc_binding()  # before any page loads TensorFlow (see its docstring)
    environment.prefer_onednn_kernels()  # read once, when a page first imports TensorFlow
    common.init_session_state()
    navigation = build_navigation()
    navigation.run()


if __name__ == "__main__":
    run()
