"""AppTest of pages/classify.py: a fixture run, bad uploads, every input mode, the bare machine."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from core import runs
from core.inference import Predictor, read_image
from core.charts.classify import format_probability
from tests.conftest import run_page

PAGE = "pages/classify.py"
SPEC = {"image_size": 16, "color": "rgb", "equalization": "none", "blur": 0}
CLASS_NAMES = ["stop", "yield", "priority road"]


def build_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def make_run(root, val_accuracy: float, model=None, dataset: str = "synthetic-signs"):
    config = {"model": "lenet5", "preset": "seed", "dataset": dataset, "preprocessing": SPEC}
    run_dir = runs.create_run(config, root)
    (model or build_model()).save(run_dir / runs.MODEL_FILE)
    (run_dir / "class_names.json").write_text(json.dumps(CLASS_NAMES))
    runs.append_metrics(run_dir, {"epoch": 1, "accuracy": 0.5, "val_accuracy": val_accuracy})
    runs.write_status(run_dir, state=runs.COMPLETED)
    return run_dir


def png_bytes(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def texts(app_test) -> str:
    return "\n".join(element.value for element in app_test.markdown)


@pytest.fixture
def fixture_run(isolated_roots):
    return make_run(isolated_roots["runs"], 0.9)


def test_bare_machine_offers_quick_train(isolated_roots):
    app_test = run_page(PAGE)
    assert not app_test.exception
    assert "no finished training run" in app_test.info[0].value
    assert app_test.button(key="classify_quick_train").label == "Quick train on synthetic signs"


def test_uploads_show_results_and_every_bad_file_gets_a_message(fixture_run):
    app_test = run_page(PAGE)
    assert not app_test.exception
    good = png_bytes()
    truncated = png_bytes(size=(64, 64))[:50]
    app_test.file_uploader(key="classify_upload").set_value([
        ("sign.png", good, "image/png"),
        ("notes.png", b"this is text, not a picture", "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
        ("broken.png", truncated, "image/png"),
    ]).run()
    assert not app_test.exception
    errors = [error.value for error in app_test.error]
    assert len(errors) == 3
    assert "notes.png" in errors[0] and "not an image" in errors[0]
    assert "empty.jpg" in errors[1] and "empty" in errors[1]
    assert "broken.png" in errors[2] and "truncated or corrupt" in errors[2]
    expected = Predictor.from_run(fixture_run).top_k([read_image(good)], k=1)[0][0]
    assert (f"Top-1: {expected['class_name']} — {format_probability(expected['probability'])}"
            in texts(app_test))
    assert any("Latency" in caption.value for caption in app_test.caption)
    # the model's view, the input and the Grad-CAM overlay are shown
    assert len(app_test.get("image")) >= 3


def test_best_run_is_the_default(isolated_roots):
    make_run(isolated_roots["runs"], 0.4)
    best = make_run(isolated_roots["runs"], 0.95)
    make_run(isolated_roots["runs"], 0.6)
    app_test = run_page(PAGE)
    assert not app_test.exception
    run_box = app_test.selectbox(key="classify_run_synthetic-signs")
    assert run_box.value == best.name
    assert len(run_box.options) == 3


def test_broken_model_file_is_an_error_message_not_a_traceback(isolated_roots):
    run_dir = make_run(isolated_roots["runs"], 0.9)
    (run_dir / runs.MODEL_FILE).write_bytes(b"garbage")
    app_test = run_page(PAGE)
    assert not app_test.exception
    assert "Could not load model.keras" in app_test.error[0].value


def test_webcam_snapshot_is_classified(fixture_run):
    app_test = run_page(PAGE)
    app_test.radio(key="classify_mode").set_value("Webcam snapshot").run()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 40, 200)).save(buffer, format="JPEG")
    app_test.camera_input(key="classify_camera").set_value(
        ("shot.jpg", buffer.getvalue(), "image/jpeg")).run()
    assert not app_test.exception
    assert "Top-1:" in texts(app_test)


def test_images_from_the_internet_table_accuracy_and_csv(fixture_run):
    app_test = run_page(PAGE)
    app_test.radio(key="classify_mode").set_value("Images from the internet").run()
    uploads = [(f"stop.{index}.png", png_bytes((index * 60, 10, 10)), "image/png")
               for index in range(3)]
    uploads.append(("holiday.png", png_bytes((0, 200, 0)), "image/png"))
    uploads.append(("bad.gif", b"GIF89a broken", "image/gif"))
    app_test.file_uploader(key="classify_internet_upload").set_value(uploads).run()
    assert not app_test.exception
    assert len(app_test.error) == 1 and "bad.gif" in app_test.error[0].value
    predictor = Predictor.from_run(fixture_run)
    images = [read_image(content) for _, content, _ in uploads[:4]]
    predicted = [predictor.class_names[index] for index in predictor.predict(images).argmax(1)]
    correct = sum(name == "stop" for name in predicted[:3])
    metrics = {metric.label: metric.value for metric in app_test.metric}
    assert metrics["Images"] == "4"
    assert metrics["With a true label"] == "3"  # guessed from the "stop.N.png" names
    assert metrics["Accuracy"] == format_probability(correct / 3)
    assert app_test.get("download_button")


def test_live_webcam_that_cannot_start_is_a_message_not_a_crash(fixture_run):
    # AppTest has no real Streamlit runtime, so streamlit-webrtc cannot start here: the page must
    # say so and explain the camera rules. The real stream is covered by
    # tests/browser/test_live_webcam_browser.py under Chromium's fake camera.
    app_test = run_page(PAGE)
    app_test.radio(key="classify_mode").set_value("Live webcam").run()
    assert not app_test.exception
    message = " ".join(error.value for error in app_test.error)
    assert "The live webcam could not start" in message and "https" in message


def test_samples_mode_with_generated_synthetic_signs(isolated_roots):
    import keras

    from core.datasets import signs

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(43, activation="softmax")(keras.layers.Flatten()(x))
    run_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs",
                               "preprocessing": SPEC}, isolated_roots["runs"])
    keras.Model(inputs, outputs).save(run_dir / runs.MODEL_FILE)
    (run_dir / "class_names.json").write_text(json.dumps(list(signs.CLASS_NAMES)))
    runs.write_status(run_dir, state=runs.COMPLETED)
    app_test = run_page(PAGE, timeout=120)
    app_test.radio(key="classify_mode").set_value("Samples").run(timeout=120)
    assert not app_test.exception
    assert "true class:" in texts(app_test) and "Top-1:" in texts(app_test)


def test_quick_train_submits_a_real_job_that_the_page_follows(isolated_roots):
    from core import jobs

    app_test = run_page(PAGE)
    app_test.button(key="classify_quick_train").click().run()
    assert not app_test.exception
    assert not app_test.error, app_test.error[0].value
    run_id = app_test.session_state["classify_quick_run_id"]
    status = jobs.status(run_id)
    assert status["state"] in (runs.QUEUED, runs.RUNNING) and status.get("pid")
    config = runs.read_config(isolated_roots["runs"] / run_id)
    assert (config["model"], config["dataset"]) == ("lenet5", "synthetic-signs")
    progress = app_test.get("progress")
    assert progress and f"Training {run_id}" in progress[0].proto.text
    # Kill the real worker rather than spend a minute of CPU; the page reports what happened.
    import signal

    assert jobs.send_signal(run_id, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while jobs.status(run_id)["state"] not in runs.TERMINAL_STATES:
        assert time.monotonic() < deadline, "the killed quick-train worker was not detected"
        time.sleep(0.5)
    app_test.run()
    assert not app_test.exception
    assert any(f"Training {run_id} failed" in error.value for error in app_test.error)
    app_test.button(key="classify_quick_reset").click().run()
    assert app_test.button(key="classify_quick_train")


def test_model_is_loaded_once_and_not_on_reruns(fixture_run, monkeypatch):
    from core.predictor import Predictor as PredictorClass

    loads = []
    original = PredictorClass.from_run.__func__

    def counting_from_run(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("run_dir"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PredictorClass, "from_run", classmethod(counting_from_run))
    app_test = run_page(PAGE)
    app_test.radio(key="classify_mode").set_value("Live webcam").run()
    app_test.radio(key="classify_mode").set_value("Upload").run()
    app_test.file_uploader(key="classify_upload").set_value(
        ("sign.png", png_bytes(), "image/png")).run()
    assert not app_test.exception
    assert "Top-1:" in texts(app_test)
    assert loads == [str(fixture_run)]


def test_top_k_chart_orders_bars_and_marks_the_true_class():
    from core.charts import classify as charts

    ranked = [{"class_name": "dog", "probability": 0.7}, {"class_name": "cat", "probability": 0.3}]
    figure = charts.top_k_figure(ranked, true_class="cat")
    bar = figure.data[0]
    assert list(bar.y) == ["dog", "cat"] and list(bar.x) == [0.7, 0.3]
    assert list(bar.text) == ["70.0%", "30.0%"]
    assert bar.marker.color[0] == charts.TOP_COLOR and bar.marker.color[1] == charts.TRUE_COLOR
    assert figure.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match="at least one class"):
        charts.top_k_figure([])
