"""The "Your own classes" page under AppTest, and its core logic (core.own_classes, core.live)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import jobs, live, own_classes, runs
from core.datasets import base, registry
from tests.conftest import run_page


def _png(seed: int, size=(48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _collection(per_class=(6, 5)) -> list:
    collection = own_classes.new_collection()
    seed = 0
    for own_class, count in zip(collection, per_class):
        for _ in range(count):
            assert own_classes.add_image(own_class, _png(seed), f"file-{seed}", "snapshot")
            seed += 1
    return collection


@pytest.fixture
def cancel_runs():
    """Cancels every run the test queued (their detached workers then exit)."""
    yield
    for summary in runs.list_runs():
        if summary.state in (runs.QUEUED, runs.RUNNING):
            jobs.cancel(summary.run_id)


@pytest.fixture
def local_weights(tmp_path):
    """A random-weights MobileNetV2 file imported as its ImageNet weights (offline)."""
    import keras

    from core import weights

    path = tmp_path / "mobilenetv2_random_notop.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3)).save_weights(path)
    return weights.import_file("mobilenetv2", path)


def test_collection_rules_and_unique_dataset_names():
    collection = own_classes.new_collection()
    assert [item.label for item in collection] == ["Class 1", "Class 2"]
    with pytest.raises(ValueError, match="already a class named 'class 1'"):
        own_classes.add_class(collection, "class 1")
    with pytest.raises(ValueError, match="not allowed"):
        own_classes.add_class(collection, "../etc")
    mug = own_classes.add_class(collection, "mug")
    assert mug.class_id == 2
    assert own_classes.add_image(mug, _png(1), "id-1") is True
    assert own_classes.add_image(mug, _png(1), "id-1") is False  # the same widget file again
    with pytest.raises(ValueError, match="not an image"):
        own_classes.add_image(mug, b"hello", "id-2")
    assert len(mug.images) == 1
    assert own_classes.problems(collection) == [
        "'Class 1' needs at least 5 images (has 0)", "'Class 2' needs at least 5 images (has 0)",
        "'mug' needs at least 5 images (has 1)"]
    names = {own_classes.new_dataset_name(now=0.0) for _ in range(20)}
    assert len(names) == 20 and all(name.startswith("own-19700101-000000-") for name in names)


def test_unchanged_collection_reuses_its_dataset():
    collection = _collection()
    first, reused = own_classes.dataset_for(collection, None)
    assert not reused and base.is_custom(first)
    assert registry.get_info(first).class_names == ["Class 1", "Class 2"]
    record = {"digest": own_classes.collection_digest(collection), "dataset": first}
    assert own_classes.dataset_for(collection, record) == (first, True)
    own_classes.add_image(collection[1], _png(99), "another")
    second, reused = own_classes.dataset_for(collection, record)
    assert not reused and second != first
    assert registry.split_counts(second)["counts"] == {"train": [5, 5], "val": [1, 1]}


def test_seconds_to_usable_model_reads_the_run_end():
    status = {"state": runs.COMPLETED, "ended_at": "2026-01-01T00:00:30+00:00"}
    pressed = 1767225600.0  # 2026-01-01T00:00:00Z
    assert own_classes.seconds_to_usable_model(pressed, status) == 30.0
    assert own_classes.seconds_to_usable_model(pressed, dict(status, state=runs.RUNNING)) is None


def test_frame_annotator_draws_top3_and_fps():
    class FixedPredictor:
        def top_k(self, images, k):
            assert len(images) == 1 and images[0].shape == (60, 80, 3)
            rows = [("mug", 0.8), ("pen", 0.15), ("phone", 0.05)]
            return [[{"class_id": index, "class_name": name, "probability": probability}
                     for index, (name, probability) in enumerate(rows[:k])]]

    ticks = iter([10.0, 10.25, 10.5])
    annotator = live.FrameAnnotator(FixedPredictor(), clock=lambda: next(ticks))
    frame = np.zeros((60, 80, 3), np.uint8)
    for _ in range(3):
        annotated = annotator(frame)
    assert annotator.fps() == pytest.approx(4.0)
    assert live.summary_text(annotator.last()) == "Last answer: mug 80%, pen 15%, phone 5% · 4.0 FPS · 3 frames"
    assert live.overlay_lines(annotator.last()["ranked"], 4.0) == ["mug 80%", "pen 15%", "phone 5%", "4.0 FPS"]
    assert annotated.shape == frame.shape and annotated.max() == 255 and frame.max() == 0
    assert live.is_secure_origin("http://localhost:8501/classify")
    assert live.is_secure_origin("https://192.168.0.7:8501/classify")
    assert not live.is_secure_origin("http://192.168.0.7:8501/classify")


def test_page_starts_with_two_empty_classes_and_train_disabled():
    app = run_page("pages/own_classes.py")
    assert not app.exception, app.exception
    assert app.button(key="own_train").disabled
    assert any("'Class 1' needs at least 5 images (has 0)" in info.value for info in app.info)
    assert any("No ImageNet weights" in warning.value for warning in app.warning)
    app.text_input(key="own_new_label").set_value("thumbs up").run()
    app.button(key="own_add_class").click().run()
    assert not app.exception
    assert [item.label for item in app.session_state["own_collection"]] == ["Class 1", "Class 2", "thumbs up"]
    assert any("thumbs up · 0 images" in block.value for block in app.markdown)
    app.text_input(key="own_new_label").set_value("../x").run()
    app.button(key="own_add_class").click().run()
    assert any("class label '../x' is not allowed" in error.value for error in app.error)


def test_train_creates_a_unique_dataset_and_submits_a_normal_job(local_weights, cancel_runs):
    app = run_page("pages/own_classes.py", own_collection=_collection())
    assert not app.exception, app.exception
    assert any("Class 1 · 6 images" in block.value for block in app.markdown)
    assert not app.button(key="own_train").disabled
    app.button(key="own_train").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    record = app.session_state["own_run"]
    config = runs.read_config(runs.run_path(record["run_id"]))
    assert (config["model"], config["strategy"], config["image_size"]) == ("mobilenetv2", "feature-extraction", 224)
    assert config["weights"] == "imagenet"
    assert config.get("weights_sha256") in (None, local_weights["sha256"])
    assert config["dataset"] == record["dataset"] and record["dataset"].startswith("own-")
    assert registry.get_info(record["dataset"]).class_names == ["Class 1", "Class 2"]
    assert record["run_id"] in [summary.run_id for summary in runs.list_runs()]
    assert any(record["run_id"] in caption.value for caption in app.caption)
    assert app.button(key="own_train").disabled  # one training at a time from this page
