"""Transfer learning page under AppTest: defaults, offline weights message, queued jobs."""

from __future__ import annotations

import socket

import pytest

from core import jobs, runs
from tests.conftest import run_page


@pytest.fixture
def cancel_queued_runs():
    """Cancels every run the test queued (their detached workers then exit)."""
    yield
    for summary in runs.list_runs():
        if summary.state in (runs.QUEUED, runs.RUNNING):
            jobs.cancel(summary.run_id)


def test_transfer_page_shows_the_study_defaults():
    app = run_page("pages/transfer.py")
    assert not app.exception, app.exception
    assert app.selectbox(key="transfer_dataset").value == "dogs-vs-cats"
    assert app.radio(key="transfer_strategy").value == "feature-extraction"
    assert app.number_input(key="transfer_image_size_dogs-vs-cats").value == 224
    assert app.number_input(key="transfer_epochs").value == 100
    assert app.number_input(key="transfer_batch_size").value == 100
    assert app.number_input(key="transfer_train_size_dogs-vs-cats").value == 2000
    assert app.number_input(key="transfer_valid_size_dogs-vs-cats").value == 500
    assert app.select_slider(key="transfer_learning_rate").value == pytest.approx(1e-4)
    assert app.number_input(key="transfer_copies").value == 5
    assert any("5 augmented copies" in caption.value for caption in app.caption)
    assert any("Yosinski" in block.value for block in app.markdown)


def test_offline_imagenet_download_points_to_the_local_file_option(monkeypatch, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TLLAB_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    app = run_page("pages/transfer.py")
    assert any("not downloaded yet" in info.value for info in app.info)
    app.button(key="transfer_download_weights").click().run()
    assert not app.exception
    message = " ".join(error.value for error in app.error)
    assert "Could not download the ImageNet weights" in message
    assert "Offline?" in message and "Local weights file" in message


def test_start_queues_a_scratch_job_with_the_page_settings(cancel_queued_runs):
    app = run_page("pages/transfer.py")
    app.radio(key="transfer_strategy").set_value("scratch").run()
    app.number_input(key="transfer_image_size_dogs-vs-cats").set_value(64).run()
    app.number_input(key="transfer_epochs").set_value(3).run()
    app.button(key="transfer_start").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    run_id = app.session_state["transfer_last_run_id"]
    config = runs.read_config(runs.run_path(run_id))
    assert (config["model"], config["strategy"], config["weights"]) == ("vgg16", "scratch", "none")
    assert config["image_size"] == 64 and config["epochs"] == 3 and config["preprocessing"]["image_size"] == 64


def test_local_file_backbone_and_sweep_queue_scratch_and_transfer_per_size(cancel_queued_runs, tmp_path):
    weights = tmp_path / "vgg16_notop.h5"
    import h5py

    with h5py.File(weights, "w") as handle:  # a real HDF5 file: the weights check opens it
        handle.attrs["note"] = "not really weights; the runs are cancelled before they load it"
    app = run_page("pages/transfer.py")
    app.radio(key="transfer_weights_source").set_value("Local weights file").run()
    app.text_input(key="transfer_weights_path_vgg16").input(str(weights)).run()
    app.multiselect(key="transfer_sweep_sizes").set_value([100, 500]).run()
    app.button(key="transfer_sweep").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    configs = [summary.config for summary in runs.list_runs()]
    assert sorted((config["train_size"], config["strategy"]) for config in configs) == [
        (100, "feature-extraction"), (100, "scratch"), (500, "feature-extraction"), (500, "scratch")]
    assert len({config["sweep_id"] for config in configs}) == 1
    assert {config["weights"] for config in configs if config["strategy"] != "scratch"} == {str(weights)}


def test_few_shot_button_queues_source_then_both_arms(cancel_queued_runs):
    app = run_page("pages/transfer.py")
    app.radio(key="transfer_fewshot_source").set_value("gtsrb-half").run()
    app.button(key="transfer_fewshot_start").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    queued = app.session_state["transfer_last_experiment"]
    roles = {runs.read_config(runs.run_path(queued[key]))["role"] for key in ("source", "scratch", "transfer")}
    assert roles == {"source", "scratch", "transfer"} and not queued["source_reused"]
    transfer = runs.read_config(runs.run_path(queued["transfer"]))
    assert transfer["labels_per_class"] == 10 and transfer["classes"] == list(range(21, 43))
    assert any("--source gtsrb-half --labels-per-class 10" in code.value for code in app.code)
