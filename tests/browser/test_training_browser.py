"""Browser: start a tiny LeNet job from the Train page and watch its live curve appear."""

from __future__ import annotations

import pytest

import shutil

from core import jobs, runs
from tests.conftest import save_screenshot, wait_for_text
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 240_000  # worker start (TensorFlow import) + synthetic data + tiny epochs
# Enough tiny epochs (5 images per class) that the job outlasts several 2-s polls of the page even
# on an idle machine, so the live view (not only the final results) is what the test watches.
EPOCHS = 20


def test_start_a_tiny_job_and_watch_its_curve_appear(page, browser_dirs, synthetic_data_root,
                                                     monkeypatch):
    monkeypatch.setenv("TLLAB_RUNS_DIR", str(browser_dirs["runs"]))
    # The server's data root gets the session's generated synthetic signs (saves ~8 s per run).
    shutil.copytree(synthetic_data_root / "synthetic-signs", browser_dirs["data"] / "synthetic-signs",
                    dirs_exist_ok=True)
    before = {summary.run_id for summary in runs.list_runs(browser_dirs["runs"])}
    page.goto(page.app_url("train_lenet"))
    wait_for_text(page, "Start training")
    page.get_by_role("spinbutton", name="Epochs").fill(str(EPOCHS))
    page.get_by_role("spinbutton", name="Training images per class (0 = all)").fill("5")
    page.get_by_role("button", name="Start training").click()
    wait_for_text(page, "Training in progress")
    new_runs = {summary.run_id for summary in runs.list_runs(browser_dirs["runs"])} - before
    assert len(new_runs) == 1
    run_id = new_runs.pop()
    config = runs.read_config(runs.run_path(run_id, browser_dirs["runs"]))
    assert (config["epochs"], config["labels_per_class"]) == (EPOCHS, 5)
    try:
        # The fragment polls the run folder: the first epoch's points and caption appear live.
        wait_for_text(page, "epoch(s) done", timeout_ms=JOB_TIMEOUT_MS)
        chart = page.locator("[data-testid='stPlotlyChart']").first
        chart.wait_for(state="visible")
        assert chart.locator("g.trace").count() >= 4  # train/val loss and accuracy + reference
        save_screenshot(page, "train_lenet")
        wait_for_text(page, "Test accuracy", timeout_ms=JOB_TIMEOUT_MS)  # results after the end
        assert runs.read_status(runs.run_path(run_id, browser_dirs["runs"]))["state"] == runs.COMPLETED
        wait_for_text(page, "Misclassified test images")
        save_screenshot(page, "train_lenet_results")
    finally:
        status = runs.read_status(runs.run_path(run_id, browser_dirs["runs"]))
        if status["state"] in jobs.ACTIVE_STATES:
            jobs.cancel(run_id, browser_dirs["runs"])
