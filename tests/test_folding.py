"""Folding for inference (batch norm and "same" zero padding into convolutions) and the flip
folded into ``RandomAffine``'s warp: real Keras layers, exact comparisons with the unfolded ones."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core.datasets.preprocess import build_augmentation, flip_into_warp  # noqa: E402
from core.models import folding, iter_layers, transfer  # noqa: E402
from core.models.layers import RandomAffine  # noqa: E402
from core.training import bottleneck  # noqa: E402


def _randomise_batch_norms(model, seed: int = 0) -> None:
    """Moving statistics, scale and offset far from their initial 0 / 1, so folding matters."""
    rng = np.random.default_rng(seed)
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, weight.shape) if "variance" in weight.path
                               else rng.uniform(0.5, 1.5, weight.shape) if "gamma" in weight.path
                               else rng.normal(0.0, 0.2, weight.shape) for weight in layer.weights])


def _calibrate_batch_norms(model, images) -> None:
    """Moving statistics from one batch (momentum 0), so a deep random network keeps a signal
    that depends on its input, then scale and offset drawn near 1 and 0."""
    batch_norms = [layer for layer in iter_layers(model)
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    rng = np.random.default_rng(len(batch_norms))
    for layer in batch_norms:
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
        layer.beta.assign(rng.normal(0.0, 0.2, layer.beta.shape))


def _count(model, layer_class) -> int:
    return sum(isinstance(layer, layer_class) for layer in iter_layers(model))


def _small_network():
    """Every foldable pattern, and four that must stay: a convolution read twice, a batch norm
    after a convolution's own activation, a padding that is not "same", and a batch norm over
    the channels of a channels-first convolution."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv_relu")(x)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)  # "same" for stride 2 on 16
    x = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, name="depthwise")(x)
    x = keras.layers.BatchNormalization(center=False, name="depthwise_bn")(x)
    branch = keras.layers.Conv2D(16, 1, name="read_twice")(x)
    x = keras.layers.Add(name="add")([keras.layers.BatchNormalization(name="read_twice_bn")(branch),
                                      branch])
    x = keras.layers.Conv2D(16, 1, activation="relu", name="activated")(x)
    x = keras.layers.BatchNormalization(name="after_activation_bn")(x)  # not affine in the kernel
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="not_same_pad")(x)  # "same" is (0, 1)
    x = keras.layers.Conv2D(4, 3, strides=2, name="after_other_pad")(x)
    x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)
    x = keras.layers.Conv2D(4, 1, data_format="channels_first", name="channels_first")(x)
    x = keras.layers.BatchNormalization(axis=1, name="channels_first_bn")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(5, use_bias=False, name="dense")(x)
    x = keras.layers.BatchNormalization(scale=False, name="dense_bn")(x)
    return keras.Model(inputs, x, name="small")


def test_folding_keeps_the_inference_function_and_removes_exactly_the_foldable_layers():
    model = _small_network()
    _randomise_batch_norms(model)
    weights_before = [weight.copy() for weight in model.get_weights()]
    images = np.random.default_rng(1).uniform(0, 255, (6, 16, 16, 3)).astype("float32")
    expected = model.predict_on_batch(images)

    folded = folding.fold_for_inference(model)

    names = {layer.name for layer in folded.layers}
    assert {"conv_bn", "depthwise_bn", "dense_bn", "pad"}.isdisjoint(names)
    assert {"read_twice_bn", "after_activation_bn", "not_same_pad", "channels_first_bn"} <= names
    assert folded.get_layer("conv").use_bias and folded.get_layer("depthwise").padding == "same"
    assert folded.get_layer("add") is model.get_layer("add")  # unchanged layers are shared
    np.testing.assert_allclose(folded.predict_on_batch(images), expected, rtol=1e-5, atol=1e-4)
    for before, after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the original is untouched


