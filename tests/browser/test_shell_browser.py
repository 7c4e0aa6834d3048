"""Browser smoke test: the real `streamlit run` server serves Home with its navigation."""

import pytest

from tests.conftest import save_screenshot, wait_for_text

pytestmark = pytest.mark.browser


def test_home_page_loads_with_navigation(page):
    page.goto(page.app_url())
    page.get_by_role("heading", name="Transfer Learning Lab").wait_for()
    wait_for_text(page, "CPU cores")
    navigation = page.locator("[data-testid='stSidebarNav']")
    for title in ("CNN concepts", "Datasets", "Train LeNet-5", "Classify images", "Runs"):
        assert navigation.get_by_text(title, exact=True).count() >= 1
    save_screenshot(page, "home")
