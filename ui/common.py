"""Small Streamlit helpers shared by every page: session defaults, headers, cached readers."""

from __future__ import annotations

import os

import streamlit as st

# Test-only switch that turns ``ensure_app_shell`` off, to show the failure it prevents.
DISABLE_APP_SHELL_RERUN_ENV = "TLLAB_DISABLE_APP_SHELL_RERUN"

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


def ensure_app_shell() -> None:
    """Reruns through ``app.py`` when Streamlit served this page in its legacy ``pages/`` mode.

    Until a server process has executed ``st.navigation`` once, Streamlit treats a ``pages/``
    folder beside the main script as a legacy (v1) multipage app. A fresh server's first visit to
    a deep link such as ``/concepts`` then runs the page file alone: no ``app.py``, so no
    navigation sections and no page config. Turning that legacy flag off and rerunning makes the
    rerun execute ``app.py``, whose ``st.navigation`` resolves the same URL to the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if os.environ.get(DISABLE_APP_SHELL_RERUN_ENV):
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def preload_webrtc_binding() -> None:
    """Loads streamlit-webrtc's SRTP binding (``pylibsrtp``) before TensorFlow can load.

    ``pylibsrtp`` bundles libsrtp with its own OpenSSL; imported for the first time *after*
    TensorFlow in the same process, its ``srtp_init()`` crashes the whole server (SIGSEGV).
    Imported first, both work. ``app.run`` calls this before any page; a cheap no-op later
    and when the package is absent.
    """
    try:
        import pylibsrtp  # noqa: F401 - loaded for its side effect on the process's symbols
    except ImportError:
        pass


def page_header(title: str, intro: str | None = None) -> None:
    """Renders a page title with an optional one-paragraph introduction.

    Every page calls this first; it also makes sure the page runs inside the app shell.
    """
    ensure_app_shell()
    st.title(title)
    if intro:
        st.markdown(intro)


def max_upload_megabytes() -> int:
    """The server's upload limit, ``server.maxUploadSize`` (megabytes, from .streamlit/config.toml)."""
    return int(st.get_option("server.maxUploadSize"))


def max_upload_bytes() -> int:
    """``max_upload_megabytes`` in bytes (Streamlit counts a megabyte as 1024 * 1024 bytes)."""
    return max_upload_megabytes() * 1024 * 1024


@st.cache_resource(show_spinner="Inspecting the machine…")
def environment_report() -> dict:
    """The environment panel's facts (imports TensorFlow once per server process)."""
    from core import environment

    return environment.describe_environment()


def server_address() -> str | None:
    """The address Streamlit is bound to (``server.address``), or None when it is unset."""
    try:
        address = st.get_option("server.address")
    except RuntimeError:
        return None
    return str(address) if address else None


def server_paths_allowed() -> bool:
    """Whether pages may show inputs that name a path on the server (see ``core.serving``)."""
    from core import serving

    return serving.server_paths_allowed(server_address())
