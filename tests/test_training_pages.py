"""AppTest: the Train LeNet-5 page and the Runs page, on run folders written through core.runs."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest

from core import jobs, runs
from core.models import lenet
from tests.conftest import run_page
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture

TRAIN_PAGE = "pages/train_lenet.py"
RUNS_PAGE = "pages/runs.py"
NUM_CLASSES = 43


def write_run(state: str, *, epochs_done: int = 3, total_epochs: int = 5, results: bool = False,
              model: bool = False, config_extra: dict | None = None, pid: int | None = None):
    """A run folder as a worker leaves it, written through core.runs."""
    # Today's seed preset records its batch parts (a run without the key trained in one pass).
    config = {"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
              "epochs": total_epochs, "preprocessing": {"image_size": 32},
              "batch_branches": lenet.SEED_BATCH_BRANCHES, **(config_extra or {})}
    run_dir = runs.create_run(config)
    for epoch in range(1, epochs_done + 1):
        runs.append_metrics(run_dir, {"epoch": epoch, "loss": 2.0 / epoch, "accuracy": 0.5 + 0.1 * epoch,
                                      "val_loss": 2.2 / epoch, "val_accuracy": 0.45 + 0.1 * epoch,
                                      "learning_rate": 0.001, "epoch_seconds": 4.0})
    now = runs.utc_now()
    fields = {"state": state, "started_at": now, "device": "CPU", "total_epochs": total_epochs,
              "epoch": epochs_done + (1 if state == runs.RUNNING else 0), "batch": 10,
              "batches_per_epoch": 40, "epoch_started_at": time.time() - 1.0}
    if state in jobs.ACTIVE_STATES:
        fields.update(pid=pid or os.getpid(), host=socket.gethostname(), heartbeat=jobs.heartbeat_now())
    else:
        fields.update(ended_at=now)
    runs.write_status(run_dir, **fields)
    runs.write_class_names(run_dir, [f"class {index}" for index in range(NUM_CLASSES)])
    if results:
        matrix = np.eye(NUM_CLASSES, dtype=int) * 5
        matrix[1, 2] = 2
        runs.write_results(run_dir, {
            "test_accuracy": 0.9123, "test_loss": 0.31, "num_test_images": 217,
            "per_class_accuracy": [1.0] + [5 / 7] + [1.0] * (NUM_CLASSES - 2),
            "confusion_matrix": matrix.tolist(),
            "class_names": [f"class {index}" for index in range(NUM_CLASSES)],
            "misclassified": [{"index": 35, "file_name": "synthetic_test_c01_i0005", "true": 1,
                               "predicted": 2, "confidence": 0.81},
                              {"index": 36, "file_name": "synthetic_test_c01_i0006", "true": 1,
                               "predicted": 2, "confidence": 0.64}],
            "best_val_accuracy": 0.75, "num_val_images": 215, "num_train_images": 860,
            "trainable_params": 64_811, "non_trainable_params": 0,
        })
    if model:
        import keras

        tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
        tiny.save(run_dir / runs.MODEL_FILE)
    return run_dir


def test_form_starts_from_the_seed_preset_and_explains_every_field(isolated_roots):
    app = run_page(TRAIN_PAGE)
    assert not app.exception
    values = {widget.key: widget.value for widget in app.number_input}
    assert values["train_lenet_epochs"] == 20
    assert values["train_lenet_learning_rate"] == pytest.approx(0.001)
    assert app.selectbox(key="train_lenet_batch_size").value == 128
    assert app.slider(key="train_lenet_dropout").value == pytest.approx(0.3)
    assert app.text_input(key="train_lenet_conv_filters").value == "6, 16"
    assert app.text_input(key="train_lenet_dense_units").value == "120, 84"
    assert app.slider(key="train_lenet_low_resolution").value == pytest.approx(lenet.SEED_LOW_RESOLUTION)
    # No GTSRB in the empty data root: synthetic signs with a note.
    assert app.selectbox(key="train_lenet_dataset").options == ["Synthetic signs (SYNTHETIC, generated)"]
    assert any("GTSRB is not installed" in caption.value for caption in app.caption)
    widgets = [*app.number_input, *app.selectbox, *app.slider, *app.text_input, *app.checkbox]
    assert widgets and all(widget.help for widget in widgets), [w.key for w in widgets if not w.help]


def test_choosing_a_preset_loads_its_defaults(isolated_roots):
    app = run_page(TRAIN_PAGE)
    app.selectbox(key="train_lenet_preset").set_value("plus").run()
    assert not app.exception
    expected = lenet.preset_config("plus")
    assert app.text_input(key="train_lenet_conv_filters").value == "24, 48, 96"
    assert app.checkbox(key="train_lenet_batch_norm").value is True
    assert app.checkbox(key="train_lenet_multi_scale").value is True
    assert app.number_input(key="train_lenet_epochs").value == expected["epochs"]
    assert app.selectbox(key="train_lenet_equalization").value == "clahe"
    assert app.number_input(key="train_lenet_committee_size").value == 1
    assert app.checkbox(key="train_lenet_mirror_signs").value is expected["mirror_signs"]
    assert app.checkbox(key="train_lenet_spatial_transformer").value is expected["spatial_transformer"]
    assert app.number_input(key="train_lenet_spatial_transformer_size").value == expected[
        "spatial_transformer_size"]
    assert app.slider(key="train_lenet_center_crop").value == pytest.approx(
        expected["preprocessing"]["center_crop"])
    assert app.number_input(key="train_lenet_time_budget_seconds").value == lenet.PLUS_TIME_BUDGET_SECONDS
    assert app.slider(key="train_lenet_low_resolution").value == 0.0
    assert app.slider(key="train_lenet_occlusion").value == 0.0
    app.selectbox(key="train_lenet_preset").set_value("committee").run()
    assert app.number_input(key="train_lenet_committee_size").value == lenet.COMMITTEE_MEMBERS
    assert app.number_input(key="train_lenet_time_budget_seconds").value == 0


@pytest.fixture
def queued_jobs(isolated_roots, synthetic_data_root, monkeypatch):
    """Jobs the Train page submits stay queued: the one slot is held, so no worker imports TF.

    Yields a list; the test appends the run ids it made, and they are cancelled afterwards.
    """
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    monkeypatch.setenv("TLLAB_MAX_CONCURRENT_JOBS", "1")
    slot = jobs.try_acquire_slot(isolated_roots["runs"])
    run_ids: list[str] = []
    try:
        yield run_ids
    finally:
        for run_id in run_ids:
            jobs.cancel(run_id)
        slot.release()


def _started_config(app, run_ids: list[str]) -> dict:
    """Clicks Start and returns the submitted job's config (its run id joins ``run_ids``)."""
    app.button(key="train_lenet_start").click().run()
    assert not app.exception
    run_ids.append(app.session_state["train_lenet_run_id"])
    return runs.read_config(runs.run_path(run_ids[-1]))


