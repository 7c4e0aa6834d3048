"""Tests that fail when training is broken: small, seeded budgets with stated accuracy targets.

Measured on the development machine (2 CPU cores, TensorFlow CPU, seed 0):

* LeNet ``seed`` preset on synthetic signs, all training images (8,600 when measured, generator
  v1; 25,800 since v2, and v3 and v4 still pass), 4 epochs of batch 64
  (augmentation and random blur as in the preset): validation accuracy per epoch 0.235, 0.426,
  0.560, 0.621 (chance: 1/43 = 2.3 %), about 20 s. Target: at least ``SEED_TARGET_VAL_ACCURACY``.
* VGG16 feature extraction (random-weights base, 32 px, so no download) on a drawn Dogs vs Cats
  look-alike whose classes differ in colour, 100 training images, Adam 1e-3, 8 epochs of batch
  16: validation accuracy 0.5 for 4 epochs, then 1.0 from epoch 5 on (100 images), about 25 s.
  Target: chance (50 %) plus ``HEAD_MARGIN``. A head that does not train stays at 50 %.
"""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from core import jobs, runs, worker  # noqa: E402
from tests.test_export import dogs_data_root  # noqa: E402,F401 - shared module fixture
from tests.test_jobs import synthetic_data_root  # noqa: E402,F401 - shared session fixture

SEED_EPOCHS = 4
SEED_BATCH_SIZE = 64
SEED_TARGET_VAL_ACCURACY = 0.50
SYNTHETIC_CHANCE = 1 / 43
HEAD_IMAGE_SIZE = 32
HEAD_CHANCE = 0.5
HEAD_MARGIN = 0.3
HEAD_EPOCHS = 8
HEAD_LEARNING_RATE = 1e-3


def _train(config: dict):
    run_dir = jobs.create_job(config)
    state = worker.run(run_dir)
    assert state == runs.COMPLETED, runs.read_status(run_dir).get("error")
    return run_dir


def test_seed_preset_learns_synthetic_signs_within_four_epochs(synthetic_data_root, monkeypatch):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = _train({"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs",
                      "epochs": SEED_EPOCHS, "batch_size": SEED_BATCH_SIZE, "seed": 0,
                      "max_test_images": 215})
    metrics = runs.read_metrics(run_dir)
    accuracies = metrics["val_accuracy"].tolist()
    assert len(accuracies) == SEED_EPOCHS
    assert accuracies[-1] >= SEED_TARGET_VAL_ACCURACY, accuracies
    assert accuracies[-1] > accuracies[0]  # it keeps learning, epoch after epoch
    results = runs.read_results(run_dir)
    assert results["test_accuracy"] >= SEED_TARGET_VAL_ACCURACY > 10 * SYNTHETIC_CHANCE
    # The preset fits each batch in two parts side by side, and saves the one-pass network.
    from core.models import register_custom_layers

    register_custom_layers()
    assert runs.read_config(run_dir)["batch_branches"] == 2
    saved = keras.saving.load_model(run_dir / runs.MODEL_FILE, compile=False, safe_mode=True)
    assert saved.name == "lenet5_seed"
    assert not [layer.name for layer in saved.layers if layer.name.startswith("batch_part")]


def test_transfer_head_beats_chance_on_a_fixed_seed(dogs_data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(dogs_data_root))
    weights = tmp_path / "vgg16_random.weights.h5"
    keras.utils.set_random_seed(0)
    keras.applications.VGG16(include_top=False, weights=None,
                             input_shape=(HEAD_IMAGE_SIZE, HEAD_IMAGE_SIZE, 3)).save_weights(weights)
    run_dir = _train({"model": "vgg16", "strategy": "feature-extraction", "weights": str(weights),
                      "dataset": "dogs-vs-cats", "image_size": HEAD_IMAGE_SIZE, "train_size": 100,
                      "valid_size": 100, "epochs": HEAD_EPOCHS, "batch_size": 16, "seed": 0,
                      "optimizer": "adam", "learning_rate": HEAD_LEARNING_RATE})
    results = runs.read_results(run_dir)
    assert results["num_val_images"] == 100
    assert results["best_val_accuracy"] >= HEAD_CHANCE + HEAD_MARGIN
