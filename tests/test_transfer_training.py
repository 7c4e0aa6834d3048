"""End-to-end transfer runs through the real job path (create_job + worker), tiny and offline.

Data: a small Dogs vs Cats look-alike zip in Kaggle's layout (``train/cat.N.jpg``), drawn here
and installed through ``core.datasets.get`` once per module, so these tests need no ../shared.
Weights: a weights=None VGG16 base saved to a local file, which the runs must load verbatim.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core import jobs, runs, worker  # noqa: E402
from core.inference import Predictor  # noqa: E402
from tests.conftest import install_dogs_vs_cats  # noqa: E402

IMAGE_SIZE = 32
IMAGES_PER_CLASS = 30
TINY = {"dataset": "dogs-vs-cats", "image_size": IMAGE_SIZE, "train_size": 24, "valid_size": 16,
        "batch_size": 8}


@pytest.fixture(scope="module")
def tiny_data_root(tmp_path_factory):
    """A data root with a 60-image Dogs vs Cats look-alike installed (reddish cats, bluish dogs)."""
    return install_dogs_vs_cats(tmp_path_factory.mktemp("tiny-data"), IMAGES_PER_CLASS)


@pytest.fixture
def data_root(tiny_data_root, monkeypatch):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(tiny_data_root))
    return tiny_data_root


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """(path, {layer: weights}) of a weights=None VGG16 base saved as .weights.h5."""
    path = tmp_path_factory.mktemp("vgg-weights") / "vgg16_random.weights.h5"
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    base.save_weights(path)
    return path, {layer.name: layer.get_weights() for layer in base.layers if layer.weights}


def _train(config: dict):
    run_dir = jobs.create_job(config)
    state = worker.run(run_dir)
    assert state == runs.COMPLETED, runs.read_status(run_dir).get("error")
    return run_dir


def _load(run_dir):
    from core.models import register_custom_layers

    register_custom_layers()
    return keras.saving.load_model(run_dir / runs.MODEL_FILE, safe_mode=True, compile=False)


def _assert_layers_equal(model, reference, names):
    for name in names:
        for loaded, saved in zip(model.get_layer(name).get_weights(), reference[name]):
            np.testing.assert_array_equal(loaded, saved, err_msg=name)


def test_feature_extraction_with_a_local_file_keeps_the_file_weights_frozen(data_root, weights_file):
    path, reference = weights_file
    run_dir = _train({"model": "vgg16", "strategy": "feature-extraction", "weights": str(path),
                      "epochs": 2, "bottleneck_copies": 2, **TINY})
    config = runs.read_config(run_dir)
    from core.weights import file_sha256
    from core.models import vgg16

    assert config["weights_sha256"] == file_sha256(path)
    model = _load(run_dir)
    _assert_layers_equal(model, reference, vgg16.CONV_LAYERS)  # the file's, untouched
    metrics = runs.read_metrics(run_dir)
    assert list(metrics["epoch"]) == [1, 2] and metrics["val_accuracy"].notna().all()
    results = runs.read_results(run_dir)
    assert results["weights_sha256"] == config["weights_sha256"]
    assert results["bottleneck_copies"] == 2
    assert results["non_trainable_params"] == 14_714_688  # the whole VGG16 base is frozen
    assert results["trainable_params"] == 512 * 256 + 256 + 256 * 2 + 2
    assert (data_root / "cache" / "bottleneck" / results["bottleneck_cache"] / "train.npy").exists()
    predictor = Predictor.from_run(run_dir)
    assert predictor.class_names == ["cat", "dog"] and predictor.image_size == IMAGE_SIZE
    probabilities = predictor.predict([np.full((50, 70, 3), 128, dtype=np.uint8)])
    assert probabilities.shape == (1, 2) and probabilities.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_fine_tuning_changes_only_block5_and_keeps_counting_epochs(data_root, weights_file):
    path, reference = weights_file
    run_dir = _train({"model": "vgg16", "strategy": "fine-tune", "weights": str(path), "epochs": 3,
                      "fine_tune_epochs": 2, "fine_tune_learning_rate": 0.05, "bottleneck": False,
                      "augmentation": {}, **TINY})
    metrics = runs.read_metrics(run_dir)
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["learning_rate"].iloc[-1] == pytest.approx(0.05)
    assert metrics["learning_rate"].iloc[0] == pytest.approx(1e-4)
    results = runs.read_results(run_dir)
    assert results["unfrozen_layers"] == ["block5_conv1", "block5_conv2", "block5_conv3"]
    from core.models import transfer, vgg16

    frozen = [name for name in vgg16.CONV_LAYERS if not name.startswith("block5")]
    _assert_layers_equal(_load(run_dir), reference, frozen)
    # Train the same way in memory to see block5 move while blocks 1-4 stay put.
    from core.training import backbone_family as family

    resolved = runs.read_config(run_dir)
    model = family.build_model_for_config(resolved, 2, path)
    transfer.unfreeze_top_blocks(model, "vgg16", 1)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, (8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    model.fit(images, np.array([0, 1] * 4), epochs=1, verbose=0)
    _assert_layers_equal(model, reference, frozen)
    assert not np.array_equal(model.get_layer("block5_conv3").get_weights()[0], reference["block5_conv3"][0])


def test_scratch_ignores_the_weights_file_and_trains_every_layer(data_root, weights_file):
    path, reference = weights_file
    run_dir = _train({"model": "vgg16", "strategy": "scratch", "weights": str(path), "epochs": 1,
                      **TINY})
    config = runs.read_config(run_dir)
    assert config["weights"] == "none" and config["weights_ignored"] == str(path)
    results = runs.read_results(run_dir)
    assert results["non_trainable_params"] == 0
    model = _load(run_dir)
    assert not np.array_equal(model.get_layer("block1_conv1").get_weights()[0], reference["block1_conv1"][0])
    assert model.get_layer("block5_conv3") is not None


def test_lenet_transfer_copies_the_source_layers_and_freezes_them(data_root, isolated_roots):
    """Few-shot machinery on the tiny data: a fixture source run lends its conv layers (AnB)."""
    from core.models import lenet

    source_model = lenet.build_lenet(5, (32, 32, 1), conv_filters=(4, 8), dense_units=(16,), name="source")
    source_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs",
                                  "preprocessing": {"image_size": 32, "color": "grayscale",
                                                    "equalization": "none", "blur": 0}})
    source_model.save(source_dir / runs.MODEL_FILE)
    runs.write_status(source_dir, state=runs.COMPLETED)
    run_dir = _train({"model": "lenet5-transfer", "strategy": "feature-extraction",
                      "source_run": str(source_dir), "transfer_layers": 2, "dataset": "dogs-vs-cats",
                      "train_size": 24, "valid_size": 16, "epochs": 2, "batch_size": 8})
    config = runs.read_config(run_dir)
    assert config["preprocessing"]["color"] == "grayscale"  # the source's input, reused
    results = runs.read_results(run_dir)
    assert results["copied_layers"] == ["block1_conv", "block2_conv"]
    model = _load(run_dir)
    for name in ("block1_conv", "block2_conv"):
        for loaded, saved in zip(model.get_layer(name).get_weights(), source_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(loaded, saved)
        assert not model.get_layer(name).trainable
    assert model.get_layer("predictions").units == 2  # a new classifier for the target
    assert Predictor.from_run(run_dir).class_names == ["cat", "dog"]


@pytest.mark.slow
def test_mobilenet_fine_tuning_unfreezes_only_its_top_blocks_in_the_saved_model(data_root, tmp_path):
    base = keras.applications.MobileNet(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=0.25,
                                        include_top=False, weights=None)
    path = tmp_path / "mobilenet_small.weights.h5"
    base.save_weights(path)
    reference = {layer.name: layer.get_weights() for layer in base.layers if layer.weights}
    run_dir = _train({"model": "mobilenet", "strategy": "fine-tune", "weights": str(path), "epochs": 3,
                      "fine_tune_epochs": 2, "fine_tune_blocks": 1, "fine_tune_learning_rate": 0.05,
                      "bottleneck": False, "augmentation": {}, **TINY})
    config = runs.read_config(run_dir)
    assert config["alpha"] == 0.25 and config["fine_tune_blocks"] == 1
    results = runs.read_results(run_dir)
    assert results["unfrozen_layers"] == ["conv_dw_13", "conv_dw_13_bn", "conv_pw_13", "conv_pw_13_bn"]
    assert list(runs.read_metrics(run_dir)["epoch"]) == [1, 2, 3]
    frozen = [name for name in reference if name not in results["unfrozen_layers"]]
    _assert_layers_equal(_load(run_dir), reference, frozen)  # everything below block 13 is the file's
