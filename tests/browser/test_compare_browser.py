"""Browser test: the Compare page on a real server shows two fixture runs side by side."""

import pytest

from tests.conftest import save_screenshot, wait_for_text
from tests.test_compare_page import write_scratch_and_transfer

pytestmark = pytest.mark.browser


def test_compare_page_overlays_a_scratch_and_a_transfer_run(page, browser_dirs):
    scratch, transfer = write_scratch_and_transfer(runs_root=browser_dirs["runs"])
    page.goto(page.app_url("compare"))
    wait_for_text(page, "Runs to compare")
    wait_for_text(page, "Validation accuracy vs epoch")
    wait_for_text(page, "Validation loss vs epoch")
    wait_for_text(page, "Which strategy? Dataset size × similarity")
    selection = page.locator("[data-testid='stMultiSelect']")
    assert selection.get_by_text(scratch.name, exact=False).count() >= 1
    assert selection.get_by_text(transfer.name, exact=False).count() >= 1
    page.get_by_role("button", name="Download comparison (CSV)").wait_for()
    page.get_by_role("button", name="Download curves (PNG)").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    save_screenshot(page, "compare")
