"""Browser test: served with ``--server.address 0.0.0.0`` (LAN mode), the app offers no input
that names a path on the server, whichever dataset or source is chosen; the Home page says so.
(The 127.0.0.1 server of the other browser tests still has the path box: see
test_datasets_browser.py.)"""

import pytest

from tests.conftest import save_screenshot, serve_streamlit, wait_for_text

pytestmark = pytest.mark.browser

PATH_LABEL = "Path(s) on this machine"


@pytest.fixture(scope="module")
def lan_server(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("lan")
    dirs = {"data": root / "data", "runs": root / "runs"}
    for path in dirs.values():
        path.mkdir()
    with serve_streamlit(dirs, address="0.0.0.0") as base_url:
        yield base_url


def _no_path_input(page) -> None:
    assert page.locator("textarea").count() == 0
    assert page.get_by_label(PATH_LABEL).count() == 0
    assert page.get_by_text(PATH_LABEL).count() == 0


def test_lan_mode_has_no_server_path_input(browser, lan_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{lan_server}/")
        wait_for_text(page, "LAN mode, uploads only")
        page.goto(f"{lan_server}/datasets")
        wait_for_text(page, "Data root")
        checked = []
        for title, heading in (("GTSRB", "GTSRB: German Traffic Sign Recognition Benchmark"),
                               ("Dogs vs Cats", "Dogs vs Cats (Kaggle / Microsoft)"),
                               ("Synthetic signs", "Synthetic traffic signs")):
            page.get_by_text(title, exact=True).first.click()
            page.get_by_role("heading", name=heading).first.wait_for(state="visible")
            if title != "Synthetic signs":
                wait_for_text(page, "LAN mode: upload the zip(s)")
            _no_path_input(page)
            checked.append(title)
            if title == "GTSRB":
                save_screenshot(page, "datasets_lan_mode")
            if title == "Dogs vs Cats":
                page.get_by_text("Microsoft (825 MB)", exact=True).click()
                wait_for_text(page, "LAN mode: upload the zip(s)")
                _no_path_input(page)
                checked.append("Dogs vs Cats (Microsoft)")
        assert len(checked) == 4
    finally:
        context.close()