def test_folded_weights_match_the_batch_norm_on_every_output_channel():
    convolution = keras.layers.DepthwiseConv2D(3, depth_multiplier=3, use_bias=True)
    batch_norm = keras.layers.BatchNormalization(epsilon=0.01)
    images = np.random.default_rng(2).normal(size=(2, 5, 5, 2)).astype("float32")
    batch_norm(convolution(images))
    rng = np.random.default_rng(3)
    convolution.set_weights([rng.normal(size=weight.shape) for weight in convolution.get_weights()])
    _randomise_batch_norms(keras.Sequential([batch_norm]))
    kernel, bias = folding.folded_weights(convolution, batch_norm)
    folded = keras.layers.DepthwiseConv2D(3, depth_multiplier=3)
    folded(images)
    folded.set_weights([kernel, bias])
    np.testing.assert_allclose(folded(images), batch_norm(convolution(images), training=False),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, kernel_size, stride", [(16, 3, 2), (15, 3, 2), (9, 5, 1), (8, 4, 3)])
def test_same_padding_is_the_zero_padding_keras_same_convolutions_use(size, kernel_size, stride):
    image = np.random.default_rng(size).normal(size=(1, size, size, 2)).astype("float32")
    same = keras.layers.Conv2D(3, kernel_size, strides=stride, padding="same")
    expected = same(image)
    pads = folding.same_padding(size, kernel_size, stride)
    padded = keras.layers.ZeroPadding2D((pads, pads))(image)
    valid = keras.layers.Conv2D(3, kernel_size, strides=stride, padding="valid")
    valid(padded)
    valid.set_weights(same.get_weights())
    np.testing.assert_allclose(valid(padded), expected, rtol=1e-5, atol=1e-5)


def test_mobilenet_v2_folds_every_batch_norm_and_padding_into_its_convolutions():
    base = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False,
                                          weights=None, pooling="avg")
    images = np.random.default_rng(5).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    _calibrate_batch_norms(base, images)
    folded = folding.fold_for_inference(base)
    assert _count(base, keras.layers.BatchNormalization) == 52
    assert _count(folded, keras.layers.BatchNormalization) == 0
    assert _count(folded, keras.layers.ZeroPadding2D) == 0
    expected = base.predict_on_batch(images)
    assert np.abs(expected - expected[0]).max() > 0.1 * np.abs(expected).max()  # input matters
    np.testing.assert_allclose(folded.predict_on_batch(images), expected, rtol=1e-4,
                               atol=1e-4 * float(np.abs(expected).max()))


def test_nested_functional_models_fold_and_other_models_come_back_unchanged():
    inner_input = keras.Input((8, 8, 1))
    inner_output = keras.layers.BatchNormalization(name="inner_bn")(
        keras.layers.Conv2D(2, 3, name="inner_conv")(inner_input))
    inner = keras.Model(inner_input, inner_output, name="inner")
    outer_input = keras.Input((8, 8, 1))
    outer = keras.Model(outer_input, keras.layers.Flatten()(inner(outer_input)), name="outer")
    _randomise_batch_norms(outer)
    images = np.random.default_rng(6).normal(size=(3, 8, 8, 1)).astype("float32")
    folded = folding.fold_for_inference(outer)
    assert _count(folded, keras.layers.BatchNormalization) == 0
    np.testing.assert_allclose(folded.predict_on_batch(images), outer.predict_on_batch(images),
                               rtol=1e-5, atol=1e-5)
    sequential = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                                   keras.layers.BatchNormalization()])
    assert folding.fold_for_inference(sequential) is sequential
    no_batch_norm = keras.Model(outer_input, keras.layers.Conv2D(2, 3)(outer_input))
    assert folding.fold_for_inference(no_batch_norm) is no_batch_norm


@pytest.mark.parametrize("mode, axis", [("horizontal", 2), ("vertical", 1),
                                        ("horizontal_and_vertical", (1, 2))])
def test_a_flip_in_the_warp_mirrors_some_warped_images_and_keeps_the_warp_draws(mode, axis):
    images = np.random.default_rng(7).uniform(0, 255, (32, 12, 12, 2)).astype("float32")
    warped = keras.ops.convert_to_numpy(
        RandomAffine(rotation_degrees=20, shift=0.1, seed=3)(images, training=True))
    flipped = keras.ops.convert_to_numpy(
        RandomAffine(rotation_degrees=20, shift=0.1, flip=mode, seed=3)(images, training=True))
    mirror = np.flip(warped, axis=axis)
    same = np.abs(flipped - warped).max(axis=(1, 2, 3))
    mirrored = np.abs(flipped - mirror).max(axis=(1, 2, 3))
    assert np.minimum(same, mirrored).max() < 0.05  # each image is the warp or its mirror
    assert 4 <= int(np.sum(mirrored < same)) <= 28  # about half mirrored (fixed seed)
    assert not np.array_equal(images, keras.ops.convert_to_numpy(
        RandomAffine(flip=mode, seed=1)(images, training=True)))  # a flip alone is not identity


def test_flip_option_is_checked_and_saved():
    with pytest.raises(ValueError, match="flip must be one of"):
        RandomAffine(flip="diagonal")
    layer = RandomAffine(rotation_degrees=5, flip="vertical", seed=2)
    assert RandomAffine.from_config(layer.get_config()).flip == "vertical"
    assert RandomAffine.from_config({"rotation_degrees": 5}).flip == "none"  # older saved configs


