"""Portable export: tiny real runs exported by ``python -m core.export``, then loaded by a fresh
Python that cannot import this project.

Each test trains a one-epoch run through the real job path (LeNet ``seed`` and ``plus`` on
synthetic signs, with their augmentation and random blur; VGG16 and MobileNetV2 feature
extraction and MobileNet v1 feature extraction on random weights at 64 px on a drawn Dogs vs Cats look-alike), exports it to
``.keras`` and ``.tflite`` with the command line, and checks:

* a ``python -I`` subprocess in a temp folder (no project on ``sys.path``) loads the ``.keras``
  with a bare ``keras.saving.load_model`` and matches ``Predictor.predict`` within 1e-4 on 100
  validation images;
* the TFLite interpreter agrees with the run's top-1 on at least 99 % of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core import export, jobs, runs, worker  # noqa: E402
from core.inference import Predictor  # noqa: E402
from tests.conftest import install_dogs_vs_cats  # noqa: E402
from tests.test_jobs import synthetic_data_root  # noqa: E402,F401 - shared session fixture

REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_IMAGES = 100
TOLERANCE = 1e-4
MIN_TFLITE_AGREEMENT = 0.99
SUBPROCESS_TIMEOUT_SECONDS = 300
DOG_CAT_IMAGES_PER_CLASS = 100
TRANSFER_IMAGE_SIZE = 64

FRESH_PYTHON_CHECK = """
import importlib.util, sys
import numpy as np
import keras
assert importlib.util.find_spec("core") is None, "the project must not be importable here"
model = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model.predict_on_batch(images), np.float32))
print(",".join(sorted({type(layer).__module__.split(".")[0] for layer in model.layers})))
"""


@pytest.fixture(scope="module")
def dogs_data_root(tmp_path_factory):
    """A data root with a 200-image Dogs vs Cats look-alike installed (reddish cats, bluish dogs)."""
    return install_dogs_vs_cats(tmp_path_factory.mktemp("export-dogs"), DOG_CAT_IMAGES_PER_CLASS)


def _random_weights_file(folder: Path, backbone: str) -> Path:
    """A weights=None base of ``backbone`` (its default width) saved as ``.weights.h5``."""
    from core.models import backbones

    path = folder / f"{backbone}_random.weights.h5"
    base = backbones.backbone_module(backbone).build_base(TRANSFER_IMAGE_SIZE)
    base.save_weights(path)
    return path


def _train(config: dict) -> Path:
    run_dir = jobs.create_job(config)
    state = worker.run(run_dir)
    assert state == runs.COMPLETED, runs.read_status(run_dir).get("error")
    return run_dir


def _export_cli(run_dir: Path, format: str, output: Path, data_root: Path) -> Path:
    environment = dict(os.environ, TLLAB_DATA_DIR=str(data_root))
    result = subprocess.run(
        [sys.executable, "-m", "core.export", str(run_dir), "--format", format,
         "--output", str(output)],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(output)
    assert output.exists()
    return output


def _fresh_python_predict(model_path: Path, images: np.ndarray, folder: Path) -> tuple[np.ndarray, str]:
    """Loads ``model_path`` in ``python -I`` run from ``folder`` with no PYTHONPATH."""
    images_path, outputs_path = folder / "images.npy", folder / "outputs.npy"
    np.save(images_path, images.astype(np.float32))
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
                   "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PYTHON_CHECK, str(model_path), str(images_path),
         str(outputs_path)],
        cwd=folder, env=environment, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(outputs_path), result.stdout.strip().splitlines()[-1]


def _check_exports(run_dir: Path, data_root: Path, folder: Path) -> None:
    predictor = Predictor.from_run(run_dir, precision="float32")
    raw_images, _ = export.validation_raw_images(run_dir, NUM_IMAGES)
    assert len(raw_images) == NUM_IMAGES
    images = predictor.preprocess(raw_images)  # what the exported model takes
    np.testing.assert_array_equal(images, export.validation_images(run_dir, NUM_IMAGES)[0])
    expected = predictor.predict(raw_images)
    assert expected.shape == (NUM_IMAGES, predictor.num_classes)

    keras_file = _export_cli(run_dir, "keras", folder / "model.keras", data_root)
    outputs, modules = _fresh_python_predict(keras_file, images, folder)
    assert modules == "keras"  # every layer of the exported graph is a standard Keras layer
    np.testing.assert_allclose(outputs, expected, atol=TOLERANCE, rtol=0)

    tflite_file = _export_cli(run_dir, "tflite", folder / "model.tflite", data_root)
    tflite_outputs = export.tflite_predict(tflite_file, images)
    agreement = np.mean(tflite_outputs.argmax(axis=1) == expected.argmax(axis=1))
    assert agreement >= MIN_TFLITE_AGREEMENT


def _layer_types(run_dir: Path) -> set[str]:
    return {type(layer).__name__ for layer in export.load_run_model(run_dir).layers}


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["seed", "plus"])
def test_lenet_run_exports_to_portable_keras_and_tflite(preset, synthetic_data_root, monkeypatch,
                                                         tmp_path):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(synthetic_data_root))
    run_dir = _train({"model": "lenet5", "preset": preset, "dataset": "synthetic-signs",
                      "epochs": 1, "labels_per_class": 2, "max_test_images": 43})
    assert "Sequential" in _layer_types(run_dir)  # the run trained with in-graph augmentation
    _check_exports(run_dir, synthetic_data_root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["vgg16", "mobilenetv2", "mobilenet"])
def test_transfer_run_exports_to_portable_keras_and_tflite(backbone, dogs_data_root, monkeypatch,
                                                            tmp_path):
    monkeypatch.setenv("TLLAB_DATA_DIR", str(dogs_data_root))
    weights = _random_weights_file(tmp_path, backbone)
    run_dir = _train({"model": backbone, "strategy": "feature-extraction", "weights": str(weights),
                      "dataset": "dogs-vs-cats", "image_size": TRANSFER_IMAGE_SIZE,
                      "train_size": 24, "valid_size": NUM_IMAGES, "epochs": 1, "batch_size": 8})
    if backbone == "vgg16":
        assert "CaffePreprocessing" in _layer_types(run_dir)
    _check_exports(run_dir, dogs_data_root, tmp_path)


def test_inference_model_folds_the_caffe_flip_into_block1_conv1():
    from core.models import transfer

    model = transfer.build_transfer_model(2, backbone="vgg16", image_size=32)
    exported = export.inference_model(model)
    assert type(exported.get_layer("vgg16_preprocessing")).__name__ == "Normalization"
    np.testing.assert_array_equal(exported.get_layer("block1_conv1").get_weights()[0],
                                  model.get_layer("block1_conv1").get_weights()[0][:, :, ::-1, :])
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(exported.predict_on_batch(images), model.predict_on_batch(images),
                               atol=1e-5, rtol=0)


def test_a_flip_not_followed_by_a_convolution_becomes_a_permutation_convolution():
    from core.models.transfer_layers import CaffePreprocessing

    inputs = keras.Input((4, 4, 3), name="image")
    outputs = keras.layers.Flatten(name="flatten")(CaffePreprocessing(name="caffe")(inputs))
    model = keras.Model(inputs, outputs)
    exported = export.inference_model(model)
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    np.testing.assert_allclose(exported.predict_on_batch(images), model.predict_on_batch(images),
                               atol=1e-4, rtol=0)
    assert {type(layer).__name__ for layer in exported.layers} == {
        "InputLayer", "Normalization", "Conv2D", "Flatten"}


@pytest.mark.parametrize("image_size, transformer_size", [(32, 0), (40, 32)])
def test_a_spatial_transformer_exports_as_standard_layers_with_the_same_outputs(image_size, transformer_size):
    from core.models import lenet
    from core.training import lenet_family

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "image_size": image_size,
                                          "spatial_transformer_size": transformer_size})
    model = lenet.build_from_config(config, 43, (image_size, image_size, 1))
    rng = np.random.default_rng(3)
    theta = model.get_layer("stn_theta")  # a warp that depends on the image: zoom, turn, shift
    theta.set_weights([rng.normal(0, 0.002, (lenet.STN_UNITS, 6)).astype(np.float32),
                       np.array([0.8, -0.2, 0.1, 0.25, 0.9, -0.3], np.float32)])
    exported = export.inference_model(model)
    assert all(type(layer).__module__.startswith("keras.") for layer in exported.layers)
    images = rng.integers(0, 256, (6, image_size, image_size, 1)).astype(np.float32)
    warped = keras.Model(model.inputs, model.get_layer("stn_sampler").output).predict_on_batch(images)
    assert warped.shape == (6, 32, 32, 1)
    if not transformer_size:
        assert np.abs(warped - keras.Model(model.inputs, model.get_layer("rescaling").output)
                      .predict_on_batch(images)).mean() > 0.1  # the warp moves pixels
    np.testing.assert_allclose(
        keras.Model(exported.inputs, exported.get_layer("stn_sampler").output).predict_on_batch(images),
        warped, atol=1e-4, rtol=0)
    np.testing.assert_allclose(exported.predict_on_batch(images), model.predict_on_batch(images),
                               atol=1e-5, rtol=0)


def test_custom_layers_without_a_standard_equivalent_are_refused():
    @keras.saving.register_keras_serializable(package="tests_export")
    class Doubling(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(Doubling(name="double")(inputs)))
    with pytest.raises(export.ExportError, match="'double' is a custom Doubling"):
        export.inference_model(model)


def test_export_rejects_quantising_a_keras_file_before_loading_anything(isolated_roots):
    run_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs"})
    with pytest.raises(ValueError, match="quantize applies to the tflite format only"):
        export.export_model(run_dir, "keras", quantize="int8")
    with pytest.raises(ValueError, match="format must be one of"):
        export.export_model(run_dir, "onnx")


def test_lenet_transfer_graph_exports_like_its_source():
    """lenet5-transfer models are a cloned source LeNet with a new classifier (see the transfer
    family); the export drops the same training-only layers and keeps the outputs."""
    from core.datasets.preprocess import build_augmentation
    from core.models import lenet

    config = lenet.preset_config("seed")
    config["augmentation"].update(low_resolution=0.2, occlusion=0.5)
    source = lenet.build_from_config(config, 43, (32, 32, 1),
                                     build_augmentation(config["augmentation"]))
    clone = keras.models.clone_model(source)
    outputs = keras.layers.Dense(5, activation="softmax", name="predictions")(clone.layers[-1].input)
    model = keras.Model(clone.inputs, outputs, name="lenet5_seed_transfer")
    exported = export.inference_model(model)
    kinds = {type(layer).__name__ for layer in exported.layers}
    assert not kinds & {"Sequential", "RandomGaussianBlur", "RandomAffine", "RandomLowResolution",
                        "RandomOcclusion", "Dropout"}
    images = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(exported.predict_on_batch(images), model.predict_on_batch(images),
                               atol=1e-6, rtol=0)
