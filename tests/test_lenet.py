"""LeNet presets, builder, custom layers, config resolution and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from core.models import lenet
from core.training import lenet_family, trainer


def _build(preset: str):
    config = lenet_family.resolve_config({"model": "lenet5", "preset": preset})
    channels = 1 if config["preprocessing"]["color"] == "grayscale" else 3
    return lenet.build_from_config(config, 43, (32, 32, channels)), config


def test_seed_preset_is_the_study_lenet():
    model, config = _build("seed")
    layers = {layer.name: layer for layer in model.layers}
    assert layers["block1_conv"].filters == 6 and layers["block1_conv"].kernel_size == (5, 5)
    assert layers["block2_conv"].filters == 16 and layers["block2_conv"].kernel_size == (5, 5)
    assert [layers[name].units for name in ("fc1", "fc2", "predictions")] == [120, 84, 43]
    assert layers["fc1_dropout"].rate == pytest.approx(0.3)  # keep probability 0.7
    assert type(layers["block1_pool"]).__name__ == "MaxPooling2D"
    # Grayscale input: C1 has 6 * (5 * 5 * 1) + 6 = 156 parameters (456 on RGB).
    assert model.count_params() == 64_511
    assert (config["epochs"], config["batch_size"], config["optimizer"], config["learning_rate"]) == (
        20, 128, "adam", 0.001)
    assert config["preprocessing"]["equalization"] == "clahe"
    assert config["preprocessing"]["color"] == "grayscale"
    assert config["preprocessing"]["center_crop"] == lenet.SEED_CENTER_CROP == 0.8  # GTSRB's margin
    assert config["augmentation"]["rotation_degrees"] > 0 and config["random_blur"] > 0
    assert "rescaling" in layers  # normalisation inside the model


def test_classic_preset_uses_tanh_and_average_pooling():
    model, config = _build("classic")
    layers = {layer.name: layer for layer in model.layers}
    assert type(layers["block1_pool"]).__name__ == "AveragePooling2D"
    assert layers["block1_activation"].activation.__name__ == "tanh"
    assert config["preprocessing"]["color"] == "grayscale"


def test_plus_preset_has_batch_norm_and_multi_scale_features():
    model, config = _build("plus")
    names = {layer.name for layer in model.layers}
    assert {"block1_bn", "multi_scale_features", "block1_skip_pool", "block2_skip_pool"} <= names
    assert config["preprocessing"] == {"image_size": 32, "color": "rgb", "equalization": "clahe",
                                       "blur": 0, "center_crop": 1.0}
    assert config["lr_schedule"] == "cosine"
    assert model.output_shape == (None, 43)


def _batch_norm_pair(input_shape, scale: bool, center: bool):
    """Keras' BatchNormalization and FusedBatchNormalization with the same random weights."""
    import keras

    from core.models.layers import FusedBatchNormalization

    rng = np.random.default_rng(7)
    settings = {"momentum": 0.9, "epsilon": 1e-3, "scale": scale, "center": center}
    reference, fused = keras.layers.BatchNormalization(**settings), FusedBatchNormalization(**settings)
    for layer in (reference, fused):
        layer.build(input_shape)
    weights = [rng.normal(1.0, 0.5, weight.shape).astype("float32") for weight in reference.get_weights()]
    weights[-1] = np.abs(weights[-1])  # the moving variance
    reference.set_weights(weights)
    fused.set_weights(weights)
    return reference, fused


@pytest.mark.parametrize("input_shape, scale, center", [
    ((16, 6, 6, 5), True, True), ((16, 6, 6, 5), False, False), ((32, 7), True, True)])
def test_fused_batch_norm_trains_and_infers_as_keras_batch_normalization(input_shape, scale, center):
    import tensorflow as tf

    reference, fused = _batch_norm_pair(input_shape, scale, center)
    rng = np.random.default_rng(8)
    inputs = tf.constant(rng.normal(3.0, 2.0, input_shape).astype("float32"))
    upstream = tf.constant(rng.normal(0.0, 1.0, input_shape).astype("float32"))
    results = []
    for layer in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            loss = tf.reduce_sum(outputs * upstream)
        gradients = tape.gradient(loss, [inputs, *layer.trainable_weights])
        results.append((outputs.numpy(), [gradient.numpy() for gradient in gradients],
                        [weight.numpy() for weight in layer.non_trainable_weights]))
    (reference_outputs, reference_gradients, reference_moving), (outputs, gradients, moving) = results
    assert np.abs(reference_outputs).max() > 0.5
    np.testing.assert_allclose(outputs, reference_outputs, atol=2e-5, rtol=0)
    assert len(gradients) == len(reference_gradients) == 1 + 2 * scale
    for gradient, reference_gradient in zip(gradients, reference_gradients):
        np.testing.assert_allclose(gradient, reference_gradient, atol=2e-4, rtol=1e-5)
    # Both moved their moving statistics (biased batch variance, momentum 0.9) alike.
    np.testing.assert_allclose(moving[0], 0.9 * _batch_norm_pair(input_shape, scale, center)[0]
                               .moving_mean.numpy() + 0.1 * inputs.numpy().reshape(-1, input_shape[-1])
                               .mean(axis=0), atol=1e-5)
    for weight, reference_weight in zip(moving, reference_moving):
        np.testing.assert_allclose(weight, reference_weight, atol=1e-5, rtol=1e-6)
    np.testing.assert_allclose(fused(inputs, training=False).numpy(),
                               reference(inputs, training=False).numpy(), atol=1e-5, rtol=1e-6)


def test_fused_batch_norm_runs_one_fused_kernel_in_training_only():
    import tensorflow as tf

    _, fused = _batch_norm_pair((8, 4, 4, 3), True, True)
    _, fused_dense = _batch_norm_pair((8, 3), True, True)

    def op_types(layer, shape, training):
        function = tf.function(lambda values: layer(values, training=training))
        graph = function.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
        return {operation.type for operation in graph.get_operations()}

    assert "FusedBatchNormV3" in op_types(fused, (8, 4, 4, 3), True)
    assert "FusedBatchNormV3" in op_types(fused_dense, (None, 3), True)
    assert "FusedBatchNormV3" not in op_types(fused, (8, 4, 4, 3), False)
    # A frozen layer normalises with its moving statistics, as Keras' does.
    fused.trainable = False
    assert "FusedBatchNormV3" not in op_types(fused, (8, 4, 4, 3), True)


