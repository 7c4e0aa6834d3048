"""The Runs page's export panel (``ui/export.py``) under AppTest, on a real tiny LeNet run."""

from __future__ import annotations

from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from core import runs  # noqa: E402
from tests.conftest import run_page  # noqa: E402
from tests.test_jobs import synthetic_data_root  # noqa: E402,F401 - shared session fixture

RUNS_PAGE = "pages/runs.py"
NUM_CLASSES = 43
SPEC = {"image_size": 32, "color": "grayscale", "equalization": "clahe", "blur": 0}


def _lenet_run(state: str) -> Path:
    from core.datasets.preprocess import build_augmentation
    from core.models import lenet

    run_dir = runs.create_run({"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
                               "epochs": 1, "seed": 0, "preprocessing": SPEC})
    keras.utils.set_random_seed(0)
    model = lenet.build_lenet(NUM_CLASSES, (32, 32, 1), random_blur=0.1,
                              augmentation=build_augmentation({"rotation_degrees": 10}))
    model.save(run_dir / runs.MODEL_FILE)
    runs.write_class_names(run_dir, [f"class {index}" for index in range(NUM_CLASSES)])
    runs.write_status(run_dir, state=state, ended_at=runs.utc_now())
    return run_dir


def test_export_panel_prepares_measures_and_offers_the_download(isolated_roots, synthetic_data_root,
                                                                monkeypatch):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = _lenet_run(runs.COMPLETED)
    app = run_page(RUNS_PAGE, timeout=240)
    app.selectbox(key="runs_selected").set_value(run_dir.name).run()
    app.selectbox(key="runs_export_format").set_value("TFLite float32 (.tflite)").run()
    app.button(key="runs_export_prepare").click().run()
    assert not app.exception
    summary = next(item.value for item in app.markdown if "TFLite float32" in item.value)
    assert "agreement 100.0% on 100 validation images" in summary
    assert " ms per image" in summary and "· 0.3 MB ·" in summary  # 64,511 float32 weights
    assert (run_dir / "export" / f"{run_dir.name}.tflite").is_file()
    keys = {button.key for button in app.get("download_button")}
    assert "runs_export_download_0" in keys


def test_export_panel_is_absent_while_a_run_has_not_completed(isolated_roots):
    run_dir = _lenet_run(runs.FAILED)
    app = run_page(RUNS_PAGE)
    app.selectbox(key="runs_selected").set_value(run_dir.name).run()
    assert not app.exception
    assert "runs_export_prepare" not in {button.key for button in app.button}
