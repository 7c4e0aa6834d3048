"""Browser test: import a tiny GTSRB fixture through the path box and see the dataset ready."""

import pytest

from core.datasets import registry
from tests import test_datasets_support as fixtures
from tests.conftest import save_screenshot, wait_for_text

pytestmark = pytest.mark.browser


def test_import_fixture_zip_by_path_then_ready(page, browser_dirs, tmp_path, monkeypatch):
    archive = fixtures.gtsrb_training_zip(tmp_path, tracks=4, frames=3)
    page.goto(page.app_url("datasets"))
    wait_for_text(page, "Data root")
    page.get_by_text("GTSRB", exact=True).click()
    wait_for_text(page, "Why GTSRB's validation set is split by track")
    box = page.get_by_label("Path(s) on this machine, one per line")
    box.fill(str(archive))
    box.press("Control+Enter")
    page.get_by_role("button", name="Import from path").click()
    wait_for_text(page, "Status: ready", timeout_ms=90_000)
    wait_for_text(page, "Class distribution")
    wait_for_text(page, "shared by both: none")
    save_screenshot(page, "datasets")
    page.get_by_text("Preprocessing and augmentation: before and after").scroll_into_view_if_needed()
    wait_for_text(page, "After preprocessing")
    save_screenshot(page, "datasets_before_after")
    monkeypatch.setenv("TLLAB_DATA_DIR", str(browser_dirs["data"]))
    assert registry.status("gtsrb") == "ready"
    registry.delete("gtsrb")  # leave the shared browser data root as other tests expect it