def test_the_plus_network_normalises_with_fused_batch_norm_and_survives_saving(tmp_path):
    import keras

    from core.models import register_custom_layers, set_batch_norm_momentum
    from core.models.layers import FusedBatchNormalization

    model, _ = _build("plus")
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.name for layer in batch_norms} == {"block1_bn", "block2_bn", "block3_bn", "fc1_bn"}
    assert all(type(layer) is FusedBatchNormalization for layer in batch_norms)
    set_batch_norm_momentum(model, 0.5)
    assert {layer.momentum for layer in batch_norms} == {0.5}
    images = np.random.default_rng(9).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "plus.keras")
    register_custom_layers()
    loaded = keras.saving.load_model(tmp_path / "plus.keras", safe_mode=True)
    assert type(loaded.get_layer("block1_bn")) is FusedBatchNormalization
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)


def _stage_layer_order(model, stage: int) -> list[str]:
    prefix = f"block{stage}_"
    return [layer.name[len(prefix):] for layer in model.layers
            if layer.name.startswith(prefix) and "skip" not in layer.name]


def test_auto_block_order_pools_first_where_that_computes_the_same_network():
    import keras

    def build(block_order, **settings):
        keras.utils.set_random_seed(3)
        return lenet.build_lenet(5, (32, 32, 1), conv_filters=(4, 8), dense_units=(16,),
                                 block_order=block_order, dropout=0.0, **settings)

    textbook, auto = build("textbook"), build("auto")
    assert _stage_layer_order(textbook, 1) == ["conv", "activation", "pool"]
    assert _stage_layer_order(auto, 1) == ["conv", "pool", "activation"]
    auto.set_weights(textbook.get_weights())
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 1)).astype("float32")
    labels = np.arange(16) % 5
    np.testing.assert_array_equal(auto.predict(images, verbose=0), textbook.predict(images, verbose=0))
    # The gradients agree too: one SGD step from the same weights lands on the same weights.
    for model in (textbook, auto):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.train_on_batch(images, labels)
    for after_textbook, after_auto in zip(textbook.get_weights(), auto.get_weights()):
        np.testing.assert_allclose(after_auto, after_textbook, rtol=1e-4, atol=1e-6)
    # With batch norm the statistics would change, and with average pooling the activation does
    # not commute: "auto" keeps the textbook order there; "pool-first" is asked for explicitly.
    assert _stage_layer_order(build("auto", batch_norm=True), 2) == ["conv", "bn", "activation", "pool"]
    assert _stage_layer_order(build("auto", pooling="average"), 1) == ["conv", "activation", "pool"]
    assert _stage_layer_order(build("pool-first", batch_norm=True), 2) == ["conv", "pool", "bn", "activation"]


def test_block_order_is_checked():
    with pytest.raises(ValueError, match=r"block_order must be one of \('auto', 'textbook', 'pool-first'\), received 'last'"):
        lenet.build_lenet(5, (32, 32, 1), block_order="last")
    with pytest.raises(ValueError, match="'pool-first' needs max pooling"):
        lenet.build_lenet(5, (32, 32, 1), pooling="average", block_order="pool-first")
    with pytest.raises(ValueError, match="block_order must be one of"):
        lenet_family.resolve_config({"model": "lenet5", "block_order": "last"})
    with pytest.raises(ValueError, match=r"block_order 'pool-first' needs max pooling .*, received pooling 'average'"):
        lenet_family.resolve_config({"model": "lenet5", "preset": "classic", "block_order": "pool-first"})
    assert lenet_family.resolve_config({"model": "lenet5"})["block_order"] == "auto"


def test_random_blur_blurs_only_in_training_and_survives_safe_mode_saving(tmp_path):
    import keras

    from core.models import register_custom_layers

    register_custom_layers()
    from core.models.layers import RandomGaussianBlur

    images = np.zeros((4, 9, 9, 1), dtype="float32")
    images[:, 4, 4, 0] = 255.0
    layer = RandomGaussianBlur(probability=1.0, seed=1)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    blurred = keras.ops.convert_to_numpy(layer(images, training=True))
    assert blurred[0, 4, 4, 0] < 255.0 and blurred[0, 4, 5, 0] > 0.0
    assert blurred.sum() == pytest.approx(images.sum(), rel=1e-4)  # a normalised kernel
    model = keras.Sequential([keras.Input((9, 9, 1)), RandomGaussianBlur(probability=0.5, name="blur")])
    model.save(tmp_path / "blur.keras")
    loaded = keras.saving.load_model(tmp_path / "blur.keras", safe_mode=True)
    assert loaded.get_layer("blur").probability == 0.5
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        RandomGaussianBlur(kernel_size=4)


@pytest.mark.parametrize("shape", [(3, 32, 32, 1), (2, 9, 11, 3)])
def test_random_blur_matrix_products_equal_the_depthwise_gaussian_convolution(shape):
    import keras

    from core.models.layers import RandomGaussianBlur, gaussian_kernel_1d

    images = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
    layer = RandomGaussianBlur(probability=1.0, kernel_size=5, sigma=1.2)
    weights = np.asarray(gaussian_kernel_1d(5, 1.2), np.float32)
    kernel = np.tile(np.outer(weights, weights).reshape(5, 5, 1, 1), (1, 1, shape[-1], 1))
    expected = keras.layers.DepthwiseConv2D(5, padding="same", use_bias=False,
                                            depthwise_initializer=keras.initializers.Constant(kernel))
    expected = keras.ops.convert_to_numpy(expected(images))
    blurred = keras.ops.convert_to_numpy(layer(images, training=True))
    np.testing.assert_allclose(blurred, expected, atol=1e-3)  # pixel values up to 255
    assert np.abs(blurred - images).max() > 10  # it did blur


def test_resize_matrices_match_opencv_area_shrink_and_linear_enlarge():
    import cv2

    from core.models.layers import area_shrink_matrix, linear_enlarge_matrix

    signal = np.random.default_rng(1).uniform(0, 255, (1, 32)).astype(np.float32)
    for size in (1, 7, 16, 21, 27, 31, 32):
        shrunk = cv2.resize(signal, (size, 1), interpolation=cv2.INTER_AREA)[0]
        np.testing.assert_allclose(area_shrink_matrix(32, size) @ signal[0], shrunk, atol=1e-3)
        small = signal[:, :size].copy()
        enlarged = cv2.resize(small, (32, 1), interpolation=cv2.INTER_LINEAR)[0]
        np.testing.assert_allclose(linear_enlarge_matrix(size, 32) @ small[0], enlarged, atol=1e-3)
    with pytest.raises(ValueError, match=r"target must be in \[1, 32\], received 33"):
        area_shrink_matrix(32, 33)


