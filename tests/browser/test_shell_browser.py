"""Browser smoke test: the real `streamlit run` server serves Home with its navigation."""

import pytest

from tests.conftest import save_screenshot, wait_for_text

pytestmark = pytest.mark.browser


def test_home_page_loads_with_navigation(page):
    page.goto(page.app_url())
    page.get_by_role("heading", name="Transfer Learning Lab").wait_for()
    wait_for_text(page, "CPU cores")
    navigation = page.locator("[data-testid='stSidebarNav']")
    for title in ("CNN concepts", "Data & weights", "Train LeNet-5", "Classify images", "Runs"):
        assert navigation.get_by_text(title, exact=True).count() >= 1
    save_screenshot(page, "home")


def _deep_link_navigation_texts(browser, tmp_path, wait_for: str) -> tuple[int, int]:
    """Opens /runs as the first visit of a fresh server; counts section vs file-name entries."""
    from tests.conftest import serve_streamlit

    dirs = {"data": tmp_path / "fresh-data", "runs": tmp_path / "fresh-runs"}
    for path in dirs.values():
        path.mkdir()
    with serve_streamlit(dirs) as base_url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        deep_page = context.new_page()
        deep_page.goto(f"{base_url}/runs")
        navigation = deep_page.locator("[data-testid='stSidebarNav']")
        navigation.get_by_text(wait_for, exact=True).wait_for(timeout=60_000)
        counts = (navigation.get_by_text("Compare & classify", exact=True).count(),
                  navigation.get_by_text("train lenet", exact=True).count())
        context.close()
    return counts


def test_deep_link_on_a_fresh_server_gets_the_app_navigation(browser, tmp_path):
    """A fresh server's first visit to /runs must still run app.py (sections, not file names)."""
    assert _deep_link_navigation_texts(browser, tmp_path, "Compare & classify") == (1, 0)


def test_deep_link_without_the_fix_would_show_file_names(browser, tmp_path, monkeypatch):
    """Control for the test above: proves a fresh server really starts in legacy pages/ mode.

    With ``ensure_app_shell`` disabled through its environment switch, the same deep link shows
    Streamlit's automatic file-name navigation, so the test above exercises the real failure.
    """
    monkeypatch.setenv("TLLAB_DISABLE_APP_SHELL_RERUN", "1")
    assert _deep_link_navigation_texts(browser, tmp_path, "train lenet") == (0, 1)
