"""Transfer models, weights and the bottleneck cache: real Keras layers, files and HTTP (offline)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from functools import partial

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core.models import backbones, vgg16  # noqa: E402
from core.models.transfer_layers import CaffePreprocessing  # noqa: E402
from core.training import bottleneck  # noqa: E402
from core.training import transfer_family as family  # noqa: E402

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def random_base_weights(tmp_path_factory):
    """A weights=None VGG16 base saved in Keras 3 format and in the legacy format of the download."""
    folder = tmp_path_factory.mktemp("weights")
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    modern = folder / "vgg16_random.weights.h5"
    base.save_weights(modern)
    legacy = folder / "vgg16_notop.h5"
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(legacy, "w") as handle:  # the layout of Keras' downloaded notop file
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)
    return {"modern": modern, "legacy": legacy,
            "values": {layer.name: layer.get_weights() for layer in base.layers if layer.weights}}


def test_caffe_preprocessing_matches_keras_and_survives_safe_mode_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, CaffePreprocessing(name="vgg16_preprocessing")(inputs))
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-6, atol=1e-4)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(images)), expected, rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="3 channels"):
        CaffePreprocessing()(keras.Input((8, 8, 1)))


def test_transfer_model_is_flat_keeps_vgg16_names_and_the_study_head(tmp_path):
    model = vgg16.build_transfer_model(2, image_size=IMAGE_SIZE)
    names = [layer.name for layer in model.layers]
    assert set(backbones.VGG16_CONV_LAYERS) <= set(names)
    assert names[-4:] == list(vgg16.HEAD_LAYER_NAMES)
    assert model.get_layer("head_dense").units == 256
    assert model.get_layer("head_dropout").rate == 0.5
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.get_layer("block5_conv3").filters == 512  # Grad-CAM's layer, not nested
    images = np.random.default_rng(1).integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=1e-6)


def test_feature_extraction_freezes_the_base_and_fine_tuning_unfreezes_exactly_block5():
    model = vgg16.build_transfer_model(3, image_size=IMAGE_SIZE, freeze_base=True)
    trainable_layers = {weight.path.split("/")[0] for weight in model.trainable_weights}
    assert trainable_layers == {"head_dense", "predictions"}
    unfrozen = vgg16.unfreeze_block5(model)
    assert unfrozen == list(backbones.VGG16_BLOCK5_LAYERS)
    trainable_layers = {weight.path.split("/")[0] for weight in model.trainable_weights}
    assert trainable_layers == {"block5_conv1", "block5_conv2", "block5_conv3", "head_dense", "predictions"}
    scratch = vgg16.build_transfer_model(3, image_size=IMAGE_SIZE, freeze_base=False)
    assert vgg16.count_params(scratch)[1] == 0


def test_local_weights_files_load_back_exactly(random_base_weights):
    for path in (random_base_weights["modern"], random_base_weights["legacy"]):
        model = vgg16.build_transfer_model(2, image_size=IMAGE_SIZE * 2, weights_file=path)
        for name, values in random_base_weights["values"].items():
            for loaded, saved in zip(model.get_layer(name).get_weights(), values):
                np.testing.assert_array_equal(loaded, saved)


def test_local_weights_are_discovered_under_the_data_root(random_base_weights, isolated_roots):
    with pytest.raises(ValueError, match="no vgg16 weights file"):
        backbones.parse_weights("local")
    target = isolated_roots["data"] / "weights" / "vgg16_notop.h5"
    target.parent.mkdir()
    target.write_bytes(random_base_weights["legacy"].read_bytes())
    choice = backbones.parse_weights("local")
    assert choice.kind == "file" and choice.path == target.resolve()
    assert backbones.parse_weights("imagenet").kind == "imagenet"
    assert backbones.parse_weights(None).kind == "none"
    with pytest.raises(ValueError, match="not a file"):
        backbones.parse_weights(str(target) + ".missing")


@pytest.fixture
def http_server(tmp_path):
    """Serves ``tmp_path/served`` on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_imagenet_download_checks_size_and_md5_and_reports_progress(http_server, tmp_path):
    folder, url = http_server
    payload = np.random.default_rng(2).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    (folder / "weights.h5").write_bytes(payload)
    cache = tmp_path / "keras-models"
    seen = []
    path = backbones.ensure_imagenet_weights(
        url=f"{url}/weights.h5", cache_dir=cache, expected_md5=hashlib.md5(payload).hexdigest(),
        expected_bytes=len(payload), progress=lambda done, total: seen.append((done, total)))
    assert path == cache / backbones.VGG16_NOTOP_FILE and path.read_bytes() == payload
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload)) and len(seen) > 2
    path.unlink()
    with pytest.raises(backbones.WeightsUnavailableError, match="corrupt"):
        backbones.ensure_imagenet_weights(url=f"{url}/weights.h5", cache_dir=cache,
                                          expected_md5="0" * 32, expected_bytes=len(payload))
    assert not any(cache.iterdir())  # no half or wrong file left behind