def test_random_low_resolution_matches_an_opencv_shrink_and_enlarge_and_survives_saving(tmp_path):
    import cv2
    import keras

    from core.models import register_custom_layers

    register_custom_layers()
    from core.models.layers import RandomLowResolution

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 32, 32, 1)).astype("float32")
    layer = RandomLowResolution(probability=1.0, min_scale=0.5, levels=4, seed=3)
    assert layer.sizes(32) == [16, 21, 27, 31]
    assert RandomLowResolution(min_scale=0.9, levels=3).sizes(8) == [7, 7, 7]
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    coarse = keras.ops.convert_to_numpy(layer(images, training=True))
    # Every image is what OpenCV gives for one of the sizes (the data pipeline's own resizes).
    candidates = [np.stack([cv2.resize(cv2.resize(image[..., 0], (size, size), interpolation=cv2.INTER_AREA),
                                       (32, 32), interpolation=cv2.INTER_LINEAR) for image in images])
                  for size in layer.sizes(32)]
    matches = [[np.allclose(coarse[index, ..., 0], candidate[index], atol=1e-2) for candidate in candidates]
               for index in range(len(images))]
    assert all(sum(row) == 1 for row in matches)
    assert {row.index(True) for row in matches} == {0, 1, 2, 3}  # 64 draws reach every size
    # Shrinking removes fine detail: the pixel-to-pixel differences of noise shrink a lot.
    assert np.abs(np.diff(coarse, axis=2)).mean() < 0.7 * np.abs(np.diff(images, axis=2)).mean()
    half = keras.ops.convert_to_numpy(RandomLowResolution(probability=0.5, seed=3)(images, training=True))
    unchanged = [np.array_equal(half[index], images[index]) for index in range(len(images))]
    assert 16 <= sum(unchanged) <= 48
    wide = rng.uniform(0, 255, (8, 12, 20, 3)).astype("float32")  # not square, 3 channels
    assert keras.ops.convert_to_numpy(layer(wide, training=True)).shape == wide.shape
    model = keras.Sequential([keras.Input((32, 32, 1)), RandomLowResolution(0.25, name="coarse")])
    model.save(tmp_path / "coarse.keras")
    loaded = keras.saving.load_model(tmp_path / "coarse.keras", safe_mode=True)
    assert (loaded.get_layer("coarse").probability, loaded.get_layer("coarse").levels) == (0.25, 4)
    with pytest.raises(ValueError, match=r"min_scale must be in \(0, 1\), received 0"):
        RandomLowResolution(min_scale=0)
    with pytest.raises(ValueError, match="levels must be an integer >= 1, received 0"):
        RandomLowResolution(levels=0)
    with pytest.raises(ValueError, match=r"probability must be a number in \[0.0, 1.0\], received 1.5"):
        RandomLowResolution(probability=1.5)


def test_random_occlusion_covers_one_bounded_rectangle_per_chosen_image_and_survives_saving(tmp_path):
    import keras

    from core.models import register_custom_layers

    register_custom_layers()
    from core.models.layers import RandomOcclusion

    images = np.full((256, 32, 32, 1), 100.0, np.float32)
    layer = RandomOcclusion(probability=1.0, min_area=0.02, max_area=0.2, max_aspect=3.0, seed=4)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    occluded = keras.ops.convert_to_numpy(layer(images, training=True))
    assert occluded.min() >= 0.0 and occluded.max() <= 255.0
    for image in occluded[..., 0]:
        rows, columns = np.nonzero(image != 100.0)
        # One axis-aligned rectangle: its bounding box is all noise (no noise value is exactly 100).
        height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
        assert len(rows) == height * width
        # Area 2-20 % of 1,024 pixels (rounding to whole pixels adds at most a row and a column);
        # height-to-width ratio at most 3 (again up to a pixel of rounding).
        assert 0.02 * 1024 - height - width <= len(rows) <= 0.2 * 1024 + height + width + 1
        assert max(height / width, width / height) <= 3.0 * (1 + 1 / min(height, width)) + 1e-6
    areas = (occluded[..., 0] != 100.0).reshape(len(images), -1).mean(axis=1)
    assert 0.09 <= areas.mean() <= 0.13  # uniform in [0.02, 0.2]: mean 0.11
    half = keras.ops.convert_to_numpy(RandomOcclusion(probability=0.5, seed=4)(images, training=True))
    untouched = [np.array_equal(half[index], images[index]) for index in range(len(images))]
    assert 96 <= sum(untouched) <= 160
    colour = np.random.default_rng(0).uniform(0, 255, (4, 12, 20, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(layer(colour, training=True)).shape == colour.shape
    model = keras.Sequential([keras.Input((32, 32, 1)), RandomOcclusion(0.25, name="occlusion")])
    model.save(tmp_path / "occlusion.keras")
    loaded = keras.saving.load_model(tmp_path / "occlusion.keras", safe_mode=True).get_layer("occlusion")
    assert (loaded.probability, loaded.min_area, loaded.max_area, loaded.max_aspect) == (0.25, 0.02, 0.2, 3.0)
    with pytest.raises(ValueError, match=r"min_area must be in \(0, 1\], received 0"):
        RandomOcclusion(min_area=0)
    with pytest.raises(ValueError, match=r"max_area must be a number in \[0.3, 1.0\], received 0.2"):
        RandomOcclusion(min_area=0.3, max_area=0.2)
    with pytest.raises(ValueError, match=r"max_aspect must be a number in \[1.0, 10.0\], received 0.5"):
        RandomOcclusion(max_aspect=0.5)


def test_the_seed_crop_applies_to_gtsrb_unless_a_config_says_otherwise():
    def crop(**config):
        return lenet_family.resolve_config({"model": "lenet5", "preset": "seed", **config})[
            "preprocessing"]["center_crop"]

    assert crop() == crop(dataset="gtsrb") == lenet.SEED_CENTER_CROP
    assert crop(dataset="synthetic-signs") == 1.0  # no GTSRB margin to trim
    assert crop(dataset="synthetic-signs", preprocessing={"center_crop": 0.9}) == 0.9
    assert crop(preprocessing={"center_crop": 1.0}) == 1.0
    resolved = lenet_family.resolve_config({"model": "lenet5", "preset": "seed",
                                            "dataset": "synthetic-signs"})
    assert lenet_family.resolve_config(resolved) == resolved


def test_resolve_config_merges_specs_and_rejects_bad_values():
    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "image_size": 48,
                                          "augmentation": {"zoom": 0.1}, "epochs": 3})
    assert config["preprocessing"]["image_size"] == 48
    assert config["augmentation"]["zoom"] == 0.1 and config["augmentation"]["rotation_degrees"] == 10.0
    assert config["epochs"] == 3 and config["dataset"] == "gtsrb" and config["distribute"] == "none"
    assert lenet_family.resolve_config(config) == config  # idempotent
    with pytest.raises(ValueError, match="unknown LeNet setting"):
        lenet_family.resolve_config({"model": "lenet5", "epoch": 3})
    with pytest.raises(ValueError, match="applies to the vgg16"):
        lenet_family.resolve_config({"model": "lenet5", "strategy": "fine-tune"})
    with pytest.raises(ValueError, match="preset must be one of"):
        lenet_family.resolve_config({"model": "lenet5", "preset": "huge"})
    with pytest.raises(ValueError, match="too small"):
        lenet_family.resolve_config({"model": "lenet5", "image_size": 8})
    with pytest.raises(ValueError, match="dropout"):
        lenet_family.resolve_config({"model": "lenet5", "dropout": 1.5})


