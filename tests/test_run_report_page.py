"""AppTest: the run report (ui/report.py) on the Runs page: ?run=RUN_ID, test and validation splits."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from core import runs
from core.datasets import signs
from tests.conftest import REPO_ROOT
from tests.test_jobs import synthetic_data_root  # noqa: F401 - shared session fixture
from tests.test_training_pages import write_run

RUNS_PAGE = REPO_ROOT / "pages" / "runs.py"


def open_runs_page(query: dict | None = None) -> AppTest:
    app = AppTest.from_file(str(RUNS_PAGE), default_timeout=60)
    app.query_params.update(query or {})
    return app.run()


def _captions(app) -> list[str]:
    return [caption for image in app.get("image") for caption in
            [item.caption for item in image.proto.imgs]]


def _config_diff(app):
    """The report's config-diff table (display-only dataframes carry no key in AppTest)."""
    tables = [table.value for table in app.dataframe if "setting" in table.value.columns]
    assert len(tables) == 1
    return tables[0]


def test_query_parameter_opens_that_runs_report_with_named_mistakes(isolated_roots, synthetic_data_root,
                                                                   monkeypatch):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    wanted = write_run(runs.COMPLETED, epochs_done=5, results=True, model=True,
                       config_extra={"epochs": 1, "labels_per_class": 5})
    runs.write_class_names(wanted, list(signs.CLASS_NAMES))
    results = runs.read_results(wanted)
    results["class_names"] = list(signs.CLASS_NAMES)
    runs.write_results(wanted, results)
    time.sleep(1.05)  # creation times have one-second resolution: make the other run surely newer
    newest = write_run(runs.FAILED, epochs_done=1)
    assert runs.list_runs()[0].run_id == newest.name  # without ?run= the page opens this one
    app = open_runs_page({"run": wanted.name})
    assert not app.exception
    assert app.selectbox(key="runs_selected").value == wanted.name
    assert app.query_params["run"] == wanted.name
    assert any(f"run `{wanted.name}`" in block.value for block in app.markdown)
    assert any(header.value == "Misclassified test images" for header in app.subheader)
    captions = _captions(app)
    true_name, predicted_name = signs.CLASS_NAMES[1], signs.CLASS_NAMES[2]
    assert captions == [f"{true_name} → {predicted_name} (81%)", f"{true_name} → {predicted_name} (64%)"]
    diff = _config_diff(app)
    assert dict(zip(diff["setting"], diff["this run"]))["labels_per_class"] == "5"
    assert {button.label.split(" (")[0] for button in app.get("download_button")} >= {
        runs.MODEL_FILE, runs.CONFIG_FILE, runs.RESULTS_FILE, runs.METRICS_FILE}


def test_without_a_test_split_the_report_says_it_uses_validation(isolated_roots, synthetic_data_root,
                                                                 monkeypatch):
    from core import datasets

    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = write_run(runs.COMPLETED, epochs_done=2)
    val = datasets.load("synthetic-signs", "val", 32, seed=0)
    names = ["stop sign", "give way"] + [f"class {index}" for index in range(2, 43)]
    matrix = [[0] * 43 for _ in range(43)]
    matrix[0][1] = 1
    runs.write_results(run_dir, {
        "test_accuracy": None, "num_test_images": None, "confusion_matrix": None,
        "per_class_accuracy": None, "misclassified": None, "class_names": names,
        "best_val_accuracy": 0.5, "num_val_images": len(val.labels), "trainable_params": 10,
        "val_confusion_matrix": matrix, "val_per_class_accuracy": [0.0] + [None] * 42,
        "val_misclassified": [{"index": 0, "file_name": val.file_names[0], "true": 0, "predicted": 1,
                               "confidence": 0.55}],
    })
    app = open_runs_page({"run": run_dir.name})
    assert not app.exception
    assert any("no test split" in info.value and "validation" in info.value for info in app.info)
    assert any(header.value == "Misclassified validation images" for header in app.subheader)
    assert _captions(app) == ["stop sign → give way (55%)"]
    charts = [chart.proto.spec for chart in app.get("plotly_chart")]
    assert any("Confusion matrix (validation)" in spec for spec in charts)
    assert {metric.label: metric.value for metric in app.metric}["Validation images"] == str(len(val.labels))


def test_a_run_that_ended_early_for_its_time_budget_says_so(isolated_roots):
    run_dir = write_run(runs.COMPLETED, epochs_done=3, results=True)
    results = runs.read_results(run_dir)
    results["time_budget"] = {"budget_seconds": 850.0, "planned_epochs": 20, "last_epoch": 18,
                              "ended_early": True, "schedule_fitted": True}
    runs.write_results(run_dir, results)
    app = open_runs_page({"run": run_dir.name})
    assert not app.exception
    assert "Time budget 850 s: training ended after epoch 18 of 20 to finish in time; its cosine " \
           "learning-rate schedule was shortened to end there." in [caption.value for caption in app.caption]
    results["time_budget"] = {**results["time_budget"], "last_epoch": 20, "ended_early": False,
                              "schedule_fitted": False}
    runs.write_results(run_dir, results)
    app = open_runs_page({"run": run_dir.name})
    assert any(caption.value == "Time budget 850 s: all 20 epochs fitted." for caption in app.caption)


def test_unknown_or_outside_run_in_the_url_shows_the_newest_run(isolated_roots):
    (isolated_roots["runs"].parent / "outside").mkdir()
    newest = write_run(runs.COMPLETED, results=True)
    app = open_runs_page({"run": "../outside"})
    assert not app.exception
    assert any("No run named '../outside'" in warning.value for warning in app.warning)
    assert app.selectbox(key="runs_selected").value == newest.name


def test_running_run_report_polls_live_and_train_page_uses_the_same_report(isolated_roots):
    running = write_run(runs.RUNNING)
    app = open_runs_page({"run": running.name})
    assert not app.exception
    assert any("Epoch 4 of 5" in str(bar.proto) for bar in app.get("progress"))
    diff = _config_diff(app)
    assert dict(zip(diff["setting"], zip(diff["this run"], diff["default"])))["epochs"] == ("5", "20")
    finished = write_run(runs.COMPLETED, results=True)
    train = AppTest.from_file(str(REPO_ROOT / "pages" / "train_lenet.py"), default_timeout=60)
    train.session_state["train_lenet_run_id"] = finished.name
    train.run()
    assert not train.exception
    assert set(_config_diff(train)["setting"]) == {"dataset", "epochs"}
    assert [button.key for button in train.get("download_button")][0] == (
        "train_lenet_results_download_config.json")
