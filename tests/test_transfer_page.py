"""Transfer learning page under AppTest: defaults, offline weights message, queued jobs."""

from __future__ import annotations

import pytest

from core import jobs, runs
from tests.conftest import run_page


@pytest.fixture
def cancel_queued_runs(isolated_roots, monkeypatch):
    """Keeps the runs the test queues queued, then cancels them (their detached workers exit).

    The test holds the only job slot: a worker that started would fail at once on the empty
    data root, and the page would show that failure as an error, depending on timing.
    """
    monkeypatch.setenv("TLLAB_MAX_CONCURRENT_JOBS", "1")
    slot = jobs.try_acquire_slot(isolated_roots["runs"])
    try:
        yield
    finally:
        for summary in runs.list_runs():
            if summary.state in (runs.QUEUED, runs.RUNNING):
                jobs.cancel(summary.run_id)
        slot.release()


def test_transfer_page_shows_the_study_defaults():
    app = run_page("pages/transfer.py")
    assert not app.exception, app.exception
    assert app.selectbox(key="transfer_dataset").value == "dogs-vs-cats"
    assert app.radio(key="transfer_strategy").value == "feature-extraction"
    assert app.number_input(key="transfer_image_size_dogs-vs-cats").value == 224
    assert app.number_input(key="transfer_epochs_vgg16").value == 100
    assert app.number_input(key="transfer_batch_size").value == 100
    assert app.number_input(key="transfer_train_size_dogs-vs-cats").value == 2000
    assert app.number_input(key="transfer_valid_size_dogs-vs-cats").value == 500
    assert app.select_slider(key="transfer_learning_rate_vgg16").value == pytest.approx(1e-4)
    assert app.number_input(key="transfer_copies").value == 5
    assert any("5 augmented copies" in caption.value for caption in app.caption)
    assert any("Yosinski" in block.value for block in app.markdown)


def test_mobilenet_defaults_and_missing_imagenet_weights_say_how_to_install_them():
    app = run_page("pages/transfer.py")
    app.selectbox(key="transfer_model").set_value("mobilenetv2").run()
    assert not app.exception
    assert app.number_input(key="transfer_epochs_mobilenetv2").value == 30
    assert app.select_slider(key="transfer_learning_rate_mobilenetv2").value == pytest.approx(1e-3)
    message = " ".join(info.value for info in app.info)
    assert "not installed" in message and "python -m core.weights get mobilenetv2 --from FILE" in message
    app.radio(key="transfer_strategy").set_value("fine-tune").run()
    assert app.number_input(key="transfer_fine_tune_blocks_mobilenetv2").value == 3
    assert app.number_input(key="transfer_fine_tune_epochs_mobilenetv2").value == 5


def test_installed_imagenet_weights_are_named_with_their_source(tmp_path):
    keras = pytest.importorskip("keras")
    from core import weights

    path = tmp_path / "mobilenet_small.weights.h5"
    keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                 weights=None).save_weights(path)
    weights.import_file("mobilenet", path)
    app = run_page("pages/transfer.py")
    app.selectbox(key="transfer_model").set_value("mobilenet").run()
    assert not app.exception
    message = " ".join(success.value for success in app.success)
    assert "ImageNet weights installed" in message and str(path.resolve()) in message


def test_start_queues_a_scratch_job_with_the_page_settings(cancel_queued_runs):
    app = run_page("pages/transfer.py")
    app.radio(key="transfer_strategy").set_value("scratch").run()
    app.number_input(key="transfer_image_size_dogs-vs-cats").set_value(64).run()
    app.number_input(key="transfer_epochs_vgg16").set_value(3).run()
    app.button(key="transfer_start").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    run_id = app.session_state["transfer_last_run_id"]
    config = runs.read_config(runs.run_path(run_id))
    assert (config["model"], config["strategy"], config["weights"]) == ("vgg16", "scratch", "none")
    assert config["image_size"] == 64 and config["epochs"] == 3 and config["preprocessing"]["image_size"] == 64


def test_local_file_backbone_and_sweep_queue_scratch_and_transfer_per_size(cancel_queued_runs, tmp_path):
    keras = pytest.importorskip("keras")
    weights = tmp_path / "mobilenet_notop.weights.h5"
    keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                 weights=None).save_weights(weights)
    app = run_page("pages/transfer.py")
    app.selectbox(key="transfer_model").set_value("mobilenet").run()
    app.radio(key="transfer_weights_source").set_value("Weights file on this machine").run()
    app.text_input(key="transfer_weights_path_mobilenet").input(str(weights)).run()
    app.multiselect(key="transfer_sweep_sizes").set_value([100, 500]).run()
    app.button(key="transfer_sweep").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    configs = [summary.config for summary in runs.list_runs()]
    assert sorted((config["train_size"], config["strategy"]) for config in configs) == [
        (100, "feature-extraction"), (100, "scratch"), (500, "feature-extraction"), (500, "scratch")]
    assert len({config["sweep_id"] for config in configs}) == 1
    assert {config["weights"] for config in configs if config["strategy"] != "scratch"} == {str(weights.resolve())}
    assert {config["alpha"] for config in configs if config["strategy"] != "scratch"} == {0.25}


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