def test_start_submits_a_job_and_shows_it_queued(queued_jobs):
    app = run_page(TRAIN_PAGE)
    app.number_input(key="train_lenet_epochs").set_value(1)
    app.number_input(key="train_lenet_labels_per_class").set_value(2)
    app.slider(key="train_lenet_center_crop").set_value(0.9)
    app.number_input(key="train_lenet_time_budget_seconds").set_value(600)
    # A transformer size without the transformer (the seed preset has none) is not sent.
    app.number_input(key="train_lenet_spatial_transformer_size").set_value(24)
    app.slider(key="train_lenet_low_resolution").set_value(0.35)
    app.slider(key="train_lenet_occlusion").set_value(0.25)
    config = _started_config(app, queued_jobs)
    assert (config["epochs"], config["labels_per_class"], config["dataset"]) == (1, 2, "synthetic-signs")
    assert config["conv_filters"] == [6, 16]
    assert config["preprocessing"]["center_crop"] == pytest.approx(0.9)
    assert config["time_budget_seconds"] == 600
    assert config["spatial_transformer"] is False and config["spatial_transformer_size"] == 0
    assert config["augmentation"]["low_resolution"] == pytest.approx(0.35)
    assert config["augmentation"]["occlusion"] == pytest.approx(0.25)
    assert config["augmentation"]["rotation_degrees"] == 10.0
    assert config["batch_branches"] == lenet.SEED_BATCH_BRANCHES  # the preset's, unchanged
    assert jobs.status(queued_jobs[-1])["state"] == runs.QUEUED
    assert any("Queued" in element.value for element in app.info)


