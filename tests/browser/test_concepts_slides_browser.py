"""Browser: the Concepts page's C3 connection table and the strided-convolution tab."""

import pytest

from tests.conftest import save_screenshot, wait_for_text

pytestmark = pytest.mark.browser


def _metric(page, label: str) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return metric.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_c3_table_and_strided_tab_render_in_the_browser(page):
    page.goto(page.app_url("concepts"))
    page.get_by_role("heading", name="CNN concepts").wait_for()
    page.get_by_role("tab", name="Layer stack").click()
    wait_for_text(page, "C3's partial connection table")
    assert _metric(page, "C3 fully connected") == "2,416 parameters"
    assert _metric(page, "C3 with table I") == "1,516 parameters"
    assert _metric(page, "Parameters") == "61,706"
    page.get_by_text("C3: LeCun's partial connection table").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll("[data-testid='stMetric']")]
                 .some(m => m.innerText.startsWith("Parameters") && m.innerText.includes("60,806"))""",
        timeout=30_000,
    )
    figure = page.locator("[data-testid='stPlotlyChart']").filter(has_text="C3 maps fed by each S2 map")
    figure.first.scroll_into_view_if_needed()
    save_screenshot(page, "concepts_c3_table")
    page.get_by_role("tab", name="Strided conv instead of pooling").click()
    wait_for_text(page, "Striving for simplicity")
    wait_for_text(page, "adds 83,040 parameters")
    assert not page.locator("[data-testid='stException']").count()
    save_screenshot(page, "concepts_strided")
