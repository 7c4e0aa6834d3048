"""LAN mode (``core.serving``): who may name server paths, and what the pages offer then."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from core import serving
from core.datasets import registry
from tests.conftest import run_page

DATASETS_PAGE = "pages/datasets.py"
HOME_PAGE = "pages/home.py"


@contextlib.contextmanager
def served_on(address: str | None):
    """Sets Streamlit's ``server.address`` for the pages run under AppTest in this process."""
    from streamlit import config

    previous = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        yield
    finally:
        config.set_option("server.address", previous)


@pytest.mark.parametrize("address, expected", [
    (None, True), ("", True), ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True),
    ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("10.0.0.5", False), ("classroom-server", False),
])
def test_is_loopback(address, expected):
    assert serving.is_loopback(address) is expected


def test_server_paths_need_loopback_or_the_variable(monkeypatch):
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    assert serving.server_paths_allowed("127.0.0.1") is True
    assert serving.server_paths_allowed("0.0.0.0") is False
    monkeypatch.setenv(serving.ALLOW_SERVER_PATHS_ENV, "1")
    assert serving.server_paths_allowed("0.0.0.0") is True
    monkeypatch.setenv(serving.ALLOW_SERVER_PATHS_ENV, "0")
    assert serving.server_paths_allowed("0.0.0.0") is False


def test_allowed_roots_are_the_data_root_then_the_listed_ones(isolated_roots, tmp_path, monkeypatch):
    first, second = tmp_path / "lectures", tmp_path / "weights"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv(serving.SERVER_PATH_ROOTS_ENV, os.pathsep.join([str(first), "", str(second)]))
    assert serving.allowed_roots() == [isolated_roots["data"].resolve(), first.resolve(), second.resolve()]


def test_check_server_path_on_loopback_accepts_any_path(tmp_path, monkeypatch):
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    assert serving.check_server_path("/etc/passwd", "127.0.0.1") == Path(os.path.realpath("/etc/passwd"))
    link = tmp_path / "link"
    link.symlink_to("/etc")
    assert serving.check_server_path(link, None) == Path(os.path.realpath("/etc"))


def test_check_server_path_on_a_lan(isolated_roots, tmp_path, monkeypatch):
    inside = isolated_roots["data"] / "uploads" / "train.zip"
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    with pytest.raises(ValueError, match="disabled on a shared network.*'/etc/passwd'"):
        serving.check_server_path("/etc/passwd", "0.0.0.0")
    with pytest.raises(ValueError, match="disabled on a shared network"):
        serving.check_server_path(inside, "0.0.0.0")  # even inside: no path inputs at all
    monkeypatch.setenv(serving.ALLOW_SERVER_PATHS_ENV, "1")
    assert serving.check_server_path(inside, "0.0.0.0") == inside.resolve()
    with pytest.raises(ValueError, match=r"'/etc/passwd'.*outside the allowed roots.*" +
                       str(isolated_roots["data"].resolve())):
        serving.check_server_path("/etc/passwd", "0.0.0.0")
    escape = isolated_roots["data"] / "escape"
    escape.symlink_to("/etc")  # a link inside a root that leads out of it
    with pytest.raises(ValueError, match="resolved to /etc"):
        serving.check_server_path(escape / "passwd", "192.168.1.20")
    with pytest.raises(ValueError, match="outside the allowed roots"):
        serving.check_server_path(str(isolated_roots["data"]) + "/../outside", "0.0.0.0")
    extra = tmp_path / "course"
    extra.mkdir()
    monkeypatch.setenv(serving.SERVER_PATH_ROOTS_ENV, str(extra))
    assert serving.check_server_path(extra / "a.zip", "0.0.0.0") == (extra / "a.zip").resolve()


def test_mode_description_names_the_mode(monkeypatch):
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    assert serving.mode_description("127.0.0.1").startswith("**Local mode**")
    assert serving.mode_description("0.0.0.0").startswith("**LAN mode, uploads only**")
    monkeypatch.setenv(serving.ALLOW_SERVER_PATHS_ENV, "1")
    assert serving.mode_description("0.0.0.0").startswith("**LAN mode with server paths**")


def _path_inputs(app_test) -> list[str]:
    return [element.key for element in list(app_test.text_area) + list(app_test.text_input)]


def test_datasets_page_on_a_lan_has_no_path_input_whichever_option(monkeypatch):
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    with served_on("0.0.0.0"):
        app_test = run_page(DATASETS_PAGE)
        seen = 0
        for name in registry.DATASET_NAMES:
            app_test.radio(key="datasets_selected").set_value(name).run()
            variants = [None]
            if name == "dogs-vs-cats":
                variants = list(app_test.radio(key="datasets_variant").options)
            for variant in variants:
                if variant is not None:
                    app_test.radio(key="datasets_variant").set_value(variant).run()
                assert not app_test.exception
                assert _path_inputs(app_test) == []
                seen += 1
            if not registry.get_info(name).synthetic:
                assert any("LAN mode" in caption.value for caption in app_test.caption)
                assert app_test.get("file_uploader")  # uploads stay
    assert seen == 4  # gtsrb, dogs-vs-cats x 2 variants, synthetic-signs


def test_datasets_page_on_loopback_keeps_the_path_input():
    with served_on("127.0.0.1"):
        app_test = run_page(DATASETS_PAGE, datasets_selected="gtsrb")
        assert _path_inputs(app_test) == ["datasets_import_path_gtsrb"]


def test_datasets_page_on_a_lan_with_paths_allowed_refuses_paths_outside_the_roots(monkeypatch):
    monkeypatch.setenv(serving.ALLOW_SERVER_PATHS_ENV, "1")
    with served_on("0.0.0.0"):
        app_test = run_page(DATASETS_PAGE, datasets_selected="gtsrb")
        app_test.text_area(key="datasets_import_path_gtsrb").input("/etc")
        app_test.button(key="datasets_import_gtsrb").click().run()
    assert not app_test.exception
    assert any("outside the allowed roots" in error.value for error in app_test.error)
    assert registry.status("gtsrb") == "absent"


@pytest.mark.parametrize("address, words", [("127.0.0.1", "Local mode"),
                                             ("0.0.0.0", "LAN mode, uploads only")])
def test_home_page_says_which_mode_is_active(address, words, monkeypatch):
    monkeypatch.delenv(serving.ALLOW_SERVER_PATHS_ENV, raising=False)
    with served_on(address):
        app_test = run_page(HOME_PAGE)
    assert not app_test.exception
    assert any(words in info.value for info in app_test.info)