def test_batch_parts_fall_back_to_one_pass_with_batch_norm_unless_asked_for(queued_jobs):
    app = run_page(TRAIN_PAGE)
    assert app.number_input(key="train_lenet_batch_branches").value == lenet.SEED_BATCH_BRANCHES
    app.checkbox(key="train_lenet_batch_norm").check()
    app.number_input(key="train_lenet_batch_branches").set_value(3)
    app.button(key="train_lenet_start").click().run()
    assert not app.exception and not app.session_state["train_lenet_run_id"]
    assert any("batch_branches 3 needs batch_norm false" in error.value for error in app.error)
    # The preset's own value gives way to batch norm by itself.
    app.number_input(key="train_lenet_batch_branches").set_value(lenet.SEED_BATCH_BRANCHES)
    config = _started_config(app, queued_jobs)
    assert config["batch_norm"] is True and config["batch_branches"] == 1


def test_coming_back_shows_the_running_job_not_the_form(isolated_roots):
    run_dir = write_run(runs.RUNNING)
    app = run_page(TRAIN_PAGE)  # a fresh session: nothing remembered
    assert not app.exception
    assert app.session_state["train_lenet_run_id"] == run_dir.name
    assert any(header.value == "Training in progress" for header in app.subheader)
    assert not [button for button in app.button if button.key == "train_lenet_start"]
    assert any("Epoch 4 of 5" in str(bar.proto) for bar in app.get("progress"))
    app.button(key="train_lenet_live_cancel").click().run()
    assert runs.cancel_requested(run_dir)


def test_finished_run_shows_results_curves_matrix_and_mistakes(isolated_roots, synthetic_data_root,
                                                              monkeypatch):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = write_run(runs.COMPLETED, epochs_done=5, results=True)
    app = run_page(TRAIN_PAGE, train_lenet_run_id=run_dir.name)
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Test accuracy"] == "91.23%"
    assert metrics["Best val accuracy"] == "75.00%"
    charts = app.get("plotly_chart")
    assert len(charts) == 3  # curves, confusion matrix, per-class accuracy
    assert '"study: seed LeNet on GTSRB (val)"' in charts[0].proto.spec
    assert "class 1" in charts[1].proto.spec and "class 2" in charts[1].proto.spec
    assert len(app.get("image")) == 2  # the misclassified gallery
    app.button(key="train_lenet_new").click().run()
    assert app.session_state["train_lenet_run_id"] is None
    assert app.button(key="train_lenet_start")


def test_runs_page_lists_runs_and_broken_folders(isolated_roots):
    write_run(runs.COMPLETED, results=True)
    write_run(runs.FAILED, config_extra={"preset": "plus"})
    (isolated_roots["runs"] / "not-a-run").mkdir()
    dead = write_run(runs.RUNNING, pid=2**22 + 12345)  # a pid that does not exist
    app = run_page(RUNS_PAGE)
    assert not app.exception
    table = app.dataframe[0].value
    assert len(table) == 4
    states = dict(zip(table["run"], table["state"]))
    assert states["not-a-run"] == "broken"
    assert states[dead.name] == runs.FAILED  # death detected on listing
    assert "exited without finishing" in runs.read_status(dead)["error"]
    row = table[table["state"] == runs.COMPLETED].iloc[0]
    assert row["test acc"] == "91.23%" and row["best val acc"] == "75.00%" and row["device"] == "CPU"
    assert set(table.columns) >= {"state", "model", "preset / strategy", "dataset", "best val acc",
                                  "test acc", "duration", "device"}


def test_runs_page_cancel_delete_download_and_compare(isolated_roots):
    queued = write_run(runs.QUEUED, epochs_done=0)
    finished = write_run(runs.COMPLETED, results=True, model=True)
    app = run_page(RUNS_PAGE)
    app.selectbox(key="runs_selected").set_value(queued.name).run()
    app.button(key="runs_cancel").click().run()
    assert not app.exception
    assert runs.read_status(queued)["state"] == runs.CANCELLED

    app.selectbox(key="runs_selected").set_value(finished.name).run()
    assert app.get("download_button"), "a run with a model offers its download"
    app.button(key="runs_delete").click().run()
    assert any("cannot be undone" in warning.value for warning in app.warning)
    assert finished.exists()  # nothing deleted before the confirmation
    app.button(key="runs_delete_confirm").click().run()
    assert not finished.exists()
    assert not app.exception

    app.multiselect(key="runs_compare_selection").set_value([queued.name]).run()
    app.button(key="runs_open_compare").click().run()
    assert app.session_state["compare_run_ids"] == [queued.name]
