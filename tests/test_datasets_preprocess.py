"""Preprocessing (NumPy/OpenCV) and augmentation (real Keras preprocessing layers)."""

import numpy as np
import pytest

from core.datasets import preprocess


def _images(count=6, size=20, seed=0):
    rng = np.random.default_rng(seed)
    # Low-contrast images (values 100..140), so equalisation has something to stretch.
    return rng.integers(100, 141, (count, size, size, 3)).astype(np.uint8)


def test_defaults_resize_to_32_rgb_uint8():
    output = preprocess.apply_preprocessing(_images(size=20))
    assert output.shape == (6, 32, 32, 3) and output.dtype == np.uint8


def test_identity_spec_returns_equal_copy():
    images = _images(size=32)
    output = preprocess.apply_preprocessing(images, {"image_size": 32})
    np.testing.assert_array_equal(output, images)
    assert output is not images


def test_grayscale_gives_one_channel_and_list_of_any_sizes():
    images = [np.full((50, 70, 3), 200, np.uint8), np.full((10, 12), 30, np.uint8),
              np.full((40, 40, 4), 90, np.uint8)]
    output = preprocess.apply_preprocessing(images, {"image_size": 24, "color": "grayscale"})
    assert output.shape == (3, 24, 24, 1)
    assert abs(int(output[0].mean()) - 200) <= 1 and abs(int(output[1].mean()) - 30) <= 1
    rgb = preprocess.apply_preprocessing(images[1:2], {"image_size": 24})
    assert rgb.shape == (1, 24, 24, 3) and np.all(rgb == 30)


@pytest.mark.parametrize("equalization", ["global", "clahe"])
def test_equalisation_stretches_contrast(equalization):
    images = _images(size=32)
    for color in ("grayscale", "rgb"):
        before = preprocess.apply_preprocessing(images, {"color": color})
        after = preprocess.apply_preprocessing(images, {"color": color, "equalization": equalization})
        assert after.std() > before.std() * 1.5, (color, before.std(), after.std())


def test_blur_smooths_and_keeps_mean():
    images = _images(size=32)
    blurred = preprocess.apply_preprocessing(images, {"blur": 5})
    assert blurred.std() < images.std() * 0.6
    assert abs(float(blurred.mean()) - float(images.mean())) < 2


@pytest.mark.parametrize("spec, fragment", [
    ({"colour": "rgb"}, "unknown preprocessing key"),
    ({"image_size": 4}, "image_size"),
    ({"color": "hsv"}, "color"),
    ({"equalization": "adaptive"}, "equalization"),
    ({"blur": 4}, "odd"),
    ({"center_crop": 0.3}, r"center_crop must be a number in \[0.5, 1.0\], received 0.3"),
    ({"center_crop": True}, "center_crop"),
])
def test_bad_preprocessing_specs_name_the_problem(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        preprocess.apply_preprocessing(_images(), spec)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        preprocess.apply_preprocessing(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess.apply_preprocessing(np.zeros((2, 8, 8, 5), np.uint8))


def test_resolve_fills_defaults_and_ignores_augmentation_keys():
    assert preprocess.resolve_preprocessing({"rotation_degrees": 10}) == preprocess.DEFAULT_PREPROCESSING
    resolved = preprocess.resolve_augmentation({"image_size": 48, "rotation_degrees": 10})
    assert resolved["rotation_degrees"] == 10.0 and resolved["flip"] == "none"


def test_center_crop_loads_more_pixels_and_keeps_the_middle():
    assert preprocess.source_image_size({"image_size": 32}) == 32
    assert preprocess.source_image_size({"image_size": 32, "center_crop": 0.8}) == 40
    assert preprocess.source_image_size({"image_size": 32, "center_crop": 0.85}) == 38
    # A 100-pixel photo: a 10-pixel black border around a white sign, as GTSRB frames its signs.
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[10:90, 10:90] = 255
    uncropped = preprocess.apply_preprocessing([photo], {"image_size": 32})[0]
    cropped = preprocess.apply_preprocessing([photo], {"image_size": 32, "center_crop": 0.8})[0]
    assert (uncropped[0] == 0).all() and (uncropped[16, 16] == 255).all()
    assert (cropped == 255).all()  # the border is gone: all 32 x 32 pixels show the sign


def test_center_crop_treats_a_photo_and_its_loaded_copy_alike():
    """The trainer loads datasets at source_image_size; the Predictor gets full-size photos.
    Both must reach the network as the very same pixels."""
    from core.datasets import base

    rng = np.random.default_rng(3)
    spec = {"image_size": 32, "color": "grayscale", "equalization": "clahe", "center_crop": 0.8}
    for side in (23, 40, 57, 131):
        photo = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
        loaded = base.resize_square(photo, preprocess.source_image_size(spec))
        np.testing.assert_array_equal(preprocess.apply_preprocessing([photo], spec),
                                      preprocess.apply_preprocessing(loaded[np.newaxis], spec))


def test_normalize_modes():
    images = np.full((1, 2, 2, 3), 255, np.uint8)
    assert preprocess.normalize(images, "scale").max() == 1.0
    caffe = preprocess.normalize(images, "caffe")
    np.testing.assert_allclose(caffe[0, 0, 0], 255 - np.array(preprocess.CAFFE_MEAN_BGR), rtol=1e-5)


def test_augmentation_layers_random_in_training_identity_at_inference():
    import keras

    spec = {"rotation_degrees": 15, "shift": 0.1, "zoom": 0.1, "brightness": 0.2, "contrast": 0.2,
            "low_resolution": 0.3, "flip": "horizontal", "occlusion": 0.4, "seed": 3}
    augmentation = preprocess.build_augmentation(spec)
    assert isinstance(augmentation, keras.Sequential)
    assert [layer.name for layer in augmentation.layers] == [
        "random_affine", "random_low_resolution", "random_brightness", "random_contrast",
        "random_flip", "random_occlusion"]
    assert augmentation.get_layer("random_low_resolution").probability == 0.3
    assert augmentation.get_layer("random_occlusion").probability == 0.4
    with pytest.raises(ValueError, match=r"augmentation low_resolution must be a number in \[0, 1.0\], "
                                         r"received 2"):
        preprocess.build_augmentation({"low_resolution": 2})
    images = _images(count=4, size=16).astype("float32")
    trained = keras.ops.convert_to_numpy(augmentation(images, training=True))
    inferred = keras.ops.convert_to_numpy(augmentation(images, training=False))
    assert np.abs(trained - images).mean() > 1.0
    np.testing.assert_array_equal(inferred, images)
    # It works inside a model graph, as the trainer inserts it.
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(augmentation(inputs)))
    assert model.predict(images, verbose=0).shape == (4, 3)


def test_default_augmentation_is_identity_without_flip():
    augmentation = preprocess.build_augmentation(None)
    assert [layer.name for layer in augmentation.layers] == ["no_augmentation"]
    signs = preprocess.build_augmentation({"rotation_degrees": 10})
    assert "random_flip" not in [layer.name for layer in signs.layers]
    with pytest.raises(ValueError, match="flip"):
        preprocess.build_augmentation({"flip": "diagonal"})
    with pytest.raises(ValueError, match="shift"):
        preprocess.build_augmentation({"shift": 2})