def test_score_predictions_builds_confusion_matrix_and_mistakes():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8],
                              [0.3, 0.6, 0.1]])
    labels = np.array([0, 1, 1, 2, 0])
    scores = trainer.score_predictions(probabilities, labels, 3, file_names=list("abcde"))
    assert scores["accuracy"] == pytest.approx(0.6)
    assert scores["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert scores["per_class_accuracy"] == [0.5, 0.5, 1.0]
    assert [item["file_name"] for item in scores["misclassified"]] == ["c", "e"]  # most confident first
    assert scores["misclassified"][0] == {"index": 2, "file_name": "c", "true": 1, "predicted": 0,
                                          "confidence": 0.6}
    expected_loss = -np.mean(np.log([0.9, 0.7, 0.3, 0.8, 0.3]))
    assert scores["loss"] == pytest.approx(expected_loss)


def test_make_strategy_rejects_unknown_options_and_other_backends(monkeypatch):
    import keras

    assert trainer.make_strategy({"distribute": "none"}) is None
    with pytest.raises(ValueError, match="distribute must be one of"):
        trainer.make_strategy({"distribute": "everywhere"})
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="needs the TensorFlow Keras backend"):
        trainer.make_strategy({"distribute": "mirrored"})


def test_learning_rate_schedules():
    config = lenet.preset_config("plus")
    schedule = lenet.learning_rate_schedule(config, steps_per_epoch=10)
    assert float(schedule(0)) == pytest.approx(config["learning_rate"])
    assert float(schedule(config["epochs"] * 10)) == pytest.approx(0.0, abs=1e-9)
    step = lenet.learning_rate_schedule(dict(config, lr_schedule="step", epochs=4), steps_per_epoch=10)
    assert [round(float(step(s)), 6) for s in (0, 25, 35)] == [0.002, 0.0002, 0.00002]


