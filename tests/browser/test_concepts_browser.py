"""Browser test: the real server's Concepts page recomputes the output size when W changes."""

import pytest

from tests.conftest import save_screenshot, wait_for_text

pytestmark = pytest.mark.browser


def _output_size(page) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text="Output size").first
    return metric.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_concepts_output_size_follows_the_input_width(page):
    page.goto(page.app_url("concepts"))
    page.get_by_role("heading", name="CNN concepts").wait_for()
    wait_for_text(page, "Output size")
    assert _output_size(page) == "28"  # (32 − 5 + 2·0)/1 + 1

    width = page.get_by_label("W (input width)")
    width.fill("64")
    width.press("Enter")
    page.wait_for_function(
        """() => [...document.querySelectorAll("[data-testid='stMetric']")]
                 .some(m => m.innerText.includes("Output size") && m.innerText.includes("60"))""",
        timeout=30_000,
    )
    assert _output_size(page) == "60"  # (64 − 5 + 2·0)/1 + 1
    wait_for_text(page, "= 29.5 instead")  # the slide's misprint: 59 / (1 + 1)
    path = save_screenshot(page, "concepts")
    assert path.name == "concepts.png" and path.stat().st_size > 10_000
