"""core.reports (what a run report shows), the trainer's validation mistakes, matrix axis names."""

from __future__ import annotations

import numpy as np
import pytest

from core import reports, runs
from core.charts import training as training_charts
from core.training import lenet_family
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture


def test_config_diff_lists_only_what_differs_from_the_preset():
    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
                                          "epochs": 1, "labels_per_class": 5,
                                          "preprocessing": {"color": "rgb"}})
    changes = {change.setting: (change.value, change.default) for change in reports.config_diff(config)}
    assert changes == {
        "dataset": ("synthetic-signs", "gtsrb"),
        "epochs": (1, 20),
        "labels_per_class": (5, None),
        "preprocessing.color": ("rgb", "grayscale"),
        "preprocessing.center_crop": (1.0, 0.8),  # the seed crop is for GTSRB's framing only
    }
    defaults, label = reports.reference_defaults(config)
    assert label == "lenet5 preset seed"
    assert defaults["conv_filters"] == [6, 16]


def test_config_diff_of_a_default_run_is_empty_and_other_presets_compare_to_their_own():
    assert reports.config_diff(lenet_family.resolve_config({"model": "lenet5", "preset": "plus"})) == []
    plus = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "dropout": 0.1})
    assert [(c.setting, c.value) for c in reports.config_diff(plus)] == [("dropout", 0.1)]


def test_config_diff_without_known_defaults_lists_every_setting():
    defaults, label = reports.reference_defaults({"model": "perceptron", "epochs": 3})
    assert defaults is None and "Unknown model 'perceptron'" in label
    changes = reports.config_diff({"model": "perceptron", "epochs": 3, "spec": {"size": 8}})
    assert [(c.setting, c.value, c.default) for c in changes] == [
        ("epochs", 3, None), ("model", "perceptron", None), ("spec.size", 8, None)]


def test_evaluation_view_prefers_test_and_falls_back_to_validation():
    names = ["stop", "yield", "priority road"]
    mistake = {"index": 4, "file_name": "a.png", "true": 2, "predicted": 0, "confidence": 0.9}
    both = {"class_names": names, "confusion_matrix": [[1]], "per_class_accuracy": [1.0],
            "misclassified": [], "val_confusion_matrix": [[2]], "val_misclassified": [mistake]}
    view = reports.evaluation_view(both)
    assert (view.split, view.title, view.confusion_matrix, view.misclassified) == ("test", "test", [[1]], [])
    val_only = {"class_names": names, "confusion_matrix": None, "misclassified": None,
                "val_confusion_matrix": [[2]], "val_per_class_accuracy": [0.5],
                "val_misclassified": [mistake]}
    view = reports.evaluation_view(val_only)
    assert (view.split, view.title, view.per_class_accuracy) == ("val", "validation", [0.5])
    assert (view.class_name(mistake["true"]), view.class_name(mistake["predicted"])) == ("priority road", "stop")
    assert view.class_name(7) == "7"
    assert reports.evaluation_view(None, ["a"]).split is None


def test_write_results_stores_validation_mistakes_with_file_names(tmp_path):
    import keras

    from core.training.trainer import PreparedSplit, RunContext

    run_dir = runs.create_run({"model": "lenet5"})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax", name="dense")])
    model.get_layer("dense").set_weights([np.eye(2, dtype="float32"), np.zeros(2, dtype="float32")])
    val = PreparedSplit(images=np.array([[5, 0], [0, 5], [5, 0], [0, 2]], dtype="uint8"),
                        labels=np.array([0, 1, 1, 0]), file_names=["v0", "v1", "v2", "v3"],
                        class_names=["cat", "dog"], split="val")
    results = RunContext(run_dir, {"model": "lenet5"}).write_results(model, None, val)
    confident = float(np.exp(5) / (np.exp(5) + 1))
    assert results["test_accuracy"] is None and results["misclassified"] is None
    assert results["val_confusion_matrix"] == [[1, 1], [1, 1]]
    assert [(item["file_name"], item["true"], item["predicted"]) for item in results["val_misclassified"]] == [
        ("v2", 1, 0), ("v3", 0, 1)]
    assert results["val_misclassified"][0]["confidence"] == pytest.approx(confident)
    assert runs.read_results(run_dir)["val_misclassified"][1]["confidence"] == pytest.approx(
        float(np.exp(2) / (np.exp(2) + 1)))


def test_load_split_images_finds_the_trainers_images_by_file_name(synthetic_data_root, monkeypatch):
    from core import datasets

    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    config = {"dataset": "synthetic-signs", "seed": 0, "preprocessing": {"image_size": 32}}
    expected = datasets.load("synthetic-signs", "val", 32, seed=0)
    names = [expected.file_names[3], "no-such-image", expected.file_names[0]]
    images = reports.load_split_images(config, "val", names)
    assert images[1] is None
    np.testing.assert_array_equal(images[0], expected.images[3])
    np.testing.assert_array_equal(images[2], expected.images[0])
    cropped = {**config, "preprocessing": {"image_size": 32, "center_crop": 0.8}}
    assert reports.image_size_of(config) == 32 and reports.image_size_of(cropped) == 40
    np.testing.assert_array_equal(reports.load_split_images(cropped, "val", names[:1])[0],
                                  datasets.load("synthetic-signs", "val", 40, seed=0).images[3])
    with pytest.raises(ValueError, match="split must be one of"):
        reports.split_load_arguments(config, "train")
    assert reports.split_load_arguments({"seed": 3, "classes": [1, 2], "valid_size": 9}, "test") == {
        "seed": 3, "classes": [1, 2]}


def test_log_tail_duration_and_downloadable_files(tmp_path):
    run_dir = runs.create_run({"model": "lenet5"})
    assert reports.read_log_tail(run_dir) is None
    text = "".join(f"line {index} é\n" for index in range(2000))
    (run_dir / runs.LOG_FILE).write_text(text, encoding="utf-8")
    assert reports.read_log_tail(run_dir, 100) == text[-100:]
    status = {"started_at": "2026-01-01T10:00:00+00:00", "ended_at": "2026-01-01T10:01:15+00:00"}
    assert reports.run_duration_seconds(status) == 75.0
    assert reports.run_duration_seconds({"started_at": None}) is None
    names = [name for name, _, _, _ in reports.downloadable_files(run_dir)]
    assert names == [runs.CONFIG_FILE, runs.LOG_FILE]
    sizes = {name: size for name, _, size, _ in reports.downloadable_files(run_dir)}
    assert sizes[runs.LOG_FILE] == len(text.encode("utf-8"))


def test_matrix_axes_show_names_where_they_fit():
    names = ["Stop", "Yield", "Speed limit (120km/h) ahead of works"]
    figure = training_charts.confusion_matrix([[3, 0, 0], [1, 2, 0], [0, 0, 3]], names)
    assert list(figure.layout.xaxis.ticktext) == ["Stop", "Yield", "Speed limit (120km/h)…"]
    assert list(figure.layout.yaxis.ticktext) == list(figure.layout.xaxis.ticktext)
    assert "predicted: 0 Stop" in figure.data[0].text[1][0]
    many = [f"class {index}" for index in range(43)]
    figure = training_charts.confusion_matrix(np.eye(43, dtype=int).tolist(), many)
    assert list(figure.layout.xaxis.ticktext) == [str(index) for index in range(43)]
    bars = training_charts.per_class_accuracy([1.0, 0.5, None], names)
    assert list(bars.layout.xaxis.ticktext)[:2] == ["Stop", "Yield"]
