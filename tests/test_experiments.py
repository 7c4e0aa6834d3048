"""The few-shot experiment's plumbing and CLI: configs, source reuse, results, sweeps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core import experiments, jobs, runs
from tests.conftest import REPO_ROOT


def _fake_run(config: dict, state: str = runs.COMPLETED, val_accuracy: float | None = 0.9,
              test_accuracy: float | None = None, with_model: bool = True):
    """A run folder written through core.runs (no training): config, status, metrics, results."""
    run_dir = runs.create_run(config)
    runs.write_status(run_dir, state=state)
    if val_accuracy is not None:
        runs.append_metrics(run_dir, {"epoch": 1, "val_accuracy": val_accuracy, "epoch_seconds": 1.0})
    if test_accuracy is not None:
        runs.write_results(run_dir, {"test_accuracy": test_accuracy, "num_train_images": 430})
    if with_model:
        (run_dir / runs.MODEL_FILE).write_bytes(b"placeholder")
    return run_dir


def test_source_and_target_configs_share_data_and_budget(tmp_path):
    half = experiments.source_config("gtsrb-half")
    assert half["dataset"] == "gtsrb" and half["classes"] == list(range(21))
    assert experiments.source_config("synthetic-signs")["dataset"] == "synthetic-signs"
    scratch, transfer = experiments.target_configs("gtsrb-half", 10, tmp_path, epochs=7)
    assert scratch["classes"] == transfer["classes"] == list(range(21, 43))
    shared = ("dataset", "labels_per_class", "epochs", "batch_size", "seed", "source_run", "experiment_id")
    assert all(scratch[key] == transfer[key] for key in shared)
    assert (scratch["strategy"], transfer["strategy"]) == ("scratch", "fine-tune")
    assert experiments.target_configs("synthetic-signs", 10, tmp_path, freeze=True)[1]["strategy"] == \
        "feature-extraction"
    assert experiments.target_classes("synthetic-signs") is None
    with pytest.raises(ValueError, match="source must be one of"):
        experiments.source_config("imagenet")
    with pytest.raises(ValueError, match="labels_per_class"):
        experiments.target_configs("gtsrb-half", 0, tmp_path)


def test_lenet_transfer_networks_never_have_a_spatial_transformer(isolated_roots):
    from core.training import lenet_transfer_family

    # The plus preset's spatial transformer would add conv and dense layers to transfer_layers' count.
    source = lenet_transfer_family.resolve_config(experiments.source_config("synthetic-signs"))
    assert source["preset"] == "plus" and source["spatial_transformer"] is False
    # Nor the plus's label smoothing, unless asked: the few-shot figures were measured without it.
    assert source["label_smoothing"] == 0.0 and source["weight_decay"] == 0.0  # likewise
    assert source["preprocessing"]["color"] == "grayscale"  # likewise (the plus preset: colour)
    asked = lenet_transfer_family.resolve_config({**experiments.source_config("synthetic-signs"),
                                                  "preprocessing": {"color": "rgb"}})
    assert asked["preprocessing"]["color"] == "rgb"
    assert lenet_transfer_family.resolve_config({**experiments.source_config("synthetic-signs"),
                                                 "label_smoothing": 0.1})["label_smoothing"] == 0.1
    with pytest.raises(ValueError, match="no spatial transformer"):
        lenet_transfer_family.resolve_config({**experiments.source_config("synthetic-signs"),
                                              "spatial_transformer": True})
    stn_run = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs", "spatial_transformer": True})
    with pytest.raises(ValueError, match="has a spatial transformer"):
        lenet_transfer_family.resolve_config({"model": "lenet5-transfer", "dataset": "synthetic-signs",
                                              "strategy": "fine-tune", "source_run": str(stn_run)})


def test_find_source_run_reuses_only_good_finished_runs_on_the_source_data():
    assert experiments.find_source_run("gtsrb-half") is None
    source = experiments.source_config("gtsrb-half")
    _fake_run(source, val_accuracy=0.40)  # a smoke run: too weak to be a source
    _fake_run({**source, "classes": list(range(10))}, val_accuracy=0.99)  # other classes
    _fake_run(source, state=runs.FAILED, val_accuracy=0.99)
    _fake_run(source, val_accuracy=0.99, with_model=False)
    good = _fake_run(source, val_accuracy=0.93)
    better = _fake_run(source, val_accuracy=0.95)
    assert experiments.find_source_run("gtsrb-half") == better
    assert experiments.find_source_run("gtsrb-half", min_val_accuracy=0.94) == better
    assert experiments.find_source_run("synthetic-signs") is None
    from core.datasets.synthetic_signs import GENERATOR_VERSION
    from core.training import lenet_family

    # A synthetic-signs source must have seen the images the current generator draws.
    _fake_run({"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
               "generator_version": GENERATOR_VERSION - 1}, val_accuracy=0.99)
    _fake_run({"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs"}, val_accuracy=0.99)
    assert experiments.find_source_run("synthetic-signs") is None
    page_config = lenet_family.resolve_config({"model": "lenet5", "dataset": "synthetic-signs"})
    assert page_config["generator_version"] == GENERATOR_VERSION
    lenet_page_run = _fake_run(page_config, val_accuracy=0.97)
    assert experiments.find_source_run("synthetic-signs") == lenet_page_run
    assert good != better
    assert "generator_version" not in lenet_family.resolve_config({"model": "lenet5"})
    with pytest.raises(ValueError, match="generator version"):
        lenet_family.resolve_config({"model": "lenet5", "dataset": "synthetic-signs",
                                     "generator_version": GENERATOR_VERSION - 1})
    with pytest.raises(ValueError, match="synthetic-signs dataset only"):
        lenet_family.resolve_config({"model": "lenet5", "generator_version": GENERATOR_VERSION})


def test_a_source_run_is_reused_only_for_its_own_seed_when_a_seed_is_asked():
    source = experiments.source_config("gtsrb-half", seed=0)
    seed_zero = _fake_run(source, val_accuracy=0.95)
    assert experiments.find_source_run("gtsrb-half") == seed_zero  # no seed asked: any seed
    assert experiments.find_source_run("gtsrb-half", seed=0) == seed_zero
    assert experiments.find_source_run("gtsrb-half", seed=1) is None
    seed_one = _fake_run(experiments.source_config("gtsrb-half", seed=1), val_accuracy=0.93)
    assert experiments.find_source_run("gtsrb-half", seed=1) == seed_one
    assert experiments.find_source_run("gtsrb-half") == seed_zero  # the better one

    # submit_few_shot passes a seed it is given (the page gives none): seed 2 queues its own
    # source run; the CLI's foreground path (_source_run) always has one.
    queued = experiments.submit_few_shot("gtsrb-half", 10, seed=2)
    assert not queued["source_reused"]
    assert runs.read_config(runs.run_path(queued["source"]))["seed"] == 2
    assert experiments.submit_few_shot("gtsrb-half", 10, seed=1)["source"] == seed_one.name
    logged = []
    assert experiments._source_run("gtsrb-half", None, None, 1, logged.append) == seed_one
    assert logged == [f"Reusing source run {seed_one.name} (seed 1)"]


def test_few_shot_results_pair_the_arms_and_compute_the_gain(tmp_path):
    scratch, transfer = experiments.target_configs("gtsrb-half", 10, tmp_path, experiment_id="e1")
    _fake_run(scratch, test_accuracy=0.55)
    _fake_run(transfer, test_accuracy=0.78)
    rows = experiments.few_shot_results(runs.list_runs())
    assert len(rows) == 1
    row = rows[0]
    assert (row["source"], row["labels_per_class"], row["strategy"]) == ("gtsrb-half", 10, "fine-tune")
    assert row["gain_points"] == pytest.approx(23.0) and row["split"] == "test"


def test_sweep_configs_pair_scratch_with_transfer_for_every_size():
    configs = experiments.sweep_configs({"model": "vgg16", "strategy": "fine-tune", "epochs": 4},
                                        [500, 100, 100])
    assert [(c["train_size"], c["strategy"]) for c in configs] == [
        (100, "scratch"), (100, "fine-tune"), (500, "scratch"), (500, "fine-tune")]
    assert len({c["sweep_id"] for c in configs}) == 1 and all(c["epochs"] == 4 for c in configs)
    assert configs[0]["weights"] == "none"
    for config in configs:
        assert jobs.resolve_config(config)["train_size"] == config["train_size"]
    with pytest.raises(ValueError, match="positive"):
        experiments.sweep_configs({"model": "vgg16"}, [0])


def test_cli_rejects_bad_arguments_with_usage_status():
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "few-shot", "--source", "gtsrb-half",
         "--labels-per-class", "-1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == experiments.EXIT_USAGE
    assert "labels_per_class must be a positive int" in completed.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "few-shot", "--source", "imagenet",
         "--labels-per-class", "10"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "invalid choice" in completed.stderr


def _ppm(class_id: int, frame: int) -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng([class_id, frame])
    image = np.full((32, 32, 3), (class_id * 5) % 255, dtype=np.uint8)
    image[4 + class_id % 20: 12 + class_id % 20, 4:28] = 255 - image[0, 0]
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".ppm", image)
    assert ok
    return encoded.tobytes()


@pytest.fixture
def tiny_gtsrb(tmp_path, monkeypatch):
    """A GTSRB look-alike in the official training layout (43 classes, 2 tracks of 3 frames)."""
    import zipfile

    archive = tmp_path / "GTSRB_tiny.zip"
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    with zipfile.ZipFile(archive, "w") as handle:
        for class_id in range(43):
            folder = f"GTSRB/Final_Training/Images/{class_id:05d}"
            rows = []
            for track in range(2):
                for frame in range(3):
                    name = f"{track:05d}_{frame:05d}.ppm"
                    handle.writestr(f"{folder}/{name}", _ppm(class_id, track * 3 + frame))
                    rows.append(f"{name};32;32;0;0;31;31;{class_id}\n")
            handle.writestr(f"{folder}/GT-{class_id:05d}.csv", header + "".join(rows))
    from core import datasets

    datasets.get("gtsrb", [archive])
    return archive


@pytest.mark.slow
def test_cli_reuses_the_source_and_prints_scratch_then_transfer_run_dirs(tiny_gtsrb, isolated_roots):
    keras = pytest.importorskip("keras")
    from core.models import lenet
    from core.training import lenet_transfer_family

    source = lenet_transfer_family.resolve_config(experiments.source_config("gtsrb-half", epochs=1))
    source_dir = _fake_run(source, val_accuracy=0.95, with_model=False)
    lenet.build_lenet(21, (32, 32, 1), conv_filters=(4, 8), dense_units=(16,)).save(
        source_dir / runs.MODEL_FILE)
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "few-shot", "--source", "gtsrb-half",
         "--labels-per-class", "2", "--epochs", "1", "--runs-dir", str(isolated_roots["runs"])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    scratch_dir, transfer_dir = completed.stdout.strip().splitlines()[-2:]
    assert f"Reusing source run {source_dir.name}" in completed.stderr
    scratch, transfer = runs.read_config(scratch_dir), runs.read_config(transfer_dir)
    assert (scratch["strategy"], transfer["strategy"]) == ("scratch", "fine-tune")
    assert scratch["source_run"] == transfer["source_run"] == str(source_dir)
    for run_dir in (scratch_dir, transfer_dir):
        assert runs.read_status(run_dir)["state"] == runs.COMPLETED
        assert runs.read_results(run_dir)["num_train_images"] == 22 * 2
        assert runs.read_class_names(run_dir)[0] == runs.read_class_names(scratch_dir)[0]
    assert runs.read_results(transfer_dir)["copied_layers"][:2] == ["block1_conv", "block2_conv"]
    assert runs.read_results(scratch_dir)["copied_layers"] == []
    from core.models import register_custom_layers

    register_custom_layers()
    model = keras.saving.load_model(f"{transfer_dir}/{runs.MODEL_FILE}", safe_mode=True, compile=False)
    assert model.get_layer("predictions").units == 22


def test_sweep_cli_queues_scratch_and_transfer_twins_under_one_budget(isolated_roots, tmp_path):
    keras = pytest.importorskip("keras")
    weights = tmp_path / "mobilenet_small.weights.h5"
    keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                 weights=None).save_weights(weights)
    # The test holds the only slot, so the four jobs stay queued: what is checked is what the CLI
    # queued, and a job that started would draw 25,800 synthetic images at 64 px for nothing.
    slot = jobs.try_acquire_slot(isolated_roots["runs"], max_jobs=1)
    assert slot is not None  # a fresh runs root: nobody else holds it
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "core.experiments", "sweep", "--model", "mobilenet", "--dataset",
             "synthetic-signs", "--per-class", "10,3", "--weights", str(weights), "--epochs", "2",
             "--image-size", "64", "--runs-dir", str(isolated_roots["runs"]), "--no-wait"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, TLLAB_MAX_CONCURRENT_JOBS="1"))
        assert completed.returncode == 0, completed.stderr[-2000:]
        folders = completed.stdout.strip().splitlines()
        configs = [runs.read_config(folder) for folder in folders]
        assert [(config["labels_per_class"], config["strategy"]) for config in configs] == [
            (3, "scratch"), (3, "feature-extraction"), (10, "scratch"), (10, "feature-extraction")]
        assert {(config["epochs"], config["image_size"], config["sweep_id"]) for config in configs} == {
            (2, 64, configs[0]["sweep_id"])}
        assert {config["weights"] for config in configs} == {"none", str(weights.resolve())}
        assert {runs.read_status(folder)["state"] for folder in folders} == {runs.QUEUED}
    finally:
        for summary in runs.list_runs(isolated_roots["runs"]):
            jobs.cancel(summary.run_id, isolated_roots["runs"])
        slot.release()


def test_synthetic_only_needs_the_synthetic_source():
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "few-shot", "--source", "gtsrb-half",
         "--labels-per-class", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "synthetic-signs" in completed.stderr


def test_synthetic_only_scores_the_source_on_real_gtsrb(tiny_gtsrb, isolated_roots, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from core.models import lenet
    from core.training import lenet_transfer_family

    # The source lives in another runs root than $TLLAB_RUNS_DIR (as with --runs-dir).
    other_root = tmp_path / "other-runs"
    monkeypatch.setenv("TLLAB_RUNS_DIR", str(other_root))
    source = lenet_transfer_family.resolve_config(experiments.source_config("synthetic-signs", epochs=1))
    source_dir = _fake_run(source, val_accuracy=0.95, with_model=False)
    lenet.build_lenet(43, (32, 32, 1), conv_filters=(4, 8), dense_units=(16,)).save(
        source_dir / runs.MODEL_FILE)
    monkeypatch.setenv("TLLAB_RUNS_DIR", str(isolated_roots["runs"]))
    found, scores = experiments.run_synthetic_only(other_root, log=lambda text: None)
    assert found == source_dir
    assert 0.0 <= scores["real_val_accuracy"] <= 1.0 and scores["real_val_images"] > 0
    assert runs.read_results(source_dir)["real_val_accuracy"] == scores["real_val_accuracy"]
    # The family resolves source_run against the runs root it is given, not $TLLAB_RUNS_DIR.
    scratch, _ = experiments.target_configs("synthetic-signs", 10, source_dir)
    assert lenet_transfer_family.resolve_config(scratch, other_root)["source_run"] == str(source_dir)
    with pytest.raises(ValueError):
        lenet_transfer_family.resolve_config(scratch)  # outside the default runs root
    assert jobs.resolve_config(scratch, other_root)["source_run"] == str(source_dir)
    rows = experiments.synthetic_only_results(runs.list_runs(other_root))
    assert [row["run_id"] for row in rows] == [source_dir.name]
    assert rows[0]["real_val_accuracy"] == scores["real_val_accuracy"]
    assert rows[0]["real_test_accuracy"] is None  # the tiny install has no test images


def test_synthetic_transfer_copies_every_hidden_layer_by_default(tmp_path):
    from core.training import lenet_transfer_family

    source = lenet_transfer_family.resolve_config(experiments.source_config("synthetic-signs", epochs=1))
    source_dir = _fake_run(source)
    hidden = len(source["conv_filters"]) + len(source["dense_units"])
    assert experiments.default_transfer_layers("synthetic-signs", source_dir) == hidden
    assert experiments.target_configs("synthetic-signs", 10, source_dir)[1]["transfer_layers"] == hidden
    assert experiments.target_configs("synthetic-signs", 10, source_dir, transfer_layers=2)[1][
        "transfer_layers"] == 2
    assert experiments.default_transfer_layers("gtsrb-half", source_dir) is None
    assert experiments.default_transfer_layers("synthetic-signs", tmp_path / "missing") is None