def test_offline_download_error_points_to_the_local_file_option(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(backbones.WeightsUnavailableError) as raised:
        backbones.ensure_imagenet_weights(url=f"http://127.0.0.1:{port}/x.h5", cache_dir=tmp_path)
    message = str(raised.value)
    assert "Offline?" in message and str(backbones.local_weights_dir()) in message
    assert "--weights PATH" in message


def test_bottleneck_cache_computes_once_and_rotates_augmented_copies(isolated_roots):
    model = vgg16.build_transfer_model(
        2, image_size=IMAGE_SIZE,
        augmentation=keras.Sequential([keras.layers.RandomFlip("horizontal", seed=1)], name="augmentation"))
    images = np.random.default_rng(3).integers(0, 256, (6, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1])
    extractor = vgg16.feature_extractor(model)
    calls = []

    def compute():
        calls.append(1)
        return bottleneck.compute_features(extractor, images, augmentation=model.get_layer("augmentation"),
                                           copies=3, batch_size=4)

    key = bottleneck.cache_key(weights_fingerprint="abc", dataset="d", image_size=IMAGE_SIZE, copies=3)
    first, info = bottleneck.cached_features(key, "train", compute, labels)
    second, info_again = bottleneck.cached_features(key, "train", compute, labels)
    assert calls == [1] and not info["hit"] and info_again["hit"]
    assert first.shape == (3, 6, 1, 1, 512) and first.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(second), first)
    assert (isolated_roots["data"] / "cache" / "bottleneck" / key / "train.npy").exists()
    assert key != bottleneck.cache_key(weights_fingerprint="abd", dataset="d", image_size=IMAGE_SIZE, copies=3)
    data = bottleneck.make_rotating_features(first, labels, batch_size=6, shuffle=False)
    for epoch in range(4):
        batch, batch_labels = data[0]
        np.testing.assert_array_equal(batch, first[epoch % 3].astype("float32"))
        np.testing.assert_array_equal(batch_labels, labels)
        data.on_epoch_end()


def test_resolve_config_fills_the_study_defaults_and_validates(tmp_path):
    resolved = family.resolve_config({"model": "vgg16"})
    expected = {"strategy": "feature-extraction", "dataset": "dogs-vs-cats", "weights": "imagenet",
                "image_size": 224, "train_size": 2000, "valid_size": 500, "epochs": 100,
                "batch_size": 100, "optimizer": "sgd", "learning_rate": 1e-4, "momentum": 0.9,
                "head_units": 256, "dropout": 0.5, "bottleneck": True, "bottleneck_copies": 5}
    assert {key: resolved[key] for key in expected} == expected
    assert resolved["augmentation"]["flip"] == "horizontal" and resolved["augmentation"]["rotation_degrees"] > 0
    assert resolved["preprocessing"] == {"image_size": 224, "color": "rgb", "equalization": "none", "blur": 0}
    fine = family.resolve_config({"model": "vgg16", "strategy": "fine-tune", "epochs": 10})
    assert fine["fine_tune_epochs"] == 5 and fine["fine_tune_learning_rate"] == pytest.approx(1e-5)
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"x")
    scratch = family.resolve_config({"model": "vgg16", "strategy": "scratch", "weights": str(weights)})
    assert scratch["weights"] == "none" and scratch["weights_ignored"] == str(weights)
    assert not scratch["bottleneck"]
    no_augmentation = family.resolve_config({"model": "vgg16", "augmentation": {}})
    assert no_augmentation["bottleneck_copies"] == 1
    for bad, match in (({"strategy": "distil"}, "strategy must be one of"),
                       ({"image_size": 16}, "at least 32"),
                       ({"weights": "none"}, "needs pretrained weights"),
                       ({"fine_tune_epochs": 3, "strategy": "fine-tune", "epochs": 2}, "between 1 and epochs"),
                       ({"model": "mobilenetv2", "strategy": "fine-tune"}, "block5"),
                       ({"colour": "red"}, "unknown transfer setting")):
        with pytest.raises(ValueError, match=match):
            family.resolve_config({"model": "vgg16", **bad})


def test_mobilenet_backbone_builds_with_its_own_preprocessing():
    model = vgg16.build_transfer_model(2, backbone="mobilenetv2", image_size=IMAGE_SIZE)
    assert model.get_layer("mobilenetv2_preprocessing").scale == pytest.approx(1 / 127.5)
    assert model.get_layer(backbones.LAST_CONV_LAYER["mobilenetv2"]) is not None
    trainable, frozen = vgg16.count_params(model)
    assert frozen > 2_000_000 and trainable < frozen
