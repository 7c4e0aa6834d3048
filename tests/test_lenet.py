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
    assert config["preprocessing"] == {"image_size": 32, "color": "grayscale", "equalization": "clahe",
                                       "blur": 0}
    assert config["lr_schedule"] == "cosine"
    assert model.output_shape == (None, 43)


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
