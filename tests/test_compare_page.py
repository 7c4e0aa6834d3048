"""Compare page (AppTest) and the comparison charts/exports, on run folders written via core.runs."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest
from PIL import Image

from core import runs
from core.charts import compare as charts
from tests.conftest import run_page

SCRATCH_VAL = (0.50, 0.55, 0.60, 0.62, 0.63)
TRANSFER_VAL = (0.80, 0.88, 0.90, 0.91, 0.90)


def write_fixture_run(config: dict, val_accuracy, *, seconds_per_epoch: float = 2.0,
                      results: dict | None = None, device: str = "CPU", state: str = runs.COMPLETED,
                      runs_root=None):
    """Writes a finished-looking run through core.runs: config, status, metrics, results."""
    run_dir = runs.create_run(config, runs_root)
    runs.write_status(run_dir, state=state, device=device, started_at=runs.utc_now())
    for epoch, value in enumerate(val_accuracy, start=1):
        runs.append_metrics(run_dir, {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": value + 0.05,
                                      "val_loss": 1.2 - value, "val_accuracy": value,
                                      "learning_rate": 1e-4, "epoch_seconds": seconds_per_epoch})
    runs.write_results(run_dir, {"test_accuracy": None, "num_train_images": 2000,
                                 "trainable_params": 100, "non_trainable_params": 0, **(results or {})})
    return run_dir


def write_scratch_and_transfer(runs_root=None):
    """A scratch and a feature-extraction VGG16 run on Dogs vs Cats (the study's pair)."""
    base = {"model": "vgg16", "dataset": "dogs-vs-cats", "train_size": 2000, "image_size": 224}
    scratch = write_fixture_run({**base, "strategy": "scratch", "weights": "none"}, SCRATCH_VAL,
                                seconds_per_epoch=30.0, runs_root=runs_root,
                                results={"trainable_params": 21_137_986, "non_trainable_params": 0})
    transfer = write_fixture_run({**base, "strategy": "feature-extraction", "weights": "imagenet"},
                                 TRANSFER_VAL, seconds_per_epoch=0.5, runs_root=runs_root,
                                 results={"trainable_params": 6_423_298,
                                          "non_trainable_params": 14_714_688})
    return scratch, transfer


def test_comparison_table_has_the_per_run_figures():
    scratch, transfer = write_scratch_and_transfer()
    summaries = [runs.summarize_run(scratch), runs.summarize_run(transfer)]
    table = charts.comparison_table(summaries).set_index("run_id")
    row = table.loc[transfer.name]
    assert row["kind"] == "transfer" and row["best_val_accuracy"] == pytest.approx(0.91)
    assert row[charts.EPOCHS_TO_BEST_COLUMN] == 2  # 0.88 >= 0.95 * 0.91
    assert row["frozen_params"] == 14_714_688 and row["seconds_per_epoch"] == pytest.approx(0.5)
    assert table.loc[scratch.name, charts.EPOCHS_TO_BEST_COLUMN] == 3  # 0.60 >= 0.95 * 0.63
    assert table.loc[scratch.name, "total_seconds"] == pytest.approx(150.0)
    assert charts.default_selection(runs.list_runs()) == [scratch.name, transfer.name]
    frame = charts.curves_frame({"a": runs.read_metrics(transfer)})
    assert list(frame["seconds"]) == [0.5, 1.0, 1.5, 2.0, 2.5]
    csv_text = charts.comparison_csv(table.reset_index(), frame).decode()
    assert transfer.name in csv_text and "seconds" in csv_text


def test_png_export_draws_every_run_in_its_colour():
    scratch, transfer = write_scratch_and_transfer()
    png = charts.comparison_png({"scratch": runs.read_metrics(scratch),
                                 "transfer": runs.read_metrics(transfer)}, "seconds")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] == 1400
    colours = {colour for _, colour in image.getcolors(maxcolors=1_000_000)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # the two curves' colours


def test_quadrant_places_runs_by_measured_score_and_names_the_strategy_that_won():
    scratch, transfer = write_scratch_and_transfer()
    summaries = [runs.summarize_run(scratch), runs.summarize_run(transfer)]
    assert charts.quadrant_pairs(summaries) == [("imagenet:vgg16", "dogs-vs-cats", None)]
    measured = {("imagenet:vgg16", "dogs-vs-cats", None): {"score": 0.2236, "class_fractions": [0.5, 0.5]}}
    points = charts.quadrant_points(summaries, "logme", lookup=lambda *pair: measured.get(pair))
    assert set(points["kind"]) == {"scratch", "transfer"} and (points["train_images"] == 2000).all()
    # LogME chance for two balanced classes: 1/2 log 2 - 1/2 log 2pi - 1/2 = -1.0724;
    # similarity = 1 - exp(-1.0724 - 0.2236) = 0.7264.
    assert points["similarity"].tolist() == pytest.approx([0.7264] * 2, abs=1e-4)
    assert set(points["winner"]) == {"feature-extraction"}  # 0.91 beats scratch's 0.63
    assert charts.recommended_strategy(2000, 0.85) == "Feature extraction"
    assert charts.recommended_strategy(39_000, 0.85) == "Fine-tune"
    assert charts.recommended_strategy(39_000, 0.2) == "Fine-tune everything / scratch"
    figure = charts.quadrant_figure(points, "logme")
    assert len(figure.data) == 2 and len(figure.layout.shapes) == 4
    assert "LogME" in figure.layout.yaxis.title.text
    hover = figure.data[0].text[0]
    assert "LogME: 0.224" in hover and "strategy that won here: feature-extraction (91.0%)" in hover
    assert not hasattr(charts, "SIMILARITY")  # the hand-set constants are gone
    unmeasured = charts.quadrant_points(summaries, "logme", lookup=lambda *pair: None)
    assert unmeasured.empty


def test_transferability_scatter_reports_the_rank_correlation_per_dataset():
    import pandas as pd

    points = pd.DataFrame([
        {"dataset": "dogs-vs-cats", "strategy": "feature-extraction", "score": score, "accuracy": accuracy,
         "source": source, "label": source}
        for source, score, accuracy in (("imagenet:mobilenetv2", 0.22, 0.98), ("imagenet:mobilenet", 0.09, 0.97),
                                        ("random:mobilenetv2", -0.73, 0.60))])
    figure = charts.transferability_scatter(points, "logme")
    assert figure.data[0].name == "dogs-vs-cats (Spearman ρ 1.00, 3 runs)"


def test_data_efficiency_needs_sweep_runs():
    write_scratch_and_transfer()
    assert charts.data_efficiency_frame(runs.list_runs()).empty
    for size, scratch_acc, transfer_acc in ((100, 0.55, 0.85), (1000, 0.70, 0.93)):
        common = {"model": "vgg16", "dataset": "dogs-vs-cats", "sweep_id": "s1", "train_size": size}
        write_fixture_run({**common, "strategy": "scratch"}, [scratch_acc],
                          results={"num_train_images": size})
        write_fixture_run({**common, "strategy": "fine-tune"}, [transfer_acc],
                          results={"num_train_images": size})
    frame = charts.data_efficiency_frame(runs.list_runs())
    pivot = frame.pivot_table(index="train_images", columns="kind", values="accuracy")
    assert list(pivot.index) == [100, 1000]
    assert (pivot["transfer"] - pivot["scratch"]).tolist() == pytest.approx([0.30, 0.23])
    assert len(charts.data_efficiency_figure(frame).data) == 2


def test_compare_page_without_runs_says_what_to_do():
    app = run_page("pages/compare.py")
    assert not app.exception
    assert "No runs yet" in app.info[0].value


def test_compare_page_defaults_to_latest_scratch_and_transfer_and_exports():
    scratch, transfer = write_scratch_and_transfer()
    app = run_page("pages/compare.py")
    assert not app.exception, app.exception
    selection = app.multiselect(key="compare_selection")
    assert selection.value == [scratch.name, transfer.name]
    table = app.dataframe[0].value
    assert set(table["run_id"]) == {scratch.name, transfer.name}
    assert table.set_index("run_id").loc[transfer.name, "best_val_accuracy"] == pytest.approx(91.0)
    assert set(table["device"]) == {"CPU"}
    labels = [button.proto.label for button in app.get("download_button")]
    assert labels == ["Download comparison (CSV)", "Download curves (PNG)"]
    app.radio(key="compare_x_axis").set_value("seconds").run()
    assert not app.exception
    app.multiselect(key="compare_selection").set_value([transfer.name]).run()
    assert list(app.dataframe[0].value["run_id"]) == [transfer.name]


def test_compare_page_honours_the_runs_page_selection():
    scratch, transfer = write_scratch_and_transfer()
    other = write_fixture_run({"model": "lenet5", "preset": "seed", "dataset": "gtsrb"}, [0.9, 0.95])
    app = run_page("pages/compare.py", compare_run_ids=[other.name, scratch.name])
    assert app.multiselect(key="compare_selection").value == [other.name, scratch.name]
    assert isinstance(app.dataframe[0].value, pd.DataFrame)
    assert len(app.dataframe[0].value) == 2


def test_default_selection_pairs_a_scratch_run_with_its_twin_not_with_the_latest_run():
    scratch, transfer = write_scratch_and_transfer()
    # Newer runs that are no twins of each other: other sizes, another dataset.
    write_fixture_run({"model": "lenet5", "dataset": "gtsrb"}, SCRATCH_VAL,
                      results={"num_train_images": 34_919})
    write_fixture_run({"model": "mobilenetv2", "dataset": "dogs-vs-cats", "strategy": "feature-extraction",
                       "train_size": 430}, TRANSFER_VAL, results={"num_train_images": 430})
    assert charts.default_selection(runs.list_runs()) == [scratch.name, transfer.name]
    # A sweep: twins share the sweep id and the labels per class, never another sweep's runs.
    time.sleep(1.05)  # run ids and creation times have one-second resolution: make the sweep newer
    sweep = {"model": "mobilenetv2", "dataset": "dogs-vs-cats", "sweep_id": "sweep-a"}
    sweep_scratch = write_fixture_run({**sweep, "strategy": "scratch", "labels_per_class": 10},
                                      SCRATCH_VAL, results={"num_train_images": 20})
    write_fixture_run({**sweep, "sweep_id": "sweep-b", "strategy": "feature-extraction",
                       "labels_per_class": 10}, TRANSFER_VAL, results={"num_train_images": 20})
    sweep_transfer = write_fixture_run({**sweep, "strategy": "feature-extraction", "labels_per_class": 10},
                                       TRANSFER_VAL, results={"num_train_images": 20})
    assert charts.default_selection(runs.list_runs()) == [sweep_scratch.name, sweep_transfer.name]


def test_compare_page_places_runs_by_a_measured_score_from_the_cache():
    from core import transferability
    from core.files import write_json_atomic

    write_scratch_and_transfer()
    # A LogME score as core.transferability caches it (imagenet:vgg16 is not installed here).
    write_json_atomic(transferability.score_cache_path("imagenet:vgg16", "dogs-vs-cats", "logme", 400, 0),
                      {"score": 0.2236, "class_fractions": [0.5, 0.5], "normalised": 0.7264})
    app = run_page("pages/compare.py")
    assert not app.exception
    assert not [button for button in app.button if button.key == "compare_quadrant_measure"]
    captions = " ".join(caption.value for caption in app.caption)
    assert "LogME 0.224 (similarity 0.73) → Feature extraction" in captions
    app.radio(key="compare_quadrant_metric").set_value("leep").run()
    measure = [button for button in app.button if button.key == "compare_quadrant_measure"]
    assert measure and measure[0].label.startswith("Measure 1 source/dataset pair(s) (LEEP")


def test_compare_page_shows_synthetic_to_real_figures():
    common = {"model": "lenet5-transfer", "dataset": "gtsrb", "experiment": "few-shot",
              "experiment_id": "few-shot-synthetic-signs-k10-abc", "source": "synthetic-signs",
              "labels_per_class": 10}
    write_fixture_run({**common, "strategy": "scratch", "role": "scratch"}, [0.6, 0.7],
                      results={"test_accuracy": 0.70})
    write_fixture_run({**common, "strategy": "fine-tune", "role": "transfer"}, [0.8, 0.85],
                      results={"test_accuracy": 0.86})
    source = write_fixture_run({"model": "lenet5-transfer", "dataset": "synthetic-signs",
                                "strategy": "scratch", "experiment": "few-shot", "role": "source"},
                               [0.9, 0.97], results={"real_test_accuracy": 0.655, "real_test_images": 200,
                                                     "real_val_accuracy": 0.62, "real_val_images": 4290})
    adapted = write_fixture_run({"model": "lenet5-transfer", "dataset": "synthetic-signs",
                                 "strategy": "self-training", "unlabelled_dataset": "gtsrb",
                                 "experiment": "few-shot", "role": "self-training"},
                                [0.99], results={"real_test_accuracy": 0.805, "real_test_images": 200,
                                                 "real_val_accuracy": 0.818, "real_val_images": 4290})
    app = run_page("pages/compare.py")
    assert not app.exception, app.exception
    tables = [frame.value for frame in app.dataframe]
    few_shot = next(value for value in tables if "gain_points" in value.columns)
    assert few_shot["gain_points"].iloc[0] == pytest.approx(16.0)
    assert few_shot["transfer_accuracy"].iloc[0] == pytest.approx(86.0)
    assert len(few_shot) == 1  # the self-training run is not a few-shot arm
    synthetic = next(value for value in tables if "real_test_accuracy" in value.columns)
    synthetic = synthetic.set_index("run_id")
    assert sorted(synthetic.index) == sorted([source.name, adapted.name])
    assert synthetic.loc[source.name, "real_test_accuracy"] == pytest.approx(65.5)
    assert synthetic.loc[source.name, "real_val_images"] == 4290
    assert synthetic.loc[source.name, "method"] == "drawn signs only"
    assert synthetic.loc[adapted.name, "method"] == "self-training on unlabelled real images"
    assert synthetic.loc[adapted.name, "real_val_accuracy"] == pytest.approx(81.8)


def test_compare_page_says_how_to_get_synthetic_to_real_figures():
    write_scratch_and_transfer()
    app = run_page("pages/compare.py")
    assert not app.exception, app.exception
    assert any("No synthetic → real experiment yet" in info.value for info in app.info)
