"""core.gradcam on tiny real Keras models: shapes, normalisation, the Keras recipe, localisation."""

from __future__ import annotations

import numpy as np
import pytest

from core import gradcam


def tiny_conv_model(activation="softmax"):
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((20, 20, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs)


def keras_example_heatmap(model, layer_name, images, class_index):
    """Keras' published recipe, verbatim in spirit, for a model whose output is logits."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs[0], [model.get_layer(layer_name).output, model.output])
    with tf.GradientTape() as tape:
        conv, predictions = grad_model(images)
        class_channel = predictions[:, class_index]
    grads = tape.gradient(class_channel, conv)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv[0] @ pooled[..., tf.newaxis])
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def test_heatmap_shape_and_normalisation():
    model = tiny_conv_model()
    explainer = gradcam.GradCam(model)
    assert explainer.layer_name == "conv_b" and explainer.uses_logits
    images = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3)).astype("float32")
    heatmaps, classes = explainer.heatmaps(images)
    assert heatmaps.shape == (3, 7, 7) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    for heatmap in heatmaps:
        assert heatmap.max() == pytest.approx(1.0) or heatmap.max() == 0.0
    expected_classes = np.argmax(model(images).numpy(), axis=1)
    assert classes.tolist() == expected_classes.tolist()


def test_matches_the_keras_recipe_on_logits():
    model = tiny_conv_model(activation=None)
    image = np.random.default_rng(1).integers(0, 256, (1, 20, 20, 3)).astype("float32")
    expected = keras_example_heatmap(model, "conv_a", image, class_index=2)
    heatmap = gradcam.compute_heatmap(model, image, class_index=2, layer_name="conv_a")[0]
    np.testing.assert_allclose(heatmap, expected, atol=1e-5)


def test_softmax_models_are_explained_through_their_logits():
    softmax_model = tiny_conv_model("softmax")
    logits_model = tiny_conv_model(None)
    logits_model.set_weights(softmax_model.get_weights())
    image = np.random.default_rng(2).integers(0, 256, (1, 20, 20, 3)).astype("float32")
    np.testing.assert_allclose(
        gradcam.compute_heatmap(softmax_model, image, class_index=1),
        gradcam.compute_heatmap(logits_model, image, class_index=1), atol=1e-5)


def test_heatmap_points_at_the_evidence():
    import keras

    # One 1x1 "brightness" filter, global average pooling, class 0 = brightness: the hot spot
    # of class 0 must be where the image is bright (its top-left corner).
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(1, 1, activation="relu", name="brightness",
                            kernel_initializer="ones", bias_initializer="zeros")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("predictions").set_weights([np.array([[1.0, -1.0]]), np.zeros(2)])
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, 1:5, 2:6] = 200.0
    heatmap = gradcam.compute_heatmap(model, image, class_index=0)[0]
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert 1 <= row < 5 and 2 <= col < 6
    assert heatmap[10:, 10:].max() == 0.0


def test_last_conv_layer_of_nested_vgg16_is_block5_conv3():
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x = base(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    assert gradcam.find_last_conv_layer(model) == "block5_conv3"
    explainer = gradcam.GradCam(model)
    image = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3)).astype("float32")
    heatmaps, _ = explainer.heatmaps(image)
    assert heatmaps.shape == (1, 2, 2)
    # the re-traced model shares the weights: same predictions as the model itself
    np.testing.assert_allclose(explainer.gradcam_model(image)[2].numpy(), model(image).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_nested_sequential_inside_a_sequential():
    import keras

    features = keras.Sequential([keras.layers.Conv2D(3, 3, name="inner_conv"),
                                 keras.layers.MaxPooling2D()], name="features")
    model = keras.Sequential([keras.Input((12, 12, 1)), features, keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    heatmaps = gradcam.compute_heatmap(model, np.ones((2, 12, 12, 1), np.float32))
    assert heatmaps.shape == (2, 10, 10)


def test_models_without_convolutions_are_refused():
    import keras

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    assert not gradcam.has_conv_layer(model)
    with pytest.raises(gradcam.GradCamError, match="no convolution layer"):
        gradcam.GradCam(model)
    with pytest.raises(gradcam.GradCamError, match="No layer named 'missing'"):
        gradcam.GradCam(tiny_conv_model(), layer_name="missing")


def test_overlay_blends_a_colormap_over_the_image():
    image = np.full((8, 8, 1), 100, np.uint8)
    heatmap = np.zeros((2, 2), np.float32)
    heatmap[0, 0] = 1.0
    overlay = gradcam.overlay_heatmap(image, heatmap, alpha=0.5, size=32)
    assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8
    assert overlay[0, 0, 0] > overlay[0, 0, 2]  # hot (red) corner
    assert overlay[31, 31, 2] > overlay[31, 31, 0]  # cold (blue) corner
    untouched = gradcam.overlay_heatmap(image, heatmap, alpha=0.0)
    assert (untouched == 100).all()
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        gradcam.overlay_heatmap(image, heatmap, alpha=2.0)


def test_a_committee_is_explained_by_the_mean_of_its_members_maps(tmp_path):
    import keras

    from core.models import lenet, register_custom_layers
    from core.training import lenet_family

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "committee",
                                          "conv_filters": [4, 8, 8], "dense_units": [16]})
    keras.utils.set_random_seed(3)
    _, committee = lenet.build_committee(config, 5, (32, 32, 1), lambda: None)
    path = tmp_path / "committee.keras"
    committee.save(path)  # explained as the served model is: loaded from its file
    register_custom_layers()
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    members = gradcam.committee_members(loaded)
    assert [member.name for member in members] == ["member1", "member2", "member3"]
    assert gradcam.committee_members(tiny_conv_model()) == []
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    explainer = gradcam.GradCam(loaded)
    assert "of each of its 3 members" in explainer.layer_name
    cams, chosen = explainer.heatmaps(images)
    np.testing.assert_array_equal(chosen, np.asarray(loaded(images)).argmax(axis=-1))
    member_cams = [gradcam.GradCam(member).heatmaps(images, chosen)[0] for member in members]
    expected = np.mean(member_cams, axis=0)
    expected /= np.maximum(expected.reshape(2, -1).max(axis=1), 1e-12)[:, None, None]
    assert cams.shape == member_cams[0].shape and cams.max() == pytest.approx(1.0)
    np.testing.assert_allclose(cams, expected, atol=1e-6)
    # The members disagree: the mean is none of them.
    assert min(np.abs(cams - member).max() for member in member_cams) > 1e-3


def test_a_spatial_transformer_networks_map_is_carried_back_onto_the_input():
    import cv2
    import keras

    from core.models import lenet
    from core.training import lenet_family

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "spatial_transformer": True,
                                          "conv_filters": [4, 8, 8], "dense_units": [16]})
    keras.utils.set_random_seed(4)
    model = lenet.build_from_config(config, 5, (32, 32, 1))
    # The transformer zooms into the centre: its warped image shows only |x|, |y| <= 0.5.
    model.get_layer("stn_theta").set_weights([np.zeros((lenet.STN_UNITS, 6), np.float32),
                                              np.array([0.5, 0, 0, 0, 0.5, 0], np.float32)])
    images = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 1)).astype("float32")
    cams = gradcam.GradCam(model)(images)
    assert cams.shape == (6, 32, 32)
    coordinates = np.abs(np.linspace(-1.0, 1.0, 32))
    outside = (coordinates[:, None] > 0.55) | (coordinates[None, :] > 0.55)
    assert cams[:, outside].max() == 0.0
    assert cams[:, ~outside].max() == pytest.approx(1.0)
    # With the identity warp the map is the plain one, upsampled to the input.
    model.get_layer("stn_theta").set_weights([np.zeros((lenet.STN_UNITS, 6), np.float32),
                                              np.array([1, 0, 0, 0, 1, 0], np.float32)])
    explainer = gradcam.GradCam(model)
    plain = gradcam.GradCam(model)
    plain.warp_model = None  # the conv layer's own map, not carried back
    expected = np.stack([cv2.resize(cam, (32, 32), interpolation=cv2.INTER_LINEAR)
                         for cam in plain(images)])
    expected /= np.maximum(expected.reshape(6, -1).max(axis=1), 1e-12)[:, None, None]
    np.testing.assert_allclose(explainer(images), expected, atol=1e-4)
