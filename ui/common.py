"""Small Streamlit helpers shared by every page: session defaults, headers, cached readers."""

from __future__ import annotations

import streamlit as st

# Session-state keys owned by the app shell; pages add their own with ``init_session_state``.
SESSION_DEFAULTS = {
    "selected_run_id": None,
    "compare_run_ids": [],
}


def init_session_state(defaults: dict | None = None) -> None:
    """Sets each key of ``defaults`` (default: ``SESSION_DEFAULTS``) once per session."""
    for key, value in (defaults or SESSION_DEFAULTS).items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if hasattr(value, "copy") else value


def page_header(title: str, intro: str | None = None) -> None:
    """Renders a page title with an optional one-paragraph introduction."""
    st.title(title)
    if intro:
        st.markdown(intro)


def coming_next(what: str) -> None:
    """Marks a part of a page that a later release fills in."""
    st.info(f"Coming next: {what}", icon=":material/construction:")


@st.cache_resource(show_spinner="Inspecting the machine…")
def environment_report() -> dict:
    """The environment panel's facts (imports TensorFlow once per server process)."""
    from core import environment

    return environment.describe_environment()
