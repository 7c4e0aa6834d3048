"""Shared fixtures: isolated data/runs roots, ../shared data, AppTest and browser harnesses."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS_DIR = REPO_ROOT / "artifacts"
SERVER_START_TIMEOUT_SECONDS = 90

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The same TensorFlow CPU kernels as the training workers (core.environment.prefer_onednn_kernels).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

try:  # as app.py does: streamlit-webrtc's SRTP binding crashes when first loaded after TensorFlow
    import pylibsrtp  # noqa: F401
except ImportError:
    pass
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    """Points ``TLLAB_DATA_DIR`` and ``TLLAB_RUNS_DIR`` at fresh folders for every test."""
    data_dir = tmp_path / "data"
    runs_dir = tmp_path / "runs"
    data_dir.mkdir()
    runs_dir.mkdir()
    monkeypatch.setenv("TLLAB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TLLAB_RUNS_DIR", str(runs_dir))
    return {"data": data_dir, "runs": runs_dir}


def dogs_vs_cats_jpeg(color, rng) -> bytes:
    """A 48x40 noisy JPEG around ``color`` (RGB), for the drawn Dogs vs Cats look-alike."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.clip(np.array(color) + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def install_dogs_vs_cats(data_root: Path, images_per_class: int) -> Path:
    """Draws a Dogs vs Cats look-alike in Kaggle's layout and installs it into ``data_root``.

    Reddish cats and bluish dogs (``train/cat.N.jpg``, ``train/dog.N.jpg``, seed 0) are zipped to
    ``data_root/train-<2 * images_per_class>.zip`` and installed through ``core.datasets.get``
    with ``TLLAB_DATA_DIR`` pointing at ``data_root``; the variable is restored afterwards.

    Args:
        data_root: the data root to install into (created when missing).
        images_per_class: images of each class.

    Returns:
        ``data_root``.
    """
    import zipfile

    import numpy as np

    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    archive = data_root / f"train-{2 * images_per_class}.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as handle:
        for index in range(images_per_class):
            handle.writestr(f"train/cat.{index}.jpg", dogs_vs_cats_jpeg((170, 90, 60), rng))
            handle.writestr(f"train/dog.{index}.jpg", dogs_vs_cats_jpeg((60, 90, 170), rng))
    previous = os.environ.get("TLLAB_DATA_DIR")
    os.environ["TLLAB_DATA_DIR"] = str(data_root)
    try:
        from core import datasets

        datasets.get("dogs-vs-cats", [archive])
    finally:
        if previous is None:
            os.environ.pop("TLLAB_DATA_DIR", None)
        else:
            os.environ["TLLAB_DATA_DIR"] = previous
    return data_root


def shared_file(*relative: str) -> Path:
    """Returns a path under ``../shared/datasets``, skipping the test when it is absent."""
    path = SHARED_DATASETS.joinpath(*relative)
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared/datasets only exists on the developers' machines")
    return path


@pytest.fixture
def shared_datasets() -> Path:
    """The ``../shared/datasets`` folder; skips when a fresh clone has none."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent: real data only exists on the developers' machines")
    return SHARED_DATASETS


def run_page(page: str, timeout: float = 60, **session_state):
    """Runs one page file under ``streamlit.testing.v1.AppTest`` and returns the AppTest.

    Args:
        page: path relative to the repository, e.g. ``"pages/concepts.py"``.
        timeout: seconds the script may take.
        **session_state: values to put in ``st.session_state`` before the run.
    """
    from streamlit.testing.v1 import AppTest

    app_test = AppTest.from_file(str(REPO_ROOT / page), default_timeout=timeout)
    for key, value in session_state.items():
        app_test.session_state[key] = value
    return app_test.run()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def browser_dirs(tmp_path_factory):
    """Data and runs roots that the browser-test server and the tests share."""
    root = tmp_path_factory.mktemp("browser")
    dirs = {"data": root / "data", "runs": root / "runs"}
    for path in dirs.values():
        path.mkdir()
    return dirs


@contextlib.contextmanager
def serve_streamlit(dirs: dict, address: str = "127.0.0.1"):
    """Runs ``streamlit run app.py`` on a free port with the given data/runs roots.

    Args:
        dirs: ``{"data": ..., "runs": ...}``.
        address: ``--server.address`` (``0.0.0.0`` serves the LAN: the app's LAN mode); the
            tests always connect through 127.0.0.1.

    Yields:
        The server's base URL, once ``/_stcore/health`` answers.
    """
    port = _free_port()
    environment = dict(os.environ, TLLAB_DATA_DIR=str(dirs["data"]),
                       TLLAB_RUNS_DIR=str(dirs["runs"]), PYTHONUNBUFFERED="1")
    log_path = Path(dirs["runs"]).parent / f"streamlit-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", address, "--server.port", str(port),
             "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
            while True:
                try:
                    with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start; log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _require_browser_stack() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (.ci/run installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is absent")


@pytest.fixture(scope="session")
def streamlit_server(browser_dirs):
    """One ``streamlit run app.py`` on 127.0.0.1 shared by the browser tests; yields its base URL."""
    _require_browser_stack()
    with serve_streamlit(browser_dirs) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def playwright_driver():
    """The one Playwright driver of the session (a second sync driver cannot start beside it)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_driver):
    """A headless Debian Chromium driven by Playwright (never ``playwright install``)."""
    instance = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield instance
    instance.close()


@pytest.fixture
def page(browser, streamlit_server):
    """A fresh browser page; ``page.app_url(path)`` builds URLs on the test server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    new_page = context.new_page()
    new_page.set_default_timeout(60_000)
    new_page.app_url = lambda path="": f"{streamlit_server}/{path.lstrip('/')}"
    yield new_page
    context.close()


def save_screenshot(browser_page, name: str) -> Path:
    """Saves a full-page screenshot to ``artifacts/NAME.png`` and returns its path."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    browser_page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_text(browser_page, text: str, timeout_ms: int = 60_000) -> None:
    """Waits until ``text`` is visible in the app (Streamlit renders asynchronously, so tests
    wait for concrete content rather than for an idle indicator)."""
    browser_page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_ms)
