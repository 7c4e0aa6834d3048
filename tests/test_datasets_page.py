"""The Datasets page under AppTest (real background processes), and its chart builders."""

import time

import numpy as np
import plotly.graph_objects as go

from core.charts import datasets as charts
from core.datasets import preview, registry
from tests.conftest import run_page
from tests import test_datasets_support as fixtures

PAGE = "pages/datasets.py"


def _markdown(app_test) -> str:
    return "\n".join(element.value for element in app_test.markdown)


def _wait_until_ready(app_test, name, timeout=90):
    deadline = time.monotonic() + timeout
    while registry.status(name) == "downloading" and time.monotonic() < deadline:
        time.sleep(0.3)
    return app_test.run()


def test_page_shows_data_root_status_and_synthetic_default(isolated_roots):
    app_test = run_page(PAGE)
    assert not app_test.exception
    assert str(isolated_roots["data"]) in app_test.caption[0].value
    overview = app_test.dataframe[0].value
    assert overview["dataset"].tolist() == ["gtsrb", "dogs-vs-cats", "synthetic-signs"]
    assert overview["status"].tolist() == ["absent", "absent", "ready"]
    assert app_test.radio(key="datasets_selected").value == "synthetic-signs"
    assert any("SYNTHETIC" in warning.value for warning in app_test.warning)
    metrics = {metric.label: metric.value for metric in app_test.metric}
    assert metrics["train images"] == "25,800" and metrics["Classes"] == "43"
    assert len(app_test.get("plotly_chart")) == 2 and len(app_test.get("image")) >= 4


def test_import_by_path_runs_in_background_then_shows_counts_and_track_split(tmp_path):
    archive = fixtures.gtsrb_training_zip(tmp_path, tracks=4, frames=3)
    app_test = run_page(PAGE, datasets_selected="gtsrb")
    assert "Status: **absent**" in _markdown(app_test)
    assert "98.3%" in _markdown(app_test)  # the track-split explanation
    app_test.text_area(key="datasets_import_path_gtsrb").input(str(archive))
    app_test.button(key="datasets_import_gtsrb").click().run()
    assert not app_test.exception
    app_test = _wait_until_ready(app_test, "gtsrb")
    assert registry.status("gtsrb") == "ready"
    metrics = {metric.label: metric.value for metric in app_test.metric}
    assert metrics["train images"] == "36" and metrics["val images"] == "12"
    assert "Status: **ready**" in _markdown(app_test)
    assert any("shared by both: none" in caption.value for caption in app_test.caption)
    figure = app_test.get("plotly_chart")[0]
    assert "images per class" in figure.proto.spec


def test_bad_path_shows_an_error_and_nothing_starts(tmp_path):
    app_test = run_page(PAGE, datasets_selected="dogs-vs-cats")
    app_test.text_area(key="datasets_import_path_dogs-vs-cats").input(str(tmp_path / "nope.zip"))
    app_test.button(key="datasets_import_dogs-vs-cats").click().run()
    assert any("does not exist" in error.value for error in app_test.error)
    assert registry.status("dogs-vs-cats") == "absent"


def test_failed_import_reports_the_reason(tmp_path):
    truncated = fixtures.truncate(fixtures.write_zip(tmp_path / "train.zip", fixtures.dogs_flat_members(4)))
    app_test = run_page(PAGE, datasets_selected="dogs-vs-cats")
    app_test.text_area(key="datasets_import_path_dogs-vs-cats").input(str(truncated))
    app_test.button(key="datasets_import_dogs-vs-cats").click().run()
    app_test = _wait_until_ready(app_test, "dogs-vs-cats")
    assert any("not a readable zip" in error.value for error in app_test.error)
    assert registry.status("dogs-vs-cats") == "absent"


def test_delete_asks_for_confirmation(tmp_path):
    from core import datasets

    datasets.get("dogs-vs-cats", [fixtures.write_zip(tmp_path / "t.zip", fixtures.dogs_flat_members(4))])
    app_test = run_page(PAGE, datasets_selected="dogs-vs-cats")
    assert not app_test.exception
    app_test.button(key="datasets_delete_dogs-vs-cats").click().run()
    assert registry.status("dogs-vs-cats") == "ready"
    assert any("Delete dogs-vs-cats" in warning.value for warning in app_test.warning)
    app_test.button(key="datasets_delete_yes_dogs-vs-cats").click().run()
    assert registry.status("dogs-vs-cats") == "absent"
    assert any("Deleted dogs-vs-cats" in success.value for success in app_test.success)


def test_before_after_controls_and_real_augmentation_layers():
    app_test = run_page(PAGE, timeout=120)
    app_test.radio(key="datasets_pp_color_synthetic-signs").set_value("grayscale")
    app_test.radio(key="datasets_pp_equalization_synthetic-signs").set_value("clahe")
    app_test.toggle(key="datasets_aug_show_synthetic-signs").set_value(True).run(timeout=120)
    assert not app_test.exception
    captions = [image.proto.imgs[0].caption for image in app_test.get("image") if image.proto.imgs]
    assert any("32×32×1" in caption for caption in captions)
    assert any(caption.startswith("Augmented") for caption in captions)


def test_chart_builders_return_figures():
    figure = charts.class_distribution_figure(["a", "b"], {"train": [3, 4], "val": [1, 1]})
    assert isinstance(figure, go.Figure) and [trace.name for trace in figure.data] == ["train (7)", "val (2)"]
    histogram = charts.pixel_histogram_figure(np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4, 1), 255, np.uint8))
    assert histogram.data[0].y[0] == 48 and histogram.data[1].y[-1] == 16
    grid = preview.grid([np.zeros((10, 20, 3), np.uint8), np.zeros((5, 5), np.uint8)], columns=2, tile=8, pad=1)
    assert grid.shape == (10, 19, 3)
