"""Browser tests of the Classify page against a real `streamlit run` server.

* Bad files (non-image bytes with a .png name, a truncated PNG, an empty JPEG) each get their
  message while a good file next to them is classified; a file above server.maxUploadSize is
  refused by the uploader with Streamlit's size message (a sparse file, nothing is read).
* "Done when" of issue #6: a GTSRB test image and a cat photo are uploaded to runs trained here,
  by the real trainer (``python -m core.train``) on the real data in ../shared/datasets, and the
  page shows the top-1 class with the probability the ``Predictor`` computes.

The trained runs come from one session fixture (``trained_runs``): it imports GTSRB and Dogs vs
Cats into a private data root and trains, in parallel, a LeNet-5 on GTSRB (track split, 3
epochs, no augmentation: ~86% validation, ~85% on the 200-image test sample) and a MobileNetV2
feature-extraction run on Dogs vs Cats with the real ImageNet weights of
``../shared/weights/imagenet`` (96 px, 200 training images, 15 epochs: 94% validation, ~15 s).
Only the finished run folders are copied into the server's runs root; the server's data root
stays empty.

The cat check uses one fixed photo with a known label, ``FIXED_CAT`` (a validation image of that
run, never trained on), whatever the run predicts: the page must show "cat" as top-1 with the
Predictor's probability. Measured: the run gives it 1.00 "cat"; a head that learned nothing
gives 50 % and fails.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT, save_screenshot, shared_file, wait_for_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # trains real runs first

GTSRB_CLASS_ID = 14  # "Stop": the first sample200 test image of this class is uploaded
FIXED_CAT = "cat.117.jpg"  # in train-2000.zip; in the validation split of CATS_TRAIN
MIN_CATS_VAL_ACCURACY = 0.85
IMAGENET_WEIGHTS = (REPO_ROOT.parent / "shared" / "weights" / "imagenet"
                    / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")
FIXTURE_TIMEOUT_SECONDS = 600
GTSRB_TRAIN = ["--model", "lenet5", "--preset", "seed", "--dataset", "gtsrb", "--epochs", "3",
               "--set", "augmentation.rotation_degrees=0", "--set", "random_blur=0"]
CATS_TRAIN = ["--model", "mobilenetv2", "--strategy", "feature-extraction", "--weights",
              str(IMAGENET_WEIGHTS), "--dataset", "dogs-vs-cats", "--epochs", "15",
              "--set", "image_size=96", "--set", "train_size=200", "--set", "valid_size=100",
              "--set", "optimizer=adam", "--set", "learning_rate=0.001", "--set", "batch_size=32"]


def _run_chain(commands: list[list[str]], environment: dict, results: dict, name: str) -> None:
    """Runs commands one after the other; stores the last stdout line (or the error)."""
    try:
        for command in commands:
            completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True,
                                       text=True, timeout=FIXTURE_TIMEOUT_SECONDS)
            if completed.returncode != 0:
                results[name] = RuntimeError(
                    f"{' '.join(command[2:5])} failed ({completed.returncode}):\n"
                    f"{completed.stderr[-3000:]}")
                return
        results[name] = completed.stdout.strip().splitlines()[-1]
    except Exception as error:  # noqa: BLE001 - reported by the fixture below
        results[name] = error


def _first_gtsrb_test_image(class_id: int) -> tuple[str, bytes]:
    labels = zipfile.ZipFile(shared_file("gtsrb", "GTSRB_Final_Test_GT.sample200.zip"))
    csv_name = next(name for name in labels.namelist() if name.endswith(".csv"))
    rows = csv.DictReader(io.StringIO(labels.read(csv_name).decode("utf-8")), delimiter=";")
    file_name = next(row["Filename"] for row in rows if int(row["ClassId"]) == class_id)
    images = zipfile.ZipFile(shared_file("gtsrb", "GTSRB_Final_Test_Images.sample200.zip"))
    member = next(name for name in images.namelist() if name.endswith("/" + file_name))
    return file_name, images.read(member)


def _fixed_cat() -> bytes:
    archive = zipfile.ZipFile(shared_file("dogs-vs-cats", "train-2000.zip"))
    return archive.read(f"train/{FIXED_CAT}")


@pytest.fixture(scope="session")
def trained_runs(browser_dirs, tmp_path_factory):
    """Trains the GTSRB and Dogs-vs-Cats runs once per session (see the module docstring)."""
    if not IMAGENET_WEIGHTS.is_file():
        pytest.skip(f"{IMAGENET_WEIGHTS} is absent: ../shared only exists on the developers' machines")
    sources = {
        "gtsrb": [shared_file("gtsrb", name) for name in (
            "GTSRB_Final_Training_Images.zip", "GTSRB_Final_Test_Images.sample200.zip",
            "GTSRB_Final_Test_GT.sample200.zip")],
        "dogs-vs-cats": [shared_file("dogs-vs-cats", "train-2000.zip")],
    }
    root = tmp_path_factory.mktemp("classify_training")
    data_dir, runs_dir = root / "data", root / "runs"
    data_dir.mkdir()
    runs_dir.mkdir()
    environment = dict(os.environ, TLLAB_DATA_DIR=str(data_dir), TLLAB_RUNS_DIR=str(runs_dir),
                       TLLAB_MAX_CONCURRENT_JOBS="2", TF_CPP_MIN_LOG_LEVEL="2")
    python = sys.executable
    chains = {}
    for name, train_arguments in (("gtsrb", GTSRB_TRAIN), ("dogs-vs-cats", CATS_TRAIN)):
        get = [python, "-m", "core.datasets", "get", name, "--quiet"]
        for path in sources[name]:
            get += ["--from", str(path)]
        chains[name] = [get, [python, "-m", "core.train", *train_arguments,
                              "--runs-dir", str(runs_dir)]]
    started = time.monotonic()
    results: dict = {}
    threads = [threading.Thread(target=_run_chain, args=(commands, environment, results, name))
               for name, commands in chains.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, result in results.items():
        if isinstance(result, Exception):
            pytest.fail(f"training the {name} fixture run failed: {result}")
    copied = {}
    for name, run_dir in results.items():
        destination = browser_dirs["runs"] / Path(run_dir).name
        shutil.copytree(run_dir, destination)
        copied[name] = destination
    print(f"\n[classify] trained fixture runs in {time.monotonic() - started:.0f} s: {copied}")
    copied["data_dir"] = data_dir
    return copied


def _expected_top1(run_dir: Path, data: bytes) -> tuple[str, str]:
    from core.inference import Predictor, read_image
    from core.charts.classify import format_probability

    previous = os.environ.get("TLLAB_RUNS_DIR")
    os.environ["TLLAB_RUNS_DIR"] = str(Path(run_dir).parent)  # the server's runs root holds the run
    try:
        top = Predictor.from_run(run_dir).top_k([read_image(data)], k=1)[0][0]
    finally:
        if previous is None:
            os.environ.pop("TLLAB_RUNS_DIR", None)
        else:
            os.environ["TLLAB_RUNS_DIR"] = previous
    return top["class_name"], format_probability(top["probability"])


def _upload(page, paths: list[Path]) -> None:
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(
        [str(path) for path in paths])


def _tiny_run(runs_root: Path) -> Path:
    """A small real run (3 classes) for the bad-input test, independent of ../shared."""
    import json

    import keras

    from core import runs

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    run_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs", "preprocessing":
                               {"image_size": 16, "color": "rgb"}}, runs_root)
    keras.Model(inputs, outputs).save(run_dir / runs.MODEL_FILE)
    (run_dir / "class_names.json").write_text(json.dumps(["stop", "yield", "priority road"]))
    runs.write_status(run_dir, state=runs.COMPLETED)
    return run_dir


def test_bad_files_get_messages_and_the_page_keeps_working(page, browser_dirs, tmp_path):
    run_dir = _tiny_run(browser_dirs["runs"])
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 30, 3), (200, 30, 30), np.uint8)).save(good)
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"these are lecture notes, not a picture\n" * 20)
    truncated = tmp_path / "broken.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    truncated.write_bytes(buffer.getvalue()[:400])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")

    page.goto(page.app_url(f"classify?run={run_dir.name}"))
    wait_for_text(page, "Images to classify")
    _upload(page, [not_image, good, truncated, empty])
    wait_for_text(page, "not an image we can read")
    wait_for_text(page, "truncated or corrupt")
    wait_for_text(page, "The file is empty")
    name, probability = _expected_top1(run_dir, good.read_bytes())
    wait_for_text(page, f"Top-1: {name} — {probability}")
    alerts = page.locator("[data-testid='stAlert']")
    alert_text = " ".join(alerts.all_inner_texts())
    for file_name in ("notes.png", "broken.png", "empty.jpg"):
        assert file_name in alert_text
    assert page.locator("[data-testid='stException']").count() == 0
    save_screenshot(page, "classify_bad_files")


def test_gtsrb_test_image_shows_the_right_top1_with_its_probability(page, trained_runs,
                                                                    tmp_path):
    run_dir = trained_runs["gtsrb"]
    file_name, data = _first_gtsrb_test_image(GTSRB_CLASS_ID)
    upload = tmp_path / file_name
    upload.write_bytes(data)
    name, probability = _expected_top1(run_dir, data)
    assert name == "Stop", f"the fixture LeNet calls the Stop test image {name} ({probability})"

    page.goto(page.app_url(f"classify?run={run_dir.name}"))
    wait_for_text(page, "Images to classify")
    _upload(page, [upload])
    wait_for_text(page, f"Top-1: Stop — {probability}", timeout_ms=90_000)
    wait_for_text(page, "what the model sees: 32×32")
    wait_for_text(page, "Grad-CAM for “Stop”")
    assert page.locator("[data-testid='stException']").count() == 0
    page.wait_for_timeout(1500)  # let the images arrive before the screenshot
    save_screenshot(page, "classify_gtsrb_stop")


def test_cat_photo_shows_cat_as_top1_with_its_probability(page, trained_runs, tmp_path):
    """A fixed cat photo (a validation image of the run) must come out as "cat"."""
    from core import runs

    run_dir = trained_runs["dogs-vs-cats"]
    best_val_accuracy = runs.read_metrics(run_dir)["val_accuracy"].max()
    assert best_val_accuracy >= MIN_CATS_VAL_ACCURACY, (
        f"the cats run is at {best_val_accuracy:.3f} validation accuracy, expected >= "
        f"{MIN_CATS_VAL_ACCURACY}")
    data = _fixed_cat()
    name, probability = _expected_top1(run_dir, data)
    assert name == "cat", f"{FIXED_CAT} is a cat, but the run calls it {name} ({probability})"
    upload = tmp_path / FIXED_CAT
    upload.write_bytes(data)

    page.goto(page.app_url(f"classify?run={run_dir.name}"))
    wait_for_text(page, "Images to classify")
    _upload(page, [upload])
    wait_for_text(page, f"Top-1: cat — {probability}", timeout_ms=90_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.wait_for_timeout(1500)  # let the images arrive before the screenshot
    save_screenshot(page, "classify_cat_photo")


def test_file_above_max_upload_size_is_refused_with_a_message(page, browser_dirs, tmp_path):
    import tomllib

    run_dir = _tiny_run(browser_dirs["runs"])
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    limit_megabytes = config["server"]["maxUploadSize"]
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as stream:  # sparse: no disk or memory spent on the zeros
        stream.truncate((limit_megabytes + 1) * 1024 * 1024)
    page.goto(page.app_url(f"classify?run={run_dir.name}"))
    wait_for_text(page, f"up to {limit_megabytes} MB per file")
    _upload(page, [huge])
    wait_for_text(page, f"File must be {limit_megabytes:.1f}MB or smaller")
    assert page.locator("[data-testid='stException']").count() == 0
