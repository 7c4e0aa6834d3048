"""Datasets and jobs (issue 11, part 4): a second import joins the first; deleting a dataset
that a queued or running job uses is refused with the job named (core, CLI and page)."""

from __future__ import annotations

import threading
import time

import pytest

from core import datasets, jobs, runs
from core.datasets import background, progress, registry
from tests import test_datasets_support as fixtures
from tests.conftest import run_page
from tests.test_datasets_cli import _cli

PAGE = "pages/datasets.py"
SESSIONS = 4
JOB = {"model": "lenet5", "preset": "seed", "dataset": "dogs-vs-cats", "epochs": 1,
       "image_size": 32}


@pytest.fixture
def installed_dogs(tmp_path):
    datasets.get("dogs-vs-cats", [fixtures.write_zip(tmp_path / "t.zip", fixtures.dogs_flat_members(4))])
    assert registry.status("dogs-vs-cats") == "ready"


def test_delete_is_refused_while_a_queued_job_uses_the_dataset(installed_dogs, isolated_roots):
    queued = jobs.create_job(JOB).name  # QUEUED, worker not started: it counts as in use
    other = jobs.create_job(dict(JOB, dataset="synthetic-signs")).name
    with pytest.raises(datasets.DatasetError) as refused:
        registry.delete("dogs-vs-cats")
    assert str(refused.value) == (
        f"dogs-vs-cats is used by 1 queued or running training job(s): {queued}; cancel them or "
        "wait for them to finish before deleting it")
    assert other not in str(refused.value)
    assert registry.status("dogs-vs-cats") == "ready"

    result = _cli("delete", "dogs-vs-cats", data_dir=isolated_roots["data"])
    assert result.returncode == 1
    assert queued in result.stderr and "Traceback" not in result.stderr
    assert registry.status("dogs-vs-cats") == "ready"

    app_test = run_page(PAGE, datasets_selected="dogs-vs-cats")
    app_test.button(key="datasets_delete_dogs-vs-cats").click().run()
    app_test.button(key="datasets_delete_yes_dogs-vs-cats").click().run()
    assert not app_test.exception
    assert any(queued in error.value for error in app_test.error)
    assert registry.status("dogs-vs-cats") == "ready"

    jobs.cancel(queued)  # once the job is over, deleting works
    assert registry.delete("dogs-vs-cats") > 0
    assert registry.status("dogs-vs-cats") == "absent"


def test_a_finished_job_does_not_block_deleting(installed_dogs):
    run_dir = jobs.create_job(JOB)
    runs.update_status(run_dir, state=runs.COMPLETED)
    assert registry.delete("dogs-vs-cats") > 0


def test_concurrent_imports_start_one_process_and_the_others_join(tmp_path, isolated_roots):
    archive = fixtures.write_zip(tmp_path / "train.zip", fixtures.dogs_flat_members(per_class=4))
    uploads = [background.upload_dir("dogs-vs-cats") for _ in range(SESSIONS)]
    barrier = threading.Barrier(SESSIONS)
    outcomes: dict[int, tuple] = {}

    def session(index: int) -> None:
        barrier.wait()
        outcomes[index] = background.start_or_join("dogs-vs-cats", [str(archive)],
                                                   cleanup=[str(uploads[index])])

    threads = [threading.Thread(target=session, args=(index,)) for index in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    starters = [index for index, (_, joined) in outcomes.items() if not joined]
    assert len(outcomes) == SESSIONS and len(starters) == 1
    started_pid = outcomes[starters[0]][0]
    for index, (pid, joined) in outcomes.items():
        if joined:
            assert pid in (None, started_pid)
            assert not uploads[index].exists(), "a joining session's upload is removed at once"
    with pytest.raises(datasets.DatasetError, match="already running"):
        background.start_get("dogs-vs-cats", [str(archive)])
    deadline = time.monotonic() + 90
    while progress.is_running("dogs-vs-cats") and time.monotonic() < deadline:
        time.sleep(0.2)
    record = progress.read("dogs-vs-cats")
    assert record["state"] == "done" and record["pid"] == started_pid
    assert registry.status("dogs-vs-cats") == "ready"


def test_datasets_page_shows_the_progress_of_an_import_started_elsewhere(isolated_roots):
    # Another session's (or the CLI's) import, alive in this very process, at 3 of 10 files.
    writer = progress.ProgressWriter("dogs-vs-cats")
    writer("extract images", 3, 10)
    app_test = run_page(PAGE, datasets_selected="dogs-vs-cats")
    assert not app_test.exception
    bars = app_test.get("progress")
    assert len(bars) == 1 and "3 of 10" in bars[0].proto.text
    assert app_test.button(key="datasets_download_dogs-vs-cats").disabled
    pid, joined = background.start_or_join("dogs-vs-cats")
    assert (pid, joined) == (writer.record["pid"], True)
    writer.finish("done")
