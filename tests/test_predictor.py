"""core.inference.Predictor on tiny real run folders (real Keras models, real core.runs files)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from core import runs
from core.inference import Predictor, read_image
from core.predictor import PredictorError, top_k_from_probabilities

GRAY_SPEC = {"image_size": 16, "color": "grayscale", "equalization": "clahe", "blur": 3}
RGB_SPEC = {"image_size": 12, "color": "rgb", "equalization": "none", "blur": 0}
CLASS_NAMES = ["stop", "yield", "priority road"]


def build_model(spec: dict, num_classes: int = 3, activation: str | None = "softmax",
                seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    channels = 1 if spec["color"] == "grayscale" else 3
    inputs = keras.Input((spec["image_size"], spec["image_size"], channels), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pooling")(x)
    outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def make_run(root, spec: dict, model, class_names=CLASS_NAMES, write_names: bool = True,
             extra_config: dict | None = None):
    config = {"model": "lenet5", "dataset": "synthetic-signs", "preprocessing": spec}
    config.update(extra_config or {})
    run_dir = runs.create_run(config, root)
    model.save(run_dir / runs.MODEL_FILE)
    if write_names:
        (run_dir / "class_names.json").write_text(json.dumps(class_names))
    runs.write_status(run_dir, state=runs.COMPLETED)
    return run_dir


def random_images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8) for size in
            [(40, 30, 3), (16, 16, 3), (7, 9, 3), (100, 120, 3)]]


@pytest.fixture(scope="module")
def gray_model():
    return build_model(GRAY_SPEC)


def test_predict_equals_model_on_manually_preprocessed_input(isolated_roots, gray_model):
    from core.datasets.preprocess import apply_preprocessing

    run_dir = make_run(isolated_roots["runs"], GRAY_SPEC, gray_model)
    predictor = Predictor.from_run(run_dir)
    images = random_images()
    expected_input = apply_preprocessing(images, GRAY_SPEC)
    expected = gray_model(expected_input.astype("float32"), training=False).numpy()
    assert np.array_equal(predictor.preprocess(images), expected_input)
    probabilities = predictor.predict(images)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_attributes_come_from_the_run_folder(isolated_roots, gray_model):
    run_dir = make_run(isolated_roots["runs"], GRAY_SPEC, gray_model)
    predictor = Predictor.from_run(run_dir.name)  # a run id under the runs root works too
    assert predictor.class_names == CLASS_NAMES
    assert predictor.image_size == 16 and predictor.channels == 1
    assert predictor.config["preprocessing"] == GRAY_SPEC
    assert predictor.model.name == "tiny"
    assert predictor.run_dir == run_dir.resolve()


def test_pil_images_from_read_image_and_arrays_agree(isolated_roots, gray_model):
    run_dir = make_run(isolated_roots["runs"], GRAY_SPEC, gray_model)
    predictor = Predictor.from_run(run_dir)
    arrays = random_images(1)
    pil_images = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        pil_images.append(read_image(buffer.getvalue()))
    np.testing.assert_allclose(predictor.predict(pil_images), predictor.predict(arrays), atol=1e-6)
    # one image alone, a grayscale array and an RGBA array are accepted too
    assert predictor.predict(pil_images[0]).shape == (1, 3)
    assert predictor.predict([arrays[0][..., 0]]).shape == (1, 3)
    rgba = np.concatenate([arrays[1], np.full(arrays[1].shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_allclose(predictor.predict([rgba]), predictor.predict([arrays[1]]),
                               atol=1e-6)


def test_top_k_ranks_class_names(isolated_roots, gray_model):
    predictor = Predictor.from_run(make_run(isolated_roots["runs"], GRAY_SPEC, gray_model))
    images = random_images(2)[:2]
    probabilities = predictor.predict(images)
    ranked = predictor.top_k(images, k=2)
    assert len(ranked) == 2 and all(len(row) == 2 for row in ranked)
    for row, probs in zip(ranked, probabilities):
        best = int(np.argmax(probs))
        assert row[0]["class_id"] == best and row[0]["class_name"] == CLASS_NAMES[best]
        assert row[0]["probability"] == pytest.approx(float(probs[best]))
        assert row[0]["probability"] >= row[1]["probability"]
    assert len(predictor.top_k(images, k=10)[0]) == 3
    with pytest.raises(ValueError, match="k must be"):
        top_k_from_probabilities(probabilities, CLASS_NAMES, k=0)


def test_rgb_run_with_custom_caffe_layer_loads_in_safe_mode(isolated_roots):
    import keras

    from core.models.transfer_layers import CaffePreprocessing

    inputs = keras.Input((12, 12, 3))
    x = CaffePreprocessing(name="caffe")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, model, class_names=["cat", "dog"])
    predictor = Predictor.from_run(run_dir)
    images = random_images(3)
    from core.datasets.preprocess import apply_preprocessing

    expected = model(apply_preprocessing(images, RGB_SPEC).astype("float32")).numpy()
    np.testing.assert_allclose(predictor.predict(images), expected, rtol=1e-5, atol=1e-6)


def test_logits_models_are_turned_into_probabilities(isolated_roots):
    model = build_model(RGB_SPEC, activation=None)
    predictor = Predictor.from_run(make_run(isolated_roots["runs"], RGB_SPEC, model))
    probabilities = predictor.predict(random_images(4))
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_class_names_fall_back_to_config(isolated_roots):
    model = build_model(RGB_SPEC)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, model, write_names=False,
                       extra_config={"class_names": ["a", "b", "c"]})
    assert Predictor.from_run(run_dir).class_names == ["a", "b", "c"]


def test_class_count_mismatch_is_refused(isolated_roots):
    model = build_model(RGB_SPEC, num_classes=3)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, model, class_names=["only", "two"])
    with pytest.raises(PredictorError, match="2 classes but its model outputs 3"):
        Predictor.from_run(run_dir)


def test_run_without_model_is_refused(isolated_roots):
    run_dir = runs.create_run({"model": "lenet5", "preprocessing": RGB_SPEC}, isolated_roots["runs"])
    with pytest.raises(PredictorError, match="no model.keras yet"):
        Predictor.from_run(run_dir)


def test_only_run_folders_are_loaded(isolated_roots, tmp_path):
    model = build_model(RGB_SPEC)
    loose = tmp_path / "loose"
    loose.mkdir()
    model.save(loose / "model.keras")  # a model file outside the registry (no config.json)
    with pytest.raises(PredictorError, match="outside the runs root"):
        Predictor.from_run(loose)  # a folder outside the runs root is never read
    inside = isolated_roots["runs"] / "loose"
    inside.mkdir()
    model.save(inside / "model.keras")
    with pytest.raises(PredictorError, match="config.json is missing"):
        Predictor.from_run(inside)


def test_safe_mode_refuses_lambda_layers(isolated_roots):
    import keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Lambda(lambda tensor: tensor * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, keras.Model(inputs, outputs))
    with pytest.raises(PredictorError, match="Could not load model.keras"):
        Predictor.from_run(run_dir)


def test_corrupt_model_file_is_a_predictor_error(isolated_roots):
    model = build_model(RGB_SPEC)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, model)
    (run_dir / runs.MODEL_FILE).write_bytes(b"not a zip file")
    with pytest.raises(PredictorError, match="Could not load"):
        Predictor.from_run(run_dir)


def test_bad_image_arrays_are_refused_with_the_received_value(isolated_roots, gray_model):
    predictor = Predictor.from_run(make_run(isolated_roots["runs"], GRAY_SPEC, gray_model))
    with pytest.raises(ValueError, match="received dtype float64"):
        predictor.predict([np.zeros((8, 8, 3))])
    with pytest.raises(ValueError, match=r"received \(8, 8, 5\)"):
        predictor.predict([np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(ValueError, match="received str"):
        predictor.predict("picture.png")
    assert predictor.predict([]).shape == (0, 3)


def test_precision_auto_keeps_small_models_in_float32_and_bfloat16_stays_close(isolated_roots):
    from core.predictor import resolve_precision

    model = build_model(RGB_SPEC)
    run_dir = make_run(isolated_roots["runs"], RGB_SPEC, model)
    exact = Predictor.from_run(run_dir)
    assert exact.precision == "float32"  # far below LARGE_MODEL_PARAMS
    fast = Predictor.from_run(run_dir, precision="bfloat16")
    assert fast.precision == "bfloat16"
    images = random_images(5)
    np.testing.assert_allclose(fast.predict(images), exact.predict(images), atol=2e-2)
    assert fast.predict(images).dtype == np.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(model, "float16")


def test_a_model_with_batch_norm_predicts_through_a_folded_copy(isolated_roots):
    import keras

    from core.models import iter_layers

    keras.utils.set_random_seed(3)
    inputs = keras.Input((RGB_SPEC["image_size"], RGB_SPEC["image_size"], 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pooling")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(3)  # moving statistics far from 0 / 1, so folding matters
    model.get_layer("conv_bn").set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0.0, 0.2, 4),
                                            rng.normal(0.0, 0.3, 4), rng.uniform(0.5, 2.0, 4)])
    predictor = Predictor.from_run(make_run(isolated_roots["runs"], RGB_SPEC, model),
                                   precision="float32")
    images = random_images(6)
    expected = np.asarray(predictor.model.predict_on_batch(
        predictor.preprocess(images).astype(np.float32)))
    np.testing.assert_allclose(predictor.predict(images), expected, atol=1e-5)
    assert any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in iter_layers(predictor.model))  # Grad-CAM and export see the saved model
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in iter_layers(predictor._inference_model))
    # A model without batch norm is served as saved.
    plain = Predictor.from_run(make_run(isolated_roots["runs"], RGB_SPEC, build_model(RGB_SPEC)),
                               precision="float32")
    assert plain._inference_model is plain.model


def test_guess_label_from_file_names():
    from core.charts.classify import guess_label

    names = ["cat", "dog", "Speed limit (30km/h)", "Stop"]
    assert guess_label("cat.12.jpg", names) == "cat"
    assert guess_label("Dog_7.png", names) == "dog"
    assert guess_label("stop-sign.png", names) == "Stop"
    assert guess_label("dogs 3.jpg", names) == "dog"
    assert guess_label("holiday.jpg", names) is None
    assert guess_label("category.jpg", names) is None  # "cat" must be a whole word


def test_prediction_table_and_accuracy_over_labelled_rows():
    from core.charts.classify import prediction_table, score_table

    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    table = prediction_table(["a.jpg", "b.jpg", "c.jpg"], probabilities, ["cat", "dog"],
                             ["cat", "cat", None])
    assert table["predicted"].tolist() == ["cat", "dog", "cat"]
    assert table["confidence"].tolist() == pytest.approx([0.9, 0.8, 0.6])
    scored, accuracy, count = score_table(table)
    assert count == 2 and accuracy == pytest.approx(0.5)
    assert scored["correct"].tolist() == [True, False, None]
    with pytest.raises(ValueError, match="received 1 file names for 3 rows"):
        prediction_table(["a.jpg"], probabilities, ["cat", "dog"])


def test_best_run_per_dataset_prefers_test_then_validation_accuracy(isolated_roots):
    from core.charts.classify import best_runs_by_dataset, finished_runs, run_score

    def finished(dataset, val_accuracy, test_accuracy=None):
        run_dir = runs.create_run({"model": "lenet5", "dataset": dataset}, isolated_roots["runs"])
        (run_dir / runs.MODEL_FILE).write_bytes(b"placeholder")  # only listed, never loaded
        runs.append_metrics(run_dir, {"epoch": 1, "val_accuracy": val_accuracy})
        if test_accuracy is not None:
            runs.write_results(run_dir, {"test_accuracy": test_accuracy})
        runs.write_status(run_dir, state=runs.COMPLETED)
        return run_dir.name

    finished("gtsrb", 0.97)
    best_gtsrb = finished("gtsrb", 0.90, test_accuracy=0.95)  # test accuracy wins when present
    best_cats = finished("dogs-vs-cats", 0.70)
    running = runs.create_run({"model": "lenet5", "dataset": "gtsrb"}, isolated_roots["runs"])
    summaries = finished_runs()
    assert running.name not in {summary.run_id for summary in summaries}
    best = best_runs_by_dataset(summaries)
    assert list(best) == ["dogs-vs-cats", "gtsrb"]
    assert best["gtsrb"].run_id == best_gtsrb
    assert run_score(best["gtsrb"]) == (0.95, "test")
    assert best["dogs-vs-cats"].run_id == best_cats
