"""Browser: a real 1-epoch LeNet ``seed`` run on synthetic signs opens as a report at /runs?run=ID.

The run is trained by the real CLI (``python -m core.train``) into the browser server's runs root;
the page must show its misclassified gallery with class names (from ``class_names``), not ids,
and a click on another row of the Runs table opens that run instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import runs
from tests.conftest import REPO_ROOT, save_screenshot, wait_for_text
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # trains real runs first

TRAIN_TIMEOUT_SECONDS = 240
LABELS_PER_CLASS = 5


@pytest.fixture(scope="module")
def seed_run(browser_dirs, synthetic_data_root) -> Path:
    """A LeNet ``seed`` run trained for 1 epoch on synthetic signs, in the server's runs root."""
    shutil.copytree(synthetic_data_root / "synthetic-signs", browser_dirs["data"] / "synthetic-signs",
                    dirs_exist_ok=True)
    environment = dict(os.environ, TLLAB_DATA_DIR=str(browser_dirs["data"]),
                       TLLAB_RUNS_DIR=str(browser_dirs["runs"]))
    command = [sys.executable, "-m", "core.train", "--model", "lenet5", "--preset", "seed",
               "--dataset", "synthetic-signs", "--epochs", "1", "--runs-dir", str(browser_dirs["runs"]),
               "--set", f"labels_per_class={LABELS_PER_CLASS}"]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                               timeout=TRAIN_TIMEOUT_SECONDS)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Path(completed.stdout.strip().splitlines()[-1])


def test_runs_query_parameter_opens_the_report_with_a_named_gallery(page, seed_run):
    results = runs.read_results(seed_run)
    class_names = results["class_names"]
    assert len(class_names) == 43 and results["misclassified"], "1 epoch leaves mistakes to show"
    # Every caption the gallery may show first: "true → predicted" of this run's mistakes (after
    # 1 epoch their confidences tie at a few %, and one CI run showed another mistake first).
    expected_captions = {f"{class_names[item['true']]} → {class_names[item['predicted']]}"
                         for item in results["misclassified"]}
    page.goto(page.app_url(f"runs?run={seed_run.name}"))
    wait_for_text(page, "Misclassified test images")
    wait_for_text(page, f"run {seed_run.name}")
    gallery = page.locator("[data-testid='stImage']")
    gallery.first.wait_for(state="visible")
    assert gallery.count() >= 1
    captions = page.locator("[data-testid='stImageCaption']").all_inner_texts()
    assert captions[0].rsplit(" (", 1)[0] in expected_captions, captions[:3]
    names_shown = [caption for caption in captions if "→" in caption]
    assert names_shown and all(caption.split(" → ")[0] in class_names for caption in names_shown)
    assert not page.locator("[data-testid='stException']").count()
    gallery.first.scroll_into_view_if_needed()
    save_screenshot(page, "run_report_gallery")


def test_clicking_a_row_of_the_runs_table_opens_that_run(page, seed_run, browser_dirs):
    other = runs.create_run({"model": "lenet5", "preset": "plus", "dataset": "synthetic-signs"},
                            browser_dirs["runs"])
    runs.write_status(other, state=runs.FAILED, error="stopped for the row-click test")
    page.goto(page.app_url("runs"))
    wait_for_text(page, f"run {other.name}")  # the newest run opens without ?run=
    listed = [summary.run_id for summary in runs.list_runs(browser_dirs["runs"])]
    row = listed.index(seed_run.name)
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for(state="visible")
    box = table.bounding_box()
    row_height = 35  # Glide data grid's default row (and header) height in Streamlit
    page.mouse.click(box["x"] + 12, box["y"] + row_height * (row + 1.5))
    wait_for_text(page, f"run {seed_run.name}")
    wait_for_text(page, "Misclassified test images")
    assert f"run={seed_run.name}" in page.url