def test_flip_into_warp_folds_only_a_flip_right_after_the_warp():
    augmentation = build_augmentation({"rotation_degrees": 20, "flip": "horizontal"})
    assert [type(layer).__name__ for layer in augmentation.layers] == ["RandomAffine", "RandomFlip"]
    folded = flip_into_warp(augmentation)
    assert [type(layer).__name__ for layer in folded.layers] == ["RandomAffine"]
    assert folded.layers[0].flip == "horizontal" and folded.layers[0].rotation_degrees == 20
    assert augmentation.layers[0].flip == "none"  # the model's own layers are untouched
    flip_only = build_augmentation({"flip": "horizontal"})
    assert flip_into_warp(flip_only) is flip_only  # no warp to fold it into
    assert flip_into_warp(augmentation.layers[0]) is augmentation.layers[0]


def test_compute_features_folds_the_base_flips_in_the_warp_and_pads_the_last_batch():
    # A MobileNetV2 base with batch norm and paddings to fold, 10 images in batches of 4 (the
    # last one padded), and an augmentation of a no-op warp then a flip: each copy must be the
    # unfolded model's clean features of the image or of its mirror image.
    model = transfer.build_transfer_model(
        2, backbone="mobilenetv2", alpha=0.35, image_size=32, head=transfer.POOLING_HEAD,
        freeze_base=False,  # so that _calibrate_batch_norms can set the moving statistics
        augmentation=keras.Sequential([RandomAffine(seed=5), keras.layers.RandomFlip("horizontal")],
                                      name="augmentation"))
    extractor = transfer.feature_extractor(model, pooled=True)
    images = np.random.default_rng(9).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    _calibrate_batch_norms(extractor, [images.astype("float32")])
    clean = extractor.predict_on_batch(images.astype("float32"))
    mirrored = extractor.predict_on_batch(images[:, :, ::-1].astype("float32"))
    tolerance = 1e-2 * max(1.0, float(np.abs(clean).max()))
    assert np.abs(clean - mirrored).max() > 10 * tolerance  # the mirror image gives other features
    np.testing.assert_allclose(bottleneck.compute_features(extractor, images, batch_size=4)[0],
                               clean, atol=tolerance)
    copies = bottleneck.compute_features(extractor, images, batch_size=4, copies=2,
                                         augmentation=model.get_layer("augmentation"))
    was_mirrored = []
    for copy in copies.astype("float32"):
        for index, features in enumerate(copy):
            is_clean = np.abs(features - clean[index]).max() <= tolerance
            is_mirrored = np.abs(features - mirrored[index]).max() <= tolerance
            assert is_clean or is_mirrored
            was_mirrored.append(is_mirrored and not is_clean)
    assert 0 < sum(was_mirrored) < len(was_mirrored)