def test_seed_preset_averages_its_weights_and_the_saved_model_holds_the_average():
    import keras

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed"})
    assert config["weight_averaging"] == pytest.approx(0.999)
    assert config["optimizer"] == "adam" and config["learning_rate"] == pytest.approx(0.001)
    optimizer = lenet.make_optimizer(config, steps_per_epoch=10)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.999)
    assert not lenet.make_optimizer({**config, "weight_averaging": 0.0}, 10).use_ema
    with pytest.raises(ValueError, match="weight_averaging must be a number in"):
        lenet_family.resolve_config({"model": "lenet5", "weight_averaging": 1.0})

    # After fit the model holds the moving average, not the last step's weights: with momentum
    # 0.5 over a few steps from a known start, the two differ.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=lenet.make_optimizer({**config, "weight_averaging": 0.5}, 4),
                  loss="sparse_categorical_crossentropy")
    inputs = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    labels = (inputs[:, 0] > 0).astype("int32")
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.compile(optimizer=lenet.make_optimizer({**config, "weight_averaging": 0.0}, 4),
                  loss="sparse_categorical_crossentropy")
    callbacks = lenet.weight_averaging_callbacks({"weight_averaging": 0.5})
    assert len(callbacks) == 1 and lenet.weight_averaging_callbacks({"weight_averaging": 0.0}) == []
    model.fit(inputs, labels, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
    plain.fit(inputs, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
    averaged, last = model.get_weights()[0], plain.get_weights()[0]
    assert not np.allclose(averaged, last, atol=1e-6)


def test_random_affine_composes_one_warp_per_image_and_passes_through_at_inference(tmp_path):
    import keras

    from core.models import register_custom_layers

    register_custom_layers()
    from core.models.layers import RandomAffine

    # Rotation only: each row is a rotation about the centre (15.5, 15.5) within ±20°.
    rows = keras.ops.convert_to_numpy(RandomAffine(rotation_degrees=20, seed=0).transforms(64, 32, 32))
    linear = rows[:, [0, 1, 3, 4]].reshape(-1, 2, 2)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", linear, linear), np.tile(np.eye(2), (64, 1, 1)),
                               atol=1e-5)
    angles = np.degrees(np.arctan2(rows[:, 3], rows[:, 0]))
    assert np.abs(angles).max() <= 20.0 + 1e-3 and np.abs(angles).max() > 10.0
    centre = np.array([15.5, 15.5])
    np.testing.assert_allclose(linear @ centre + rows[:, [2, 5]], np.tile(centre, (64, 1)), atol=1e-4)
    np.testing.assert_allclose(rows[:, 6:], 0.0, atol=1e-7)
    # Zoom by up to 20 % scales areas by 1 / zoom², shift moves the centre by up to 10 % of the side.
    rows = keras.ops.convert_to_numpy(RandomAffine(zoom=0.2, shift=0.1, seed=1).transforms(64, 32, 32))
    scale = np.sqrt(rows[:, 0] * rows[:, 4] - rows[:, 1] * rows[:, 3])
    assert scale.min() >= 1 / 1.2 - 1e-5 and scale.max() <= 1 / 0.8 + 1e-5
    moved = rows[:, [0, 1]] @ centre + rows[:, 2] - centre[0]
    assert np.abs(moved).max() <= 3.2 + 1e-4 and np.abs(moved).max() > 1.0
    # Perspective fills the last two entries; the sampled image changes only in training.
    layer = RandomAffine(rotation_degrees=15, shift=0.1, zoom=0.1, shear_degrees=10, perspective=0.1,
                         seed=2, name="warp")
    assert np.abs(keras.ops.convert_to_numpy(layer.transforms(8, 32, 32))[:, 6:]).max() > 0
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    warped = keras.ops.convert_to_numpy(layer(images, training=True))
    assert warped.shape == images.shape and np.abs(warped - images).mean() > 10.0
    assert 0.0 <= warped.min() and warped.max() <= 255.0  # resampling, no new intensities
    model = keras.Sequential([keras.Input((32, 32, 1)), layer])
    model.save(tmp_path / "warp.keras")
    loaded = keras.saving.load_model(tmp_path / "warp.keras", safe_mode=True).get_layer("warp")
    assert (loaded.shear_degrees, loaded.perspective) == (10.0, 0.1)
    with pytest.raises(ValueError, match="perspective must be a number in"):
        RandomAffine(perspective=0.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_compiled_warp_samples_as_keras_affine_transform(channels):
    import keras

    from core.models import fused_kernels
    from core.models.layers import RandomAffine

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the compiled warp is TensorFlow's; other backends keep affine_transform")
    images = np.random.default_rng(channels).integers(0, 256, (16, 20, 24, channels)).astype("float32")
    transforms = RandomAffine(rotation_degrees=30, shift=0.2, zoom=0.3, shear_degrees=15,
                              perspective=0.2, seed=1).transforms(16, 20, 24)
    for interpolation in ("bilinear", "nearest"):
        for fill_mode in ("nearest", "constant"):
            compiled = fused_kernels.projective_transform(keras.ops.convert_to_tensor(images),
                                                          transforms, interpolation, fill_mode)
            reference = keras.ops.image.affine_transform(images, transforms, interpolation,
                                                         fill_mode=fill_mode)
            # Float rounding only (the compiled sums may fuse): 0.002 on 0-255 pixel values.
            np.testing.assert_allclose(keras.ops.convert_to_numpy(compiled),
                                       keras.ops.convert_to_numpy(reference), atol=2e-3,
                                       err_msg=f"{interpolation}, {fill_mode}")
    # What it does not compile comes back as None, for the layer to use affine_transform.
    assert fused_kernels.projective_transform(images, transforms, "bilinear", "reflect") is None
    assert fused_kernels.projective_transform(images.astype("float64"), transforms) is None


def test_random_affine_trains_through_the_compiled_warp_on_tensorflow():
    import keras

    from core.models.layers import RandomAffine

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks a TensorFlow graph")
    import tensorflow as tf

    layer = RandomAffine(rotation_degrees=10, seed=0)

    def op_types(fill_mode, training):
        layer.fill_mode = fill_mode
        function = tf.function(lambda values: layer(values, training=training))
        graph = function.get_concrete_function(tf.TensorSpec((None, 32, 32, 1), tf.float32)).graph
        types = {operation.type for operation in graph.get_operations()}
        compiled = any(operation.get_attr("_XlaMustCompile") for operation in graph.get_operations()
                       if "_XlaMustCompile" in operation.node_def.attr)
        return types, compiled

    types, compiled = op_types("nearest", True)
    assert compiled and "ImageProjectiveTransformV3" not in types
    types, compiled = op_types("reflect", True)  # not compiled: TensorFlow's own kernel
    assert not compiled and "ImageProjectiveTransformV3" in types
    types, compiled = op_types("nearest", False)  # inference: no warp at all
    assert not compiled and "ImageProjectiveTransformV3" not in types


def test_affine_sampler_matches_keras_affine_transform_and_passes_gradients_to_theta(tmp_path):
    import keras

    from core.models import register_custom_layers

    register_custom_layers()
    from core.models.layers import AffineSampler

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    half = (32 - 1) / 2.0
    # Rotation by 10 degrees, zoom-in by 1 / 0.85 and a shift: every sampled point is inside.
    angle = np.radians(10.0)
    linear = 0.85 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    theta = np.array([[*linear[0], 0.05, *linear[1], -0.03],
                      [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], dtype="float32")  # the second: identity
    warped = keras.ops.convert_to_numpy(AffineSampler()([images, theta]))
    np.testing.assert_allclose(warped[1], images[1], atol=1e-3)
    # The same warp in Keras' pixel-coordinate format: x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2.
    pixel_rows = np.array([[theta[0, 0], theta[0, 1], half * (theta[0, 2] - theta[0, 0] - theta[0, 1] + 1),
                            theta[0, 3], theta[0, 4], half * (theta[0, 5] - theta[0, 3] - theta[0, 4] + 1),
                            0.0, 0.0]], dtype="float32")
    expected = keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
        images[:1], pixel_rows, interpolation="bilinear", fill_mode="nearest"))
    np.testing.assert_allclose(warped[:1], expected, atol=0.05)
    # In a LeNet, one training step moves the localisation network's matrix off the identity.
    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus",
                                          "spatial_transformer": True})
    model = lenet.build_from_config(config, 43, (32, 32, 1))
    before = model.get_layer("stn_theta").get_weights()[1].copy()
    np.testing.assert_array_equal(before, [1, 0, 0, 0, 1, 0])
    lenet_family.compile_lenet(model, config, steps_per_epoch=1, steps_per_execution=1)
    model.fit(images, np.array([3, 5]), epochs=1, batch_size=2, verbose=0)
    assert np.abs(model.get_layer("stn_theta").get_weights()[1] - before).max() > 0
    model.save(tmp_path / "stn.keras")
    loaded = keras.saving.load_model(tmp_path / "stn.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


def _bilinear_reference(image: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (H, W) image at every (row, column) pair, in plain NumPy."""
    top, left = np.floor(rows).astype(int), np.floor(columns).astype(int)
    bottom = np.minimum(top + 1, image.shape[0] - 1)
    right = np.minimum(left + 1, image.shape[1] - 1)
    dy, dx = (rows - top)[:, None], (columns - left)[None, :]
    return ((image[np.ix_(top, left)] * (1 - dx) + image[np.ix_(top, right)] * dx) * (1 - dy)
            + (image[np.ix_(bottom, left)] * (1 - dx) + image[np.ix_(bottom, right)] * dx) * dy)


def test_affine_sampler_with_an_output_size_samples_the_finer_input():
    import keras

    from core.models.layers import AffineSampler

    images = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 1)).astype("float32")
    # The identity, and a zoom into the central 80 % (what the plus transformer learns on GTSRB).
    theta = np.array([[1, 0, 0, 0, 1, 0], [0.8, 0, 0, 0, 0.8, 0]], dtype="float32")
    sampler = AffineSampler(output_size=32)
    warped = keras.ops.convert_to_numpy(sampler([images, theta]))
    assert warped.shape == (2, 32, 32, 1)
    assert sampler.compute_output_shape(((None, 48, 48, 1), (None, 6))) == (None, 32, 32, 1)
    for image, scale, result in zip(images[..., 0], (1.0, 0.8), warped[..., 0]):
        # Output pixel i sits at -1 + 2 i / 31; the input point it samples is scale times that.
        points = (scale * np.linspace(-1.0, 1.0, 32) + 1.0) * 47 / 2.0
        np.testing.assert_allclose(result, _bilinear_reference(image, points, points), atol=1e-3)
    # The identity onto an equal canvas is the image itself, and output_size None keeps the size.
    same = keras.ops.convert_to_numpy(AffineSampler()([images, theta]))
    np.testing.assert_allclose(same[0], images[0], atol=1e-3)
    assert AffineSampler.from_config(sampler.get_config()).output_size == 32
    for bad in (0, -3, 2.5, True, "32"):
        with pytest.raises(ValueError, match=f"output_size must be a positive int or None, received {bad!r}"):
            AffineSampler(output_size=bad)


def test_spatial_transformer_size_gives_the_conv_stages_a_smaller_canvas(tmp_path):
    import keras

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "image_size": 48,
                                          "spatial_transformer_size": 32})
    assert config["preprocessing"]["image_size"] == 48 and config["spatial_transformer_size"] == 32
    model = lenet.build_from_config(config, 43, (48, 48, 1))
    assert model.get_layer("stn_sampler").output.shape == (None, 32, 32, 1)
    # The conv stages see 32 pixels: the same classifier as the 32-pixel plus, layer for layer.
    plain = lenet.build_from_config(lenet_family.resolve_config({"model": "lenet5", "preset": "plus"}),
                                    43, (32, 32, 1))
    for layer in plain.layers:
        if layer.name.startswith(("block", "fc", "predictions")) and layer.weights:
            assert [w.shape for w in model.get_layer(layer.name).weights] == [w.shape for w in layer.weights]
    images = np.random.default_rng(2).integers(0, 256, (3, 48, 48, 1)).astype("float32")
    model.save(tmp_path / "stn48.keras")
    loaded = keras.saving.load_model(tmp_path / "stn48.keras", safe_mode=True)
    assert loaded.get_layer("stn_sampler").output_size == 32
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    # Old configs without the key resolve to 0: the transformer's output keeps the input's size.
    assert lenet_family.resolve_config({"model": "lenet5", "preset": "plus"})["spatial_transformer_size"] == 0


@pytest.mark.parametrize("settings, message", [
    ({"spatial_transformer_size": 32}, r"spatial_transformer_size needs spatial_transformer=true .*"
                                       r"received spatial_transformer_size=32"),
    ({"preset": "plus", "spatial_transformer_size": 4},
     r"spatial_transformer_size must be 0 \(the input's size\) or an int in 8\.\.256, received 4"),
    ({"preset": "plus", "spatial_transformer_size": "32"}, r"received '32'"),
    ({"preset": "plus", "spatial_transformer_size": True}, r"received True"),
    ({"preset": "plus", "spatial_transformer_size": 8, "kernel_size": 5, "padding": "valid"},
     r"image_size 32 \(spatial_transformer_size 8\) is too small for 3 conv stages"),
])
def test_spatial_transformer_size_is_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        lenet_family.resolve_config({"model": "lenet5", **settings})


def test_label_smoothing_loss_matches_keras_categorical_crossentropy():
    import keras

    from core.models.losses import SparseLabelSmoothingCrossentropy

    probabilities = np.random.default_rng(0).dirichlet(np.ones(5), 6).astype("float32")
    labels = np.array([0, 3, 2, 4, 1, 1])
    smoothed = float(SparseLabelSmoothingCrossentropy(0.1)(labels, probabilities))
    expected = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(5)[labels],
                                                                               probabilities))
    assert smoothed == pytest.approx(expected, rel=1e-6)
    plain = float(keras.losses.SparseCategoricalCrossentropy()(labels, probabilities))
    assert float(SparseLabelSmoothingCrossentropy(0.0)(labels, probabilities)) == pytest.approx(plain, rel=1e-6)
    assert lenet.make_loss({"label_smoothing": 0.0}) == "sparse_categorical_crossentropy"
    assert lenet.make_loss({"label_smoothing": 0.1}).label_smoothing == pytest.approx(0.1)
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        lenet_family.resolve_config({"model": "lenet5", "label_smoothing": 1.0})


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_shrinks_kernels_by_rate_times_decay_and_leaves_biases_and_batch_norm(optimizer):
    import keras

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "optimizer": optimizer,
                                          "weight_decay": 0.1, "lr_schedule": "constant",
                                          "learning_rate": 0.01})
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense"),
                              keras.layers.BatchNormalization(name="norm")])
    model.get_layer("norm").gamma.assign([2.0, 3.0])
    model.get_layer("norm").beta.assign([0.5, -0.5])
    model.get_layer("dense").bias.assign([1.0, -1.0])
    before = [keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables]
    step = lenet.make_optimizer(config, steps_per_epoch=10)
    # Zero gradients: Adam's and SGD's own updates are then zero, so only the decay moves weights.
    step.apply_gradients([(keras.ops.zeros_like(variable), variable)
                          for variable in model.trainable_variables])
    after = {variable.path: keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables}
    names = [variable.path for variable in model.trainable_variables]
    for name, old in zip(names, before):
        expected = old * (1 - 0.01 * 0.1) if name.endswith("kernel") else old
        np.testing.assert_allclose(after[name], expected, rtol=1e-6, err_msg=name)
    assert any(name.endswith("kernel") for name in names) and len(names) == 4
    without = lenet.make_optimizer({**config, "weight_decay": 0.0}, steps_per_epoch=10)
    assert without.weight_decay is None
    with pytest.raises(ValueError, match=r"weight_decay must be a number in \[0.0, 1.0\), received 1.0"):
        lenet_family.resolve_config({"model": "lenet5", "weight_decay": 1.0})


def test_mirrored_signs_are_flipped_and_relabelled_by_the_sign_tables():
    from core.datasets import signs

    # One 2x3 image per class, each pixel unique, so every flip is checkable exactly.
    images = np.arange(43 * 2 * 3).reshape(43, 2, 3, 1)
    labels = np.arange(43)
    extra_images, extra_labels = signs.mirrored_signs(images, labels)
    horizontal = sorted(signs.HORIZONTAL_MIRROR)
    expected_labels = ([signs.HORIZONTAL_MIRROR[class_id] for class_id in horizontal]
                       + list(signs.VERTICAL_MIRROR_SELF) + list(signs.HALF_TURN_SELF))
    assert extra_labels.tolist() == expected_labels
    assert extra_labels.tolist()[horizontal.index(38)] == 39  # keep right mirrored is keep left
    count = len(horizontal)
    np.testing.assert_array_equal(extra_images[:count], images[horizontal][:, :, ::-1])
    np.testing.assert_array_equal(extra_images[count:count + 5],
                                  images[list(signs.VERTICAL_MIRROR_SELF)][:, ::-1])
    np.testing.assert_array_equal(extra_images[count + 5:],
                                  images[list(signs.HALF_TURN_SELF)][:, ::-1, ::-1])
    # Every mirror pair goes both ways; no speed-limit digits are mirrored left-right.
    assert all(signs.HORIZONTAL_MIRROR[mirror] == class_id
               for class_id, mirror in signs.HORIZONTAL_MIRROR.items())
    assert not set(signs.SPEED_LIMITS) & set(signs.HORIZONTAL_MIRROR)
    with pytest.raises(ValueError, match="one label each"):
        signs.mirrored_signs(images, labels[:3])
    assert lenet_family.resolve_config({"model": "lenet5"})["mirror_signs"] is False
    with pytest.raises(ValueError, match="mirror_signs must be true or false"):
        lenet_family.resolve_config({"model": "lenet5", "mirror_signs": "yes"})
    with pytest.raises(ValueError, match="mirror_signs needs the 43 GTSRB classes"):
        lenet_family._with_mirrored_signs(images[:2], labels[:2], ("cat", "dog"))


def test_committee_members_vote_by_averaging_and_learn_a_tiny_task(tmp_path):
    import keras

    from core.datasets import preprocess

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "committee"})
    assert config["committee_size"] == lenet.COMMITTEE_MEMBERS >= 2
    plus = lenet_family.resolve_config({"model": "lenet5", "preset": "plus"})
    # Several plus networks take longer; the committee was measured without label smoothing and
    # weight decay, and on grayscale.
    own = ("preset", "committee_size", "time_budget_seconds", "label_smoothing", "weight_decay",
           "preprocessing")
    assert {key: value for key, value in config.items() if key not in own} == {
        key: value for key, value in plus.items() if key not in own}
    assert plus["preprocessing"] == {**config["preprocessing"], "color": "rgb"}
    assert plus["preprocessing"]["color"] == lenet.PLUS_COLOR == "rgb"
    assert plus["committee_size"] == 1 and config["time_budget_seconds"] == 0
    assert plus["label_smoothing"] == lenet.PLUS_LABEL_SMOOTHING == 0.1 and config["label_smoothing"] == 0.0
    assert plus["weight_decay"] == lenet.PLUS_WEIGHT_DECAY == 0.05 and config["weight_decay"] == 0.0

    # A 2-member committee of small LeNets on a task a single network learns in a few steps:
    # class k is an image of brightness 40 + 50 k plus noise.
    small = lenet_family.resolve_config({
        "model": "lenet5", "preset": "seed", "committee_size": 2, "conv_filters": [4, 8],
        "dense_units": [16], "dropout": 0.0, "weight_averaging": 0.0, "random_blur": 0.0, "learning_rate": 0.01,
        "augmentation": {"rotation_degrees": 0.0}, "label_smoothing": 0.1})
    keras.utils.set_random_seed(0)
    fit_model, committee = lenet.build_committee(
        small, 4, (32, 32, 1), lambda: preprocess.build_augmentation(small["augmentation"]))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 256)
    images = (40.0 + 50.0 * labels[:, None, None, None] + rng.normal(0, 10, (256, 32, 32, 1))).astype("float32")
    lenet_family.compile_lenet(fit_model, small, steps_per_epoch=8, steps_per_execution=1)
    history = fit_model.fit(images, labels, batch_size=32, epochs=10, verbose=0,
                            validation_data=(images[:64], labels[:64]))
    # Measured: validation accuracy 0.47, 0.47, 0.80, 0.80, then 1.0 from epoch 5 (chance 0.25).
    assert history.history["val_accuracy"][-1] >= 0.9, history.history["val_accuracy"]
    stacked = fit_model.predict_on_batch(images[:8])
    assert stacked.shape == (8, 2, 4)
    vote = committee.predict_on_batch(images[:8])
    np.testing.assert_allclose(vote, stacked.mean(axis=1), atol=1e-6)
    assert not np.allclose(stacked[:, 0], stacked[:, 1], atol=1e-3)  # two different networks
    committee.save(tmp_path / "committee.keras")
    loaded = keras.saving.load_model(tmp_path / "committee.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(images[:8]), vote, atol=1e-6)
    from core import export

    exported = export.inference_model(loaded)  # the members' training-only layers are dropped
    assert not {type(layer).__name__ for layer in exported.layers} & {"RandomAffine", "Dropout"}
    np.testing.assert_allclose(exported.predict_on_batch(images[:8]), vote, atol=1e-5)
    with pytest.raises(ValueError, match="committee_size"):
        lenet.build_committee({**small, "committee_size": 1}, 4, (32, 32, 1), lambda: None)


@pytest.mark.parametrize("size", [1, 2, 5, 128])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_batch_parts_cover_the_batch_in_order(size, parts):
    from core.models.layers import BatchPart

    batch = np.arange(size * 2, dtype="float32").reshape(size, 2)
    pieces = [np.asarray(BatchPart(part, parts)(batch)) for part in range(parts)]
    np.testing.assert_array_equal(np.concatenate(pieces), batch)
    assert max(len(piece) for piece in pieces) - min(len(piece) for piece in pieces) <= 1


@pytest.mark.parametrize("part, parts", [(2, 2), (-1, 2), (0, 0), (True, 2), (0, 2.0)])
def test_batch_part_rejects_a_part_outside_its_count(part, parts):
    from core.models.layers import BatchPart

    with pytest.raises(ValueError, match="part"):
        BatchPart(part, parts)


def _branch_free_config(**settings):
    """A small seed-preset LeNet without random layers, so two models can be compared exactly."""
    return lenet_family.resolve_config({
        "model": "lenet5", "preset": "seed", "conv_filters": [4, 8], "dense_units": [16],
        "dropout": 0.0, "random_blur": 0.0, "weight_averaging": 0.0, "learning_rate": 0.01,
        "augmentation": {"rotation_degrees": 0.0, "low_resolution": 0.0}, **settings})


def test_batch_branches_compute_the_same_outputs_and_training_steps_as_one_pass():
    import keras

    config = _branch_free_config()
    assert config["batch_branches"] == 2
    keras.utils.set_random_seed(0)
    model = lenet.build_from_config(config, 4, (32, 32, 1))
    twin = lenet.build_from_config(config, 4, (32, 32, 1))
    twin.set_weights(model.get_weights())
    branches = lenet.build_batch_branches(twin, 3)
    assert lenet.build_batch_branches(model, 1) is model
    assert {layer.name for layer in branches.layers} >= {"batch_part0", "batch_part2", "joined_parts"}
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (37, 32, 32, 1)).astype("float32")  # 37 = 12 + 12 + 13
    labels = rng.integers(0, 4, 37)
    np.testing.assert_allclose(branches.predict_on_batch(images), model.predict_on_batch(images),
                               atol=1e-6)
    # One Adam step over the whole batch from the same weights: the same mean loss, so the same
    # gradients and the same new weights (the parts only add in another order).
    for fitted in (model, branches):
        lenet_family.compile_lenet(fitted, config, steps_per_epoch=1, steps_per_execution=1)
        fitted.train_on_batch(images, labels)
    for trained, reference in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_allclose(trained, reference, atol=1e-5)
    assert not np.allclose(model.get_weights()[0], lenet.build_from_config(
        config, 4, (32, 32, 1)).get_weights()[0])  # the step did change the weights


def test_the_job_path_fits_a_copy_with_the_pooled_biases_moved_and_saves_the_model():
    from core.models import iter_layers
    from core.models.layers import PoolingWithBias

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed"})
    fit_model, model = lenet_family.build_models(config, 4, (32, 32, 1))
    moved = sorted(layer.name for layer in iter_layers(fit_model) if isinstance(layer, PoolingWithBias))
    assert moved == ["block1_pool_with_bias", "block2_pool_with_bias"]
    assert not any(isinstance(layer, PoolingWithBias) for layer in iter_layers(model))
    assert model.get_layer("block1_conv").use_bias  # the saved model keeps Keras' own layers
    assert {id(variable) for variable in fit_model.trainable_variables} == {
        id(variable) for variable in model.trainable_variables}
    # A textbook stage has its activation between convolution and pooling: nothing moves.
    textbook = lenet_family.resolve_config({"model": "lenet5", "preset": "seed",
                                            "block_order": "textbook", "batch_branches": 1})
    fit_model, model = lenet_family.build_models(textbook, 4, (32, 32, 1))
    assert fit_model is model


def test_batch_branches_refuse_batch_norm_and_bad_counts():
    import keras

    normalised = lenet.build_from_config(_branch_free_config(batch_norm=True), 4, (32, 32, 1))
    with pytest.raises(ValueError, match="without batch normalisation.*block1_bn"):
        lenet.build_batch_branches(normalised, 2)
    plain = lenet.build_from_config(_branch_free_config(), 4, (32, 32, 1))
    for branches in (0, lenet.MAX_BATCH_BRANCHES + 1, 2.0, True):
        with pytest.raises(ValueError, match=r"branches must be an integer in \[1, 16\], received"):
            lenet.build_batch_branches(plain, branches)
    assert isinstance(lenet.build_batch_branches(plain, 2), keras.Model)


def test_the_seed_preset_alone_cuts_its_batches_and_falls_back_where_it_cannot():
    from core.training import lenet_transfer_family

    def resolved(**settings):
        return lenet_family.resolve_config({"model": "lenet5", **settings})["batch_branches"]

    assert lenet.PRESETS["seed"]["batch_branches"] == lenet.SEED_BATCH_BRANCHES == 2
    assert [resolved(preset=preset) for preset in ("classic", "plus", "committee")] == [1, 1, 1]
    assert resolved(preset="seed") == 2
    # The preset's value gives way to settings it cannot run with...
    assert resolved(preset="seed", batch_norm=True) == 1
    assert resolved(preset="seed", committee_size=2) == 1
    assert resolved(preset="seed", batch_branches=1) == 1
    assert resolved(preset="classic", batch_branches=3) == 3
    # ...but a config that asks for branches with them is refused.
    with pytest.raises(ValueError, match="batch_branches 2 needs batch_norm false.*batch_norm=True"):
        lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "batch_norm": True,
                                     "batch_branches": 2})
    with pytest.raises(ValueError, match="received committee_size=3"):
        lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "batch_norm": False,
                                     "committee_size": 3, "batch_branches": 2})
    for value in (0, 17, 1.5, "2"):
        with pytest.raises(ValueError, match="batch_branches must be an int in 1..16"):
            lenet_family.resolve_config({"model": "lenet5", "batch_branches": value})
    # Older runs predate the key: they trained in one pass.
    assert lenet_family.IMPLIED_WHEN_ABSENT["batch_branches"] == 1
    # lenet5-transfer runs swap and freeze models between stages: one pass, also from the seed.
    transfer = {"model": "lenet5-transfer", "preset": "seed", "dataset": "synthetic-signs"}
    assert lenet_transfer_family.resolve_config(transfer)["batch_branches"] == 1
    with pytest.raises(ValueError, match="one pass per batch.*batch_branches=2"):
        lenet_transfer_family.resolve_config({**transfer, "batch_branches": 2})


def test_batch_branches_draw_their_own_augmentation_in_a_compiled_step():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks TensorFlow's ordering of the seed generators' updates in a graph")
    import tensorflow as tf

    from core.datasets import preprocess

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed"})
    images = keras.Input((32, 32, 1))
    augmented = keras.layers.Dropout(0.5, seed=1)(preprocess.build_augmentation(
        config["augmentation"])(images))
    branches = lenet.build_batch_branches(keras.Model(images, augmented), 2)
    same_image = np.tile(np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 1)), (4, 1, 1, 1))
    # Both parts call the same layers in one graph: were their seeds read before either part
    # advanced them, image k of each part would get the same warp and dropout mask.
    outputs = tf.function(lambda batch: branches(batch, training=True))(
        same_image.astype("float32")).numpy()
    assert not np.allclose(outputs[0], outputs[2]) and not np.allclose(outputs[1], outputs[3])
    assert not np.allclose(outputs[0], outputs[1])
