"""No swallowed errors (issue 11, part 5): a failing test split ends the run "completed with a
warning", and the Runs and Train pages show it; the Runs page resumes failed runs (part 6)."""

from __future__ import annotations

import pytest

from core import datasets, jobs, runs
from core.training import trainer
from tests.conftest import run_page
from tests.test_jobs import TINY_JOB, synthetic_data_root  # noqa: F401 - shared session fixture
from tests.test_training_pages import RUNS_PAGE, TRAIN_PAGE, write_run

TEST_SPLIT_FAILURE = "Test.csv is unreadable: disk I/O error"


@pytest.fixture
def data_root(monkeypatch, synthetic_data_root):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    return synthetic_data_root


def test_a_failing_test_split_completes_the_run_with_a_warning(data_root, monkeypatch):
    real_load = datasets.load

    def load(name, split, *args, **kwargs):
        if split == "test":
            raise OSError(TEST_SPLIT_FAILURE)
        return real_load(name, split, *args, **kwargs)

    monkeypatch.setattr(datasets, "load", load)
    run_dir = jobs.create_job(TINY_JOB)
    assert trainer.run_training(run_dir) == runs.COMPLETED

    status = runs.read_status(run_dir)
    results = runs.read_results(run_dir)
    expected = ("the test split of synthetic-signs could not be loaded, so the run has no test "
                f"scores: OSError: {TEST_SPLIT_FAILURE}")
    assert status["warning"] == expected
    assert results["warnings"] == [expected]
    assert results["test_accuracy"] is None and results["num_test_images"] is None
    assert results["num_val_images"] == 43  # the rest of the run is scored as usual
    assert f"WARNING {expected}" in (run_dir / runs.LOG_FILE).read_text()


def test_a_healthy_run_has_no_warning(data_root):
    run_dir = jobs.create_job(TINY_JOB)
    assert trainer.run_training(run_dir) == runs.COMPLETED
    assert runs.read_status(run_dir)["warning"] is None
    assert runs.read_results(run_dir)["warnings"] == []
    assert runs.read_results(run_dir)["num_test_images"] == 43


def test_without_a_logger_the_test_split_failure_is_raised(data_root, monkeypatch):
    real_load = datasets.load
    monkeypatch.setattr(datasets, "load", lambda name, split, *args, **kwargs: (
        (_ for _ in ()).throw(OSError(TEST_SPLIT_FAILURE)) if split == "test"
        else real_load(name, split, *args, **kwargs)))
    config = jobs.resolve_config(TINY_JOB)
    with pytest.raises(OSError, match="disk I/O error"):
        trainer.load_prepared_splits(config)


def _completed_with_warning():
    run_dir = write_run(runs.COMPLETED, epochs_done=5, results=True)
    results = runs.read_results(run_dir)
    results["warnings"] = ["the test split of synthetic-signs could not be loaded: boom"]
    runs.write_results(run_dir, results)
    runs.write_status(run_dir, warning="the test split of synthetic-signs could not be loaded: boom")
    return run_dir


def test_runs_page_shows_the_warning_in_the_table_and_the_details(isolated_roots):
    run_dir = _completed_with_warning()
    app = run_page(RUNS_PAGE)
    assert not app.exception
    table = app.dataframe[0].value
    assert table.iloc[0]["problem"] == "warning: the test split of synthetic-signs could not be loaded: boom"
    app.selectbox(key="runs_selected").set_value(run_dir.name).run()
    assert [warning.value for warning in app.warning] == [
        "Completed with a warning: the test split of synthetic-signs could not be loaded: boom"]


def test_train_page_shows_the_warning_of_a_finished_run(isolated_roots, data_root):
    run_dir = _completed_with_warning()
    app = run_page(TRAIN_PAGE, train_lenet_run_id=run_dir.name)
    assert not app.exception
    assert any("Completed with a warning: the test split" in warning.value for warning in app.warning)


def test_runs_page_resume_button_queues_a_failed_run_again(isolated_roots, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start_worker", lambda run_dir, runs_root=None: started.append(run_dir))
    failed = write_run(runs.FAILED)
    runs.write_status(failed, error="worker process 4242 exited without finishing")
    completed = write_run(runs.COMPLETED, results=True)
    app = run_page(RUNS_PAGE)
    app.selectbox(key="runs_selected").set_value(completed.name).run()
    assert not [button for button in app.button if button.key.startswith("runs_resume_")]

    app.selectbox(key="runs_selected").set_value(failed.name).run()
    app.button(key=f"runs_resume_{failed.name}").click().run()

    assert not app.exception
    assert started == [failed]
    status = runs.read_status(failed)
    assert (status["state"], status["resume_count"], status["error"]) == (runs.QUEUED, 1, None)
    assert [message.value for message in app.success] == [f"Resumed {failed.name}: queued again."]