def test_a_frozen_only_copy_trains_the_original_and_computes_its_function_in_training_too():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="frozen_conv")(inputs)
    x = keras.layers.BatchNormalization(name="frozen_bn")(x)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="trained_conv")(x)
    x = keras.layers.BatchNormalization(name="trained_bn")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="classifier")(
        keras.layers.GlobalAveragePooling2D(name="pool")(x))
    model = keras.Model(inputs, outputs)
    _randomise_batch_norms(model, seed=10)
    for name in ("frozen_conv", "frozen_bn"):
        model.get_layer(name).trainable = False
    frozen_before = [weight.copy() for weight in model.get_layer("frozen_conv").get_weights()]
    trained_before = model.get_layer("trained_conv").get_weights()[0].copy()
    images = np.random.default_rng(11).normal(size=(16, 8, 8, 2)).astype("float32")
    labels = np.arange(16) % 2

    copy = folding.fold_for_inference(model, frozen_only=True)

    names = {layer.name for layer in copy.layers}
    assert "frozen_bn" not in names and "trained_bn" in names
    assert copy.get_layer("trained_conv") is model.get_layer("trained_conv")
    assert not copy.get_layer("frozen_conv").trainable
    assert len(copy.trainable_weights) == len(model.trainable_weights)
    # A frozen batch norm runs in inference mode while training too, so folding it is exact
    # there as well (the trainable batch norm uses batch statistics in both models).
    np.testing.assert_allclose(copy(images, training=True), model(images, training=True),
                               rtol=1e-5, atol=1e-5)
    copy.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    copy.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    assert not np.allclose(model.get_layer("trained_conv").get_weights()[0], trained_before)
    for before, after in zip(frozen_before, model.get_layer("frozen_conv").get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(copy.predict_on_batch(images), model.predict_on_batch(images),
                               rtol=1e-5, atol=1e-5)
    for layer in model.layers:
        layer.trainable = True
    assert folding.fold_for_inference(model, frozen_only=True) is model  # nothing frozen


def _pooled_network(block_order: str = "pool-first"):
    """Two conv stages; with "pool-first" each convolution feeds only its max pooling. A third
    convolution with its own activation, and a fourth read twice, must keep their bias."""
    inputs = keras.Input((12, 12, 2), name="image")
    x = inputs
    for index, filters in enumerate((4, 6), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{index}",
                                kernel_initializer=keras.initializers.GlorotUniform(seed=index))(x)
        pool = keras.layers.MaxPooling2D(2, name=f"pool{index}")
        if block_order == "pool-first":
            x = pool(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        if block_order != "pool-first":
            x = pool(x)
    activated = keras.layers.Conv2D(6, 1, activation="relu", name="activated",
                                    kernel_initializer=keras.initializers.GlorotUniform(seed=3))(x)
    x = keras.layers.MaxPooling2D(1, name="pool_activated")(activated)
    twice = keras.layers.Conv2D(6, 1, name="read_twice",
                                kernel_initializer=keras.initializers.GlorotUniform(seed=4))(x)
    x = keras.layers.Add(name="add")([keras.layers.MaxPooling2D(1, name="pool_twice")(twice), twice])
    outputs = keras.layers.Dense(3, name="predictions", kernel_initializer=keras.initializers.
                                 GlorotUniform(seed=5))(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inputs, outputs, name="pooled")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # biases far from their initial zeros, so moving them matters,
        if getattr(layer, "bias", None) is not None:  # and positive, so no ReLU is dead
            layer.bias.assign(rng.uniform(0.2, 1.0, layer.bias.shape))
    return model


def test_bias_after_pooling_moves_exactly_the_pooled_biases_and_keeps_function_and_gradients():
    import tensorflow as tf

    from core.models.layers import ConvolutionWithoutBias, PoolingWithBias

    model = _pooled_network()
    copy = folding.bias_after_pooling(model)
    assert copy is not model
    assert [layer.name for layer in copy.layers if isinstance(layer, ConvolutionWithoutBias)] == [
        "conv1_without_bias", "conv2_without_bias"]
    assert [layer.name for layer in copy.layers if isinstance(layer, PoolingWithBias)] == [
        "pool1_with_bias", "pool2_with_bias"]
    for name in ("activated", "read_twice", "predictions"):  # shared, bias in place
        assert copy.get_layer(name) is model.get_layer(name)
    # The copy owns no weights of its own: the same variables, each once.
    assert sorted(id(variable) for variable in copy.trainable_variables) == sorted(
        id(variable) for variable in model.trainable_variables)
    images = np.random.default_rng(1).normal(0.0, 1.0, (8, 12, 12, 2)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(images)),
                               keras.ops.convert_to_numpy(model(images)), rtol=1e-5, atol=1e-5)

    def gradients(network):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(network(images)))
        return {variable.path: gradient.numpy() for variable, gradient in
                zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))}

    moved, reference = gradients(copy), gradients(model)
    assert set(moved) == set(reference)
    for path, gradient in reference.items():
        assert np.abs(gradient).max() > 0, path
        np.testing.assert_allclose(moved[path], gradient, rtol=1e-4, atol=1e-4, err_msg=path)


def test_bias_after_pooling_leaves_textbook_stages_and_other_models_alone():
    model = _pooled_network("textbook")  # conv, activation, pool: the activation is in between
    assert folding.bias_after_pooling(model) is model
    sequential = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                                   keras.layers.MaxPooling2D(2)])
    assert folding.bias_after_pooling(sequential) is sequential


def test_fitting_the_copy_trains_the_model_that_is_saved():
    model = _pooled_network()
    copy = folding.bias_after_pooling(model)
    copy.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [weight.copy() for weight in model.get_weights()]
    rng = np.random.default_rng(2)
    copy.fit(rng.normal(0.0, 1.0, (16, 12, 12, 2)).astype("float32"),
             rng.normal(0.0, 1.0, (16, 3)).astype("float32"), epochs=1, verbose=0)
    changed = [not np.array_equal(old, new) for old, new in zip(before, model.get_weights())]
    assert all(changed), changed  # every kernel and bias, the moved biases included
